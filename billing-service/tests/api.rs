//! billing-service on a random port against a fresh database, on SQLite
//! and on PostgreSQL.

use billing_service::Settings;
use serde_json::json;
use testkit::{Api, Backend, TestDb, on_both_backends};

async fn spawn(backend: Backend) -> (Api, TestDb) {
    let db = TestDb::fresh(backend, "billing").expect("backend available");
    let settings = Settings { common: db.common(8), user_url: testkit::serve_key_set().parse().unwrap() };
    let (listener, url) = testkit::listener();
    let client = reqwest::Client::new();
    testkit::serve(listener, vec![billing_service::service(&settings, client).expect("service builds")]);
    (Api::new(url), db)
}

async fn open(api: &Api, user_id: i64) {
    let r = api.as_service().post("/internal/billing/accounts", json!({ "user_id": user_id })).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn deposit(api: &Api, user_id: i64, amount: i64) {
    let r =
        api.as_user(user_id).post(&format!("/billing/accounts/{user_id}/deposit"), json!({ "amount": amount })).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn balance(api: &Api, user_id: i64) -> i64 {
    let r = api.as_user(user_id).get(&format!("/billing/accounts/{user_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["balance"].as_i64().unwrap()
}

async fn ledger(api: &Api, user_id: i64) -> Vec<serde_json::Value> {
    let r = api.as_user(user_id).get(&format!("/billing/accounts/{user_id}/transactions")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body.as_array().unwrap().clone()
}

async fn opening_an_account_is_idempotent(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    let first = api.as_service().post("/internal/billing/accounts", json!({ "user_id": 7 })).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["balance"], 0);
    assert_eq!(first.header("location"), Some("/billing/accounts/7"));
    let again = api.as_service().post("/internal/billing/accounts", json!({ "user_id": 7 })).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["user_id"], 7);
    assert_eq!(balance(&api, 7).await, 0);
    api.as_service().post("/internal/billing/accounts", json!({ "user_id": 0 })).await.assert_problem(422);
}

async fn deposits_and_withdrawals_move_money_and_write_the_ledger(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    let r = api.as_user(1).post("/billing/accounts/1/deposit", json!({ "amount": 1000 })).await;
    assert_eq!(r.body, json!({ "user_id": 1, "balance": 1000, "transaction_id": r.body["transaction_id"] }));
    let r = api.as_user(1).post("/billing/accounts/1/withdraw", json!({ "amount": 300, "reference": "shop-1" })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["balance"], 700);
    let entries = ledger(&api, 1).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "withdrawal", "newest first");
    assert_eq!(entries[0]["amount"], 300);
    assert_eq!(entries[0]["balance_after"], 700);
    assert_eq!(entries[0]["reference"], "shop-1");
    assert_eq!(entries[0]["id"], r.body["transaction_id"]);
    assert_eq!(entries[1]["kind"], "deposit");
    assert_eq!(entries[1]["reference"], serde_json::Value::Null);
    assert!(entries[0]["created_at"].as_str().unwrap().ends_with('Z'));
}

async fn a_withdrawal_over_the_balance_is_refused_and_changes_nothing(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 100).await;
    let r = api.as_user(1).post("/billing/accounts/1/withdraw", json!({ "amount": 101 })).await;
    assert_eq!(r.assert_problem(409), "insufficient-funds");
    assert!(r.body["type"].as_str().unwrap().ends_with("insufficient-funds"));
    assert_eq!(balance(&api, 1).await, 100);
    assert_eq!(ledger(&api, 1).await.len(), 1);
}

async fn references_make_movements_idempotent(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    let first = api.as_user(1).post("/billing/accounts/1/deposit", json!({ "amount": 500, "reference": "gift" })).await;
    deposit(&api, 1, 1).await;
    let again = api.as_user(1).post("/billing/accounts/1/deposit", json!({ "amount": 500, "reference": "gift" })).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "the original answer, balance as it was then");
    assert_eq!(balance(&api, 1).await, 501);
    let other_amount =
        api.as_user(1).post("/billing/accounts/1/deposit", json!({ "amount": 5, "reference": "gift" })).await;
    assert_eq!(other_amount.assert_problem(422), "reference-reused");
    let other_kind =
        api.as_user(1).post("/billing/accounts/1/withdraw", json!({ "amount": 500, "reference": "gift" })).await;
    assert_eq!(other_kind.assert_problem(422), "reference-reused");
    assert_eq!(balance(&api, 1).await, 501);
    assert_eq!(ledger(&api, 1).await.len(), 2);
}

async fn order_references_are_reserved_for_the_internal_route(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 1000).await;
    let public =
        api.as_user(1).post("/billing/accounts/1/withdraw", json!({ "amount": 10, "reference": "order-5" })).await;
    public.assert_problem(422);
    let internal = api
        .as_service()
        .post("/internal/billing/accounts/1/withdraw", json!({ "amount": 10, "reference": "order-5" }))
        .await;
    assert_eq!(internal.status, 200, "{}", internal.text);
    assert_eq!(internal.body["balance"], 990);
    let replay = api
        .as_service()
        .post("/internal/billing/accounts/1/withdraw", json!({ "amount": 10, "reference": "order-5" }))
        .await;
    assert_eq!(replay.body, internal.body);
    assert_eq!(balance(&api, 1).await, 990);
    let array = api.as_service().post("/internal/billing/accounts/1/withdraw", json!([10, "order-6"])).await;
    array.assert_problem(400);
    api.as_service().post("/internal/billing/accounts", json!([2])).await.assert_problem(400);
    api.as_user(2).get("/billing/accounts/2").await.assert_problem(404);
    // The internal route requires a reference.
    api.as_service().post("/internal/billing/accounts/1/withdraw", json!({ "amount": 10 })).await.assert_problem(400);
}

async fn a_declined_reference_stays_declined(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 5).await;
    let path = "/internal/billing/accounts/1/withdraw";
    let api = api.as_service();
    let declined = api.post(path, json!({ "amount": 10, "reference": "order-9" })).await;
    assert_eq!(declined.assert_problem(409), "insufficient-funds");
    deposit(&api, 1, 100).await;
    // Same reference after a deposit: still the original answer, no charge.
    let again = api.post(path, json!({ "amount": 10, "reference": "order-9" })).await;
    assert_eq!(again.assert_problem(409), "insufficient-funds");
    assert_eq!(again.body["detail"], declined.body["detail"]);
    assert_eq!(balance(&api, 1).await, 105);
}

async fn unknown_accounts_are_404(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    api.as_user(42).get("/billing/accounts/42").await.assert_problem(404);
    api.as_user(42).get("/billing/accounts/42/transactions").await.assert_problem(404);
    api.as_user(42).post("/billing/accounts/42/deposit", json!({ "amount": 1 })).await.assert_problem(404);
    api.as_user(42)
        .post("/billing/accounts/42/withdraw", json!({ "amount": 1, "reference": "x" }))
        .await
        .assert_problem(404);
}

async fn bad_input_is_a_problem_and_writes_nothing(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 100).await;
    let path = "/billing/accounts/1/deposit";
    let json_ct = Some("application/json");
    let owner = api.as_user(1);
    for (body, status) in [
        ("{", 400),
        ("[]", 400),
        ("[10]", 400),
        (r#"[10, "gift-1"]"#, 400),
        ("10", 400),
        ("null", 400),
        (r#""x""#, 400),
        (r#"{"amount": "10"}"#, 400),
        (r#"{"amount": 1.5}"#, 400),
        (r#"{"amount": 1e3}"#, 400),
        (r#"{"amount": 9223372036854775808}"#, 400),
        (r#"{"reference": "x"}"#, 400),
        (r#"{"amount": 0}"#, 422),
        (r#"{"amount": -5}"#, 422),
        (r#"{"amount": 1000000000001}"#, 422),
        (r#"{"amount": 1, "reference": ""}"#, 422),
    ] {
        let r = owner.post_raw(path, json_ct, body).await;
        r.assert_problem(status);
    }
    let long_ref = json!({ "amount": 1, "reference": "r".repeat(256) }).to_string();
    owner.post_raw(path, json_ct, long_ref).await.assert_problem(422);
    owner.post_raw(path, Some("text/plain"), r#"{"amount": 1}"#).await.assert_problem(415);
    owner.post_raw(path, None, r#"{"amount": 1}"#).await.assert_problem(415);
    let huge = format!(r#"{{"amount": 1, "reference": "{}"}}"#, "x".repeat(70 * 1024));
    owner.post_raw(path, json_ct, huge).await.assert_problem(413);
    for id in ["abc", "0", "-1", "9223372036854775808", "1.5"] {
        owner.get(&format!("/billing/accounts/{id}")).await.assert_problem(400);
    }
    api.as_user(1).get("/billing/accounts/1/deposit").await.assert_problem(405);
    api.get("/billing/nothing-here").await.assert_problem(404);
    assert_eq!(balance(&api, 1).await, 100);
    assert_eq!(ledger(&api, 1).await.len(), 1, "no refused request wrote a row");
}

async fn a_deposit_that_would_overflow_is_refused(backend: Backend) {
    let (api, db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 100).await;
    // Reaching i64::MAX by deposits would take millions of them: set the
    // balance close to it directly.
    let near_max = i64::MAX - 50;
    testkit::execute_sql(&db, &format!("UPDATE accounts SET balance = {near_max} WHERE user_id = 1"));
    let r = api.as_user(1).post("/billing/accounts/1/deposit", json!({ "amount": 51 })).await;
    assert_eq!(r.assert_problem(422), "balance-overflow");
    assert_eq!(balance(&api, 1).await, near_max);
    deposit(&api, 1, 50).await;
    assert_eq!(balance(&api, 1).await, i64::MAX);
    assert_eq!(ledger(&api, 1).await.len(), 2);
}

async fn concurrent_withdrawals_never_overdraw(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 100).await;
    let attempts = (0..50).map(|i| {
        let api = api.clone();
        async move {
            let body = json!({ "amount": 10, "reference": format!("order-{i}") });
            api.as_service().post("/internal/billing/accounts/1/withdraw", body).await.status
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 40, "{statuses:?}");
    assert_eq!(balance(&api, 1).await, 0);
    let entries = ledger(&api, 1).await;
    let withdrawn: i64 =
        entries.iter().filter(|e| e["kind"] == "withdrawal").map(|e| e["amount"].as_i64().unwrap()).sum();
    assert_eq!(withdrawn, 100);
}

async fn concurrent_repeats_of_one_reference_move_money_once(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 1000).await;
    let attempts = (0..20).map(|_| {
        let api = api.as_service();
        async move {
            let r = api
                .post("/internal/billing/accounts/1/withdraw", json!({ "amount": 10, "reference": "order-1" }))
                .await;
            (r.status, r.body["transaction_id"].clone())
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(answers.windows(2).all(|w| w[0].1 == w[1].1), "one entry for all: {answers:?}");
    assert_eq!(balance(&api, 1).await, 990);
}

/// Two requests with one reference against a balance that covers one of
/// them: the second waits for the first's lock and must then find the first
/// one's withdrawal, not decline against the balance it left. Both get the
/// same 200; no declined row is stored beside the withdrawal.
async fn a_reference_racing_itself_gets_one_answer(backend: Backend) {
    let (api, db) = spawn(backend).await;
    const PAIRS: i64 = 100;
    for user in 1..=PAIRS {
        open(&api, user).await;
        deposit(&api, user, 30).await;
    }
    // One pair at a time, so that the two meet at an idle server.
    let mut answers = Vec::new();
    for user in 1..=PAIRS {
        let path = format!("/internal/billing/accounts/{user}/withdraw");
        let body = json!({ "amount": 30, "reference": format!("order-{user}") });
        let api = api.as_service();
        let (a, b) = futures_util::future::join(api.post(&path, body.clone()), api.post(&path, body)).await;
        answers.push((user, a.status, b.status, a.body["transaction_id"].clone(), b.body["transaction_id"].clone()));
    }
    let split: Vec<_> = answers.iter().filter(|(_, a, b, ta, tb)| *a != 200 || *b != 200 || ta != tb).collect();
    assert!(split.is_empty(), "{} of {PAIRS} pairs got two answers for one reference: {split:?}", split.len());
    for user in 1..=PAIRS {
        assert_eq!(balance(&api, user).await, 0);
    }
    assert_eq!(testkit::count_rows(&db, "declined_withdrawals"), 0, "a declined row beside a withdrawal");
}

/// Cancelling an order payment settles it for good: what was withdrawn
/// comes back once (a `refund` entry, never more than the withdrawal, however
/// often and however concurrently it is asked), a payment never made is
/// voided (a withdrawal under it later moves nothing), a declined one stays
/// as it was; refund references are billing's own.
async fn order_payments_are_cancelled_once(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    open(&api, 1).await;
    deposit(&api, 1, 1000).await;
    let internal = api.as_service();
    let pay = |reference: &str, amount: i64| {
        let body = json!({ "amount": amount, "reference": reference });
        internal.post("/internal/billing/accounts/1/withdraw", body)
    };
    let cancel = |reference: &str| {
        internal.post("/internal/billing/accounts/1/cancel-payment", json!({ "reference": reference }))
    };
    assert_eq!(pay("order-1", 300).await.status, 200);
    assert_eq!(balance(&api, 1).await, 700);
    let answers = futures_util::future::join_all((0..10).map(|_| cancel("order-1"))).await;
    for r in &answers {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!((r.body["outcome"].as_str(), r.body["refunded"].as_i64()), (Some("refunded"), Some(300)));
        assert_eq!(r.body["transaction_id"], answers[0].body["transaction_id"], "one refund for all");
    }
    assert_eq!(balance(&api, 1).await, 1000, "the price is back, once");
    let refund: Vec<_> = ledger(&api, 1).await.into_iter().filter(|e| e["kind"] == "refund").collect();
    assert_eq!(refund.len(), 1, "{refund:?}");
    assert_eq!((refund[0]["amount"].as_i64(), refund[0]["reference"].as_str()), (Some(300), Some("refund-order-1")));
    // The payment itself replays as it was; nothing moves.
    assert_eq!(pay("order-1", 300).await.status, 200);
    assert_eq!(balance(&api, 1).await, 1000);

    let voided = cancel("order-2").await;
    assert_eq!(voided.status, 200, "{}", voided.text);
    assert_eq!((voided.body["outcome"].as_str(), voided.body["refunded"].as_i64()), (Some("nothing_charged"), Some(0)));
    assert_eq!(voided.body["transaction_id"], serde_json::Value::Null);
    assert_eq!(pay("order-2", 100).await.assert_problem(409), "payment-cancelled");
    assert_eq!(cancel("order-2").await.body, voided.body, "the same answer again");

    assert_eq!(pay("order-3", 5000).await.assert_problem(409), "insufficient-funds");
    assert_eq!(cancel("order-3").await.body["outcome"], "nothing_charged");
    assert_eq!(balance(&api, 1).await, 1000);

    cancel("gift-1").await.assert_problem(422);
    api.as_user(1)
        .post("/billing/accounts/1/deposit", json!({ "amount": 5, "reference": "refund-order-9" }))
        .await
        .assert_problem(422);
    pay("refund-order-9", 5).await.assert_problem(422);
    internal
        .post("/internal/billing/accounts/42/cancel-payment", json!({ "reference": "order-1" }))
        .await
        .assert_problem(404);
    let entries = ledger(&api, 1).await;
    assert_eq!(entries.len(), 3, "deposit, withdrawal, refund: {entries:?}");
}

on_both_backends!(
    opening_an_account_is_idempotent,
    deposits_and_withdrawals_move_money_and_write_the_ledger,
    a_withdrawal_over_the_balance_is_refused_and_changes_nothing,
    references_make_movements_idempotent,
    order_references_are_reserved_for_the_internal_route,
    a_declined_reference_stays_declined,
    unknown_accounts_are_404,
    bad_input_is_a_problem_and_writes_nothing,
    a_deposit_that_would_overflow_is_refused,
    concurrent_withdrawals_never_overdraw,
    concurrent_repeats_of_one_reference_move_money_once,
    a_reference_racing_itself_gets_one_answer,
    order_payments_are_cancelled_once,
);

/// Replicas starting together on one PostgreSQL database take turns at the
/// migrations instead of failing.
#[test]
fn replicas_starting_together_migrate_once() {
    if !testkit::postgres_available() {
        return;
    }
    let db = TestDb::fresh(Backend::Postgres, "billing-replicas").unwrap();
    let settings = Settings { common: db.common(2), user_url: "http://127.0.0.1:9".parse().unwrap() };
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let settings = settings.clone();
            std::thread::spawn(move || {
                billing_service::service(&settings, reqwest::Client::new()).map(drop).map_err(|e| e.to_string())
            })
        })
        .collect();
    for start in starts {
        start.join().unwrap().expect("every replica starts");
    }
}

/// Connections are not tested when the pool hands them out, so a database
/// restart leaves dead ones in the pool. Each may fail one request, as a 503
/// that callers retry, never a 500 or a hang; then the pool has fresh ones
/// and nothing was half-written.
#[actix_web::test]
async fn connections_lost_under_the_pool_cost_a_503_and_are_replaced() {
    if !testkit::postgres_available() {
        return;
    }
    let (api, db) = spawn(Backend::Postgres).await;
    open(&api, 5).await;
    deposit(&api, 5, 100).await;
    testkit::execute_sql(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let mut answers = Vec::new();
    for _ in 0..12 {
        let r = api
            .as_user(5)
            .post("/billing/accounts/5/deposit", json!({ "amount": 10, "reference": "after-restart" }))
            .await;
        answers.push(r.status);
        if r.status == 200 {
            break;
        }
        r.assert_problem(503);
    }
    assert_eq!(answers.last(), Some(&200), "the pool never recovered: {answers:?}");
    assert_eq!(balance(&api, 5).await, 110, "the refused attempts wrote nothing: {answers:?}");
    assert_eq!(ledger(&api, 5).await.len(), 2);
}
