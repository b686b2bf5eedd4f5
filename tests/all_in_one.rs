//! The all-in-one assembly: four services on one port, calling each other
//! through it; docs, probes and metrics on the same port.

use serde_json::json;
use testkit::{Api, Backend, TestDb, on_both_backends};

async fn one_port_serves_the_whole_system(backend: Backend) {
    let dbs: Vec<TestDb> =
        ["users", "billing", "orders", "letters"].iter().map(|label| TestDb::fresh(backend, label).unwrap()).collect();
    let (listener, url) = testkit::listener();
    let data = TestDb::fresh(Backend::Sqlite, "secrets").unwrap();
    let data_dir = data.database_url();
    let service_kit::db::DatabaseUrl::Sqlite(secrets) = data_dir else { unreachable!() };
    let own_url = order_system::own_url(listener.local_addr().unwrap());
    let mut settings = order_system::Settings::from_env(own_url, secrets.parent().unwrap()).unwrap();
    settings.users.common.database_url = dbs[0].database_url();
    settings.billing.common.database_url = dbs[1].database_url();
    settings.orders.common.database_url = dbs[2].database_url();
    settings.notifications.common.database_url = dbs[3].database_url();
    let services = order_system::services(&settings).unwrap();
    let server = testkit::serve(listener, services);
    let anyone = Api::new(url);

    let password = "correct horse battery";
    let user =
        anyone.post("/users", json!({ "username": "ann", "email": "ann@example.com", "password": password })).await;
    assert_eq!(user.status, 201, "{}", user.text);
    let id = user.body["id"].as_i64().unwrap();
    let token = anyone.post("/users/tokens", json!({ "username": "ann", "password": password })).await;
    assert_eq!(token.status, 200, "{}", token.text);
    // The other three services check the token with the key set they fetch
    // from user-service, through the same port.
    let api = anyone.with_token(token.body["access_token"].as_str().unwrap());
    api.post(&format!("/billing/accounts/{id}/deposit"), json!({ "amount": 500 })).await;
    let order = api.post("/orders", json!({ "user_id": id, "price": 400 })).await;
    assert_eq!(order.body["status"], "paid", "{}", order.text);
    let letters = api.get(&format!("/notifications?user_id={id}")).await;
    assert_eq!(letters.body[0]["kind"], "order_paid");
    // The request id of the order reached every service it called.
    let rid = "trace-me-123";
    let traced = api
        .send(
            api.client
                .post(format!("{}/orders", api.base))
                .header("X-Request-Id", rid)
                .json(&json!({ "user_id": id, "price": 50 })),
        )
        .await;
    assert_eq!(traced.header("x-request-id"), Some(rid));
    let bad = api.send(api.client.get(format!("{}/users/{id}", api.base)).header("X-Request-Id", "has space")).await;
    assert_ne!(bad.header("x-request-id"), Some("has space"));
    assert_eq!(bad.header("x-request-id").unwrap().len(), 32, "a generated id replaces an invalid one");

    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for (from, to) in [("/", "/docs/"), ("/docs", "/docs/"), ("/docs/users", "/docs/users/")] {
        let res = no_redirects.get(format!("{}{from}", api.base)).send().await.unwrap();
        assert_eq!(res.status(), 302, "{from}");
        assert_eq!(res.headers()["location"], to, "{from}");
    }
    let api = anyone;
    let page = api.get("/docs/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("swagger"), "the Swagger UI page");
    for slug in ["users", "billing", "orders", "notifications"] {
        let doc = api.get(&format!("/docs/{slug}/openapi.json")).await;
        assert_eq!(doc.status, 200, "{slug}");
        assert_eq!(doc.body["servers"][0]["url"], "/");
        assert_eq!(api.get(&format!("/docs/{slug}/")).await.status, 200, "{slug} page");
    }
    let ready = api.get("/health/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["checks"].as_object().unwrap().len(), 4);
    assert_eq!(api.get("/health/live").await.status, 200);
    let metrics = api.get("/metrics").await.text;
    assert!(
        metrics.contains(r#"arch_http_requests_total{endpoint="/orders",method="POST",status="201"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"arch_orders_total{outcome="paid"}"#), "{metrics}");
    assert!(
        metrics.contains(r#"arch_peer_request_duration_seconds_count{outcome="success",peer="billing-service"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"arch_db_pool_connections{service="order-service",state="max"}"#), "{metrics}");
    assert!(metrics.contains("arch_process_resident_memory_bytes"), "{metrics}");
    assert!(!metrics.contains(r#"endpoint="/health"#) && !metrics.contains(r#"endpoint="/metrics""#), "{metrics}");
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("arch_"), "one prefix for all: {line}");
    }
    server.stop(true).await;
}

on_both_backends!(one_port_serves_the_whole_system);
