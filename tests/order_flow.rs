//! The whole system with real HTTP between the four services, on SQLite and
//! on PostgreSQL.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{System, Timing, eventually};
use testkit::{Backend, on_both_backends, unique};

/// The homework's scenario, step by step.
async fn the_homework_scenario(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    // 1. A new user has a billing account with balance 0.
    let user = sys.user().await;
    assert_eq!(sys.balance(user).await, 0);
    // 2. Deposit.
    sys.deposit(user, 100_000).await;
    assert_eq!(sys.balance(user).await, 100_000);
    // 3. An order that fits is paid.
    let paid = sys.order(user, 40_000).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(paid.body["status"], "paid");
    assert_eq!(paid.body["failure_reason"], serde_json::Value::Null);
    let paid_id = paid.body["id"].as_i64().unwrap();
    assert_eq!(paid.header("location"), Some(format!("/orders/{paid_id}").as_str()));
    // 4. The balance went down by exactly the price.
    assert_eq!(sys.balance(user).await, 60_000);
    // 5. The happy letter names the order and the price.
    let letters = sys.letters(user).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["order_id"], paid_id);
    assert_eq!(letters[0]["kind"], "order_paid");
    let body = letters[0]["body"].as_str().unwrap();
    assert!(body.contains(&format!("#{paid_id}")) && body.contains("400.00"), "{body}");
    // 6. An order that does not fit is rejected.
    let rejected = sys.order(user, 70_000).await;
    assert_eq!(rejected.status, 201, "{}", rejected.text);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["failure_reason"], "insufficient_funds");
    // 7. The balance did not change.
    assert_eq!(sys.balance(user).await, 60_000);
    // 8. The sad letter is the newest.
    let letters = sys.letters(user).await;
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["kind"], "order_rejected");
    assert_eq!(letters[0]["order_id"], rejected.body["id"]);
    assert!(letters[0]["body"].as_str().unwrap().contains("700.00"));
    // The order is readable and listed newest first.
    let got = sys.get_order(paid_id).await;
    assert_eq!(got.body, paid.body);
    let listed = sys.orders_of(user).await;
    assert_eq!(listed[0]["id"], rejected.body["id"]);
    assert_eq!(listed[1]["id"], paid_id);
    sys.assert_money_conserved(user).await;
}

async fn a_replayed_order_is_charged_once(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.funded_user(1_000).await;
    let key = unique("order-key-");
    let first = sys.order_keyed(user, &key, 300).await;
    assert_eq!(first.status, 201, "{}", first.text);
    for _ in 0..3 {
        let again = sys.order_keyed(user, &key, 300).await;
        assert_eq!(again.status, 201);
        assert_eq!(again.body, first.body);
        assert_eq!(again.header("location"), first.header("location"));
    }
    let other = sys.order_keyed(user, &key, 301).await;
    assert_eq!(other.assert_problem(422), "idempotency-key-reused");
    assert_eq!(sys.balance(user).await, 700);
    assert_eq!(sys.orders_of(user).await.len(), 1);
    assert_eq!(sys.letters(user).await.len(), 1);
    sys.assert_money_conserved(user).await;
}

async fn fifty_concurrent_orders_never_overdraw(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.funded_user(100).await;
    let orders = (0..50).map(|_| sys.order(user, 10));
    let replies = futures_util::future::join_all(orders).await;
    let status = |s: &str| replies.iter().filter(|r| r.body["status"] == s).count();
    assert!(replies.iter().all(|r| r.status == 201), "{:?}", replies.iter().map(|r| &r.text).collect::<Vec<_>>());
    assert_eq!(status("paid"), 10);
    assert_eq!(status("rejected"), 40);
    assert_eq!(sys.balance(user).await, 0);
    let letters = sys.letters(user).await;
    assert_eq!(letters.len(), 50);
    assert_eq!(letters.iter().filter(|l| l["kind"] == "order_paid").count(), 10);
    assert_eq!(letters.iter().filter(|l| l["kind"] == "order_rejected").count(), 40);
    sys.assert_money_conserved(user).await;
}

async fn bad_orders_are_refused_and_store_nothing(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.funded_user(1_000).await;
    let orders = &sys.api.orders.as_user(user);
    assert_eq!(sys.order(987_654, 10).await.assert_problem(422), "unknown-user");
    for price in [0, -1, 1_000_000_000_001] {
        sys.order(user, price).await.assert_problem(422);
    }
    let json_ct = Some("application/json");
    for body in [
        format!(r#"{{"user_id": {user}, "price": 1.5}}"#),
        format!(r#"{{"user_id": {user}, "price": "10"}}"#),
        format!(r#"{{"user_id": {user}}}"#),
        r#"{"price": 10}"#.to_owned(),
        "not json".to_owned(),
        format!("[{user}, 100]"),
        format!("{user}"),
        "null".to_owned(),
    ] {
        orders.post_raw("/orders", json_ct, body).await.assert_problem(400);
    }
    orders
        .post_raw("/orders", Some("text/plain"), format!(r#"{{"user_id": {user}, "price": 10}}"#))
        .await
        .assert_problem(415);
    orders
        .post_raw("/orders", json_ct, format!(r#"{{"user_id": {user}, "price": 10, "pad": "{}"}}"#, "x".repeat(70_000)))
        .await
        .assert_problem(413);
    orders.get("/orders").await.assert_problem(400);
    orders.get("/orders?user_id=x").await.assert_problem(400);
    orders.get("/orders/abc").await.assert_problem(400);
    orders.get("/orders/424242").await.assert_problem(404);
    orders.send(orders.client.put(format!("{}/orders/1", orders.base))).await.assert_problem(405);
    let nobody = sys.api.orders.as_user(424242);
    assert_eq!(nobody.get("/orders?user_id=424242").await.body, json!([]));
    assert_eq!(sys.orders_of(user).await, Vec::<serde_json::Value>::new(), "no order stored");
    assert_eq!(sys.balance(user).await, 1_000);
    assert_eq!(sys.letters(user).await.len(), 0);
}

/// Billing down: 202 pending; billing back: the recovery loop pays the
/// order once and sends one letter.
async fn an_order_placed_while_billing_is_down_is_finished_later(backend: Backend) {
    let timing = Timing {
        http_timeout: Duration::from_millis(300),
        budget: Duration::from_millis(1200),
        recovery_interval: Duration::from_millis(300),
    };
    let sys = System::start(backend, timing).await;
    let user = sys.funded_user(1_000).await;
    sys.billing_handle.stop(true).await;
    let r = sys.order(user, 250).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    let id = r.body["id"].as_i64().unwrap();
    let addr = sys.billing_url.trim_start_matches("http://").to_owned();
    let listener = std::net::TcpListener::bind(&addr).expect("billing's port is free again");
    let _billing = support::start_billing(listener, &sys.dbs.billing, &sys.urls.users);
    let paid = eventually(Duration::from_secs(15), || async { sys.get_order(id).await.body["status"] == "paid" }).await;
    assert!(paid, "the recovery loop paid the order");
    let lettered = eventually(Duration::from_secs(10), || async { sys.letters(user).await.len() == 1 }).await;
    assert!(lettered, "one letter");
    assert_eq!(sys.balance(user).await, 750);
    sys.assert_money_conserved(user).await;
}

on_both_backends!(
    the_homework_scenario,
    a_replayed_order_is_charged_once,
    fifty_concurrent_orders_never_overdraw,
    bad_orders_are_refused_and_store_nothing,
    an_order_placed_while_billing_is_down_is_finished_later,
);
