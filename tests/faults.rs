//! The system under faults: a fault proxy between order-service and
//! billing / notification (and between user-service and billing) refuses,
//! delays or loses answers, and the order flow still charges every order
//! exactly once and stores exactly one letter. On SQLite and on PostgreSQL.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Orders, System, Timing, eventually};
use testkit::fault_proxy::Mode;
use testkit::{Backend, on_both_backends, unique};

/// The longest any single wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// The ledger entries that paid order `id`.
async fn charges(sys: &System, user: i64, id: i64) -> Vec<serde_json::Value> {
    let reference = format!("order-{id}");
    sys.ledger(user).await.into_iter().filter(|e| e["reference"] == reference.as_str()).collect()
}

/// Order `id` of `price` is paid, charged exactly once, the balance is
/// `balance`, exactly one happy letter is stored for it, it is marked
/// notified, and the money adds up.
async fn assert_paid_once(sys: &System, user: i64, id: i64, price: i64, balance: i64) {
    let order = sys.get_order(id).await;
    assert_eq!(order.status, 200, "{}", order.text);
    assert_eq!(order.body["status"], "paid", "{}", order.text);
    let paid = charges(sys, user, id).await;
    assert_eq!(paid.len(), 1, "order {id} charged once: {paid:?}");
    assert_eq!(paid[0]["kind"], "withdrawal");
    assert_eq!(paid[0]["amount"], price);
    assert_eq!(sys.balance(user).await, balance);
    let letters = sys.letters(user).await;
    assert_eq!(letters.len(), 1, "one letter: {letters:?}");
    assert_eq!(letters[0]["order_id"], id);
    assert_eq!(letters[0]["kind"], "order_paid");
    let notified = eventually(PATIENCE, || async { sys.order_row(id).await.notified_at.is_some() }).await;
    assert!(notified, "order {id} is marked notified");
    sys.assert_money_conserved(user).await;
}

async fn status_of(sys: &System, id: i64) -> serde_json::Value {
    sys.get_order(id).await.body["status"].clone()
}

/// Billing refuses every connection: the order answers 202 pending and
/// nothing is charged; billing back: the recovery loop pays it once.
async fn billing_down_then_back(backend: Backend) {
    let sys = System::with_faults(backend, Timing::quick(), Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let billing = &sys.faults().billing;
    billing.set(Mode::Refuse);

    let r = sys.order(user, 250).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.header("location"), Some(format!("/orders/{id}").as_str()));
    let seen = billing.counts();
    assert!(seen.refused >= 2, "the withdrawal was retried within the budget: {seen:?}");
    assert_eq!(seen.upstream_answers, 0, "nothing reached billing");
    assert_eq!(sys.balance(user).await, 1_000);
    assert_eq!(sys.ledger(user).await.len(), 1, "only the deposit");
    assert!(sys.letters(user).await.is_empty());

    // While billing stays down the recovery loop keeps trying, and the
    // order stays pending.
    let retried = eventually(PATIENCE, || async { billing.counts().refused > seen.refused }).await;
    assert!(retried, "the recovery loop retried the payment");
    assert_eq!(status_of(&sys, id).await, "pending");

    billing.set(Mode::Pass);
    let paid = eventually(PATIENCE, || async { status_of(&sys, id).await == "paid" }).await;
    assert!(paid, "the recovery loop paid the order once billing was back");
    let lettered = eventually(PATIENCE, || async { sys.letters(user).await.len() == 1 }).await;
    assert!(lettered, "the letter was stored");
    assert_paid_once(&sys, user, id, 250, 750).await;
}

/// Billing withdraws but the answer is lost on the way back: order-service
/// retries with the same reference, billing answers the original receipt.
async fn billing_answer_lost_once(backend: Backend) {
    let sys = System::with_faults(backend, Timing::quick(), Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let billing = &sys.faults().billing;
    billing.once(Mode::DropResponse);

    let r = sys.order(user, 250).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "paid");
    let id = r.body["id"].as_i64().unwrap();
    let seen = billing.counts();
    assert_eq!(seen.dropped, 1, "{seen:?}");
    assert!(seen.passed >= 1, "retried after the lost answer: {seen:?}");
    assert!(seen.upstream_answers >= 2, "billing answered both attempts: {seen:?}");
    assert_paid_once(&sys, user, id, 250, 750).await;
}

/// Billing answers once slower than the per-call timeout: the call times
/// out, the retry succeeds within the budget, and the late first attempt
/// (still forwarded to billing) does not charge again.
async fn billing_slow_once(backend: Backend) {
    let timing = Timing {
        http_timeout: Duration::from_millis(300),
        budget: Duration::from_millis(2500),
        recovery_interval: Duration::from_millis(250),
    };
    let sys = System::with_faults(backend, timing, Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let billing = &sys.faults().billing;
    billing.once(Mode::Delay(Duration::from_millis(900)));

    let started = Instant::now();
    let r = sys.order(user, 250).await;
    let took = started.elapsed();
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "paid");
    assert!(took < timing.budget, "answered within the budget ({took:?})");
    let id = r.body["id"].as_i64().unwrap();
    let seen = billing.counts();
    assert_eq!(seen.delayed, 1, "{seen:?}");
    assert!(seen.passed >= 1, "retried after the timeout: {seen:?}");
    // The held attempt reaches billing after the client gave up on it.
    let late = eventually(PATIENCE, || async { billing.counts().upstream_answers == seen.requests() }).await;
    assert!(late, "the slow attempt reached billing too: {:?}", billing.counts());
    assert_paid_once(&sys, user, id, 250, 750).await;
}

/// Notification refuses: the order is paid and answered 201; the letter is
/// stored exactly once by the recovery loop after notification is back,
/// and then the order is marked notified and left alone.
async fn notification_down_then_back(backend: Backend) {
    let timing = Timing::quick();
    let sys = System::with_faults(backend, timing, Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let letters_proxy = &sys.faults().notifications;
    letters_proxy.set(Mode::Refuse);

    let r = sys.order(user, 250).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "paid");
    let id = r.body["id"].as_i64().unwrap();
    let seen = letters_proxy.counts();
    assert!(seen.refused >= 1, "{seen:?}");
    assert_eq!(charges(&sys, user, id).await.len(), 1);
    assert_eq!(sys.balance(user).await, 750);
    assert!(sys.letters(user).await.is_empty());
    assert!(sys.order_row(id).await.notified_at.is_none(), "not notified while notification is down");
    let retried = eventually(PATIENCE, || async { letters_proxy.counts().refused > seen.refused }).await;
    assert!(retried, "the recovery loop retried the letter");
    assert!(sys.letters(user).await.is_empty());

    letters_proxy.set(Mode::Pass);
    let notified = eventually(PATIENCE, || async {
        sys.letters(user).await.len() == 1 && sys.order_row(id).await.notified_at.is_some()
    })
    .await;
    assert!(notified, "the letter was stored and the order marked notified");
    // Once notified, recovery leaves the order alone: no more letters.
    let sent = letters_proxy.counts().passed;
    tokio::time::sleep(timing.recovery_interval * 4).await;
    assert_eq!(letters_proxy.counts().passed, sent, "no letter posted after the order was notified");
    assert_paid_once(&sys, user, id, 250, 750).await;
}

/// user-service cannot reach billing: POST /users answers 503 and leaves
/// no user behind; with billing back (even losing its first answer) the
/// same username can be created.
async fn registration_without_billing(backend: Backend) {
    let sys = System::with_faults(backend, Timing::quick(), Orders::InProcess).await;
    let before = sys.user().await;
    let to_billing = &sys.faults().users_billing;
    to_billing.set(Mode::Refuse);

    let name = unique("u_");
    let body = json!({ "username": name, "email": format!("{name}@example.com"), "password": support::PASSWORD });
    let r = sys.api.users.post("/users", body.clone()).await;
    r.assert_problem(503);
    assert!(r.header("location").is_none());
    assert!(to_billing.counts().refused >= 2, "retried within the budget: {:?}", to_billing.counts());
    // The user it would have been is not there, and has no account.
    let would_be = before + 1;
    sys.api.users.as_user(would_be).get(&format!("/users/{would_be}")).await.assert_problem(404);
    sys.api.billing.as_user(would_be).get(&format!("/billing/accounts/{would_be}")).await.assert_problem(404);

    // Billing back, and its first answer lost on the way: user-service
    // retries the (idempotent) account opening.
    to_billing.set(Mode::Pass);
    to_billing.once(Mode::DropResponse);
    let again = sys.api.users.post("/users", body).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(to_billing.counts().dropped, 1);
    assert_eq!(again.body["username"], name.as_str());
    let user = again.body["id"].as_i64().unwrap();
    assert_eq!(sys.api.users.as_user(user).get(&format!("/users/{user}")).await.status, 200);
    assert_eq!(sys.balance(user).await, 0, "the account exists");
    assert!(sys.ledger(user).await.is_empty());
    assert!(sys.letters(user).await.is_empty());
    sys.assert_money_conserved(user).await;
}

/// order-service (a real process) is SIGKILLed while billing holds its
/// withdrawal; billing then commits it. A new order-service process on the
/// same database finishes the order through its recovery loop: paid,
/// charged once, one letter.
async fn order_service_killed_mid_saga(backend: Backend) {
    let timing = Timing::short_lease();
    let mut sys = System::with_faults(backend, timing, Orders::Later).await;
    let user = sys.funded_user(1_000).await;
    let mut first = sys.spawn_orders_process(timing).await;
    sys.faults().billing.set(Mode::Delay(Duration::from_millis(1500)));

    let orders = sys.api.orders.clone();
    let placing = actix_web::rt::spawn(async move {
        orders
            .client
            .post(format!("{}/orders", orders.base))
            .bearer_auth(testkit::token_for(user))
            .json(&json!({ "user_id": user, "price": 250 }))
            .send()
            .await
    });
    let held = eventually(PATIENCE, || async { sys.faults().billing.counts().delayed >= 1 }).await;
    assert!(held, "the withdrawal reached the proxy");
    first.kill();
    assert!(placing.await.unwrap().is_err(), "the client lost its answer with the process");

    // Billing gets the held withdrawal after order-service died.
    let charged = eventually(PATIENCE, || async { sys.ledger(user).await.len() == 2 }).await;
    assert!(charged, "billing committed the withdrawal");
    let withdrawal = sys.ledger(user).await[0].clone();
    let id: i64 = withdrawal["reference"].as_str().unwrap().strip_prefix("order-").unwrap().parse().unwrap();
    assert!(sys.order_row(id).await.is_pending(), "the crash left the order pending");

    sys.faults().billing.set(Mode::Pass);
    let _second = sys.spawn_orders_process(timing).await;
    // The dead worker's lease (budget + 5 s) must run out first.
    let paid = eventually(Duration::from_secs(20), || async { status_of(&sys, id).await == "paid" }).await;
    assert!(paid, "the new process finished the order");
    let lettered = eventually(PATIENCE, || async { sys.letters(user).await.len() == 1 }).await;
    assert!(lettered, "the letter was stored");
    assert_eq!(sys.orders_of(user).await.len(), 1);
    assert_paid_once(&sys, user, id, 250, 750).await;
}

on_both_backends!(
    billing_down_then_back,
    billing_answer_lost_once,
    billing_slow_once,
    notification_down_then_back,
    registration_without_billing,
    order_service_killed_mid_saga,
);
