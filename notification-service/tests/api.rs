//! notification-service on a random port against a fresh database, on
//! SQLite and on PostgreSQL.

use notification_service::Settings;
use serde_json::{Value, json};
use testkit::{Api, Backend, TestDb, on_both_backends};

async fn spawn(backend: Backend) -> (Api, TestDb) {
    let db = TestDb::fresh(backend, "notifications").expect("backend available");
    let settings = Settings { common: db.common(4), user_url: testkit::serve_key_set().parse().unwrap() };
    let (listener, url) = testkit::listener();
    let service = notification_service::service(&settings, reqwest::Client::new()).expect("service builds");
    testkit::serve(listener, vec![service]);
    (Api::new(url), db)
}

fn letter(order_id: i64, kind: &str) -> Value {
    json!({
        "user_id": 3, "order_id": order_id, "kind": kind, "email": "ann@example.com",
        "subject": format!("Order #{order_id}"), "body": format!("Your order #{order_id} for 4.00")
    })
}

async fn a_letter_is_stored_once_per_order_and_kind(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    let first = api.as_service().post("/internal/notifications", letter(10, "order_paid")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = api.as_service().post("/internal/notifications", letter(10, "order_paid")).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    let list = api.as_user(3).get("/notifications?user_id=3").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body.as_array().unwrap().len(), 1);
}

async fn letters_are_listed_newest_first(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    api.as_service().post("/internal/notifications", letter(1, "order_paid")).await;
    api.as_service().post("/internal/notifications", letter(2, "order_rejected")).await;
    let list = api.as_user(3).get("/notifications?user_id=3").await.body;
    let list = list.as_array().unwrap();
    assert_eq!(list[0]["order_id"], 2);
    assert_eq!(list[0]["kind"], "order_rejected");
    assert_eq!(list[1]["order_id"], 1);
    for field in ["id", "user_id", "order_id", "kind", "email", "subject", "body", "created_at"] {
        assert!(list[0].get(field).is_some(), "{field}");
    }
    assert_eq!(api.as_user(4).get("/notifications?user_id=4").await.body, json!([]));
}

async fn bad_input_is_a_problem_and_writes_nothing(backend: Backend) {
    let (api, _db) = spawn(backend).await;
    api.as_user(3).get("/notifications").await.assert_problem(400);
    api.as_user(3).get("/notifications?user_id=abc").await.assert_problem(400);
    api.as_user(3).get("/notifications?user_id=0").await.assert_problem(400);
    let mut unknown_kind = letter(1, "order_paid");
    unknown_kind["kind"] = json!("spam");
    api.as_service().post("/internal/notifications", unknown_kind).await.assert_problem(400);
    let mut no_email = letter(1, "order_paid");
    no_email["email"] = json!("nobody");
    api.as_service().post("/internal/notifications", no_email).await.assert_problem(422);
    let mut empty_body = letter(1, "order_paid");
    empty_body["body"] = json!("");
    api.as_service().post("/internal/notifications", empty_body).await.assert_problem(422);
    let mut bad_order = letter(0, "order_paid");
    bad_order["order_id"] = json!(0);
    api.as_service().post("/internal/notifications", bad_order).await.assert_problem(422);
    api.as_service()
        .post_raw("/internal/notifications", Some("text/plain"), letter(1, "order_paid").to_string())
        .await
        .assert_problem(415);
    api.as_service()
        .post_raw("/internal/notifications", Some("application/json"), "{\"user_id\":")
        .await
        .assert_problem(400);
    let fields: Vec<serde_json::Value> = ["user_id", "order_id", "kind", "email", "subject", "body"]
        .iter()
        .map(|f| letter(3, "order_paid")[f].clone())
        .collect();
    api.as_service().post("/internal/notifications", json!(fields)).await.assert_problem(400);
    assert_eq!(api.as_user(3).get("/notifications?user_id=3").await.body, json!([]));
}

on_both_backends!(
    a_letter_is_stored_once_per_order_and_kind,
    letters_are_listed_newest_first,
    bad_input_is_a_problem_and_writes_nothing,
);
