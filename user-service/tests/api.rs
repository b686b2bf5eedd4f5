//! user-service on a random port against a fresh database, with a real
//! billing-service beside it, on SQLite and on PostgreSQL.

use std::time::Duration;

use serde_json::json;
use service_kit::config::BaseUrl;
use testkit::{Api, Backend, TestDb, on_both_backends, unique};

struct Stack {
    users: Api,
    billing: Api,
    _dbs: Vec<TestDb>,
}

fn settings(db: &TestDb, billing_url: BaseUrl) -> user_service::Settings {
    user_service::Settings {
        common: db.common(4),
        billing_url,
        signing_key: testkit::signing_key(),
        token_ttl: Duration::from_secs(3600),
        http_timeout: Duration::from_millis(500),
        budget: Duration::from_millis(1500),
        recovery_interval: Duration::from_secs(3600),
    }
}

async fn spawn(backend: Backend) -> Stack {
    let billing_db = TestDb::fresh(backend, "billing").expect("backend available");
    let (listener, billing_url) = testkit::listener();
    let billing_settings =
        billing_service::Settings { common: billing_db.common(4), user_url: testkit::serve_key_set().parse().unwrap() };
    let billing = billing_service::service(&billing_settings, reqwest::Client::new()).unwrap();
    testkit::serve(listener, vec![billing]);
    let users_db = TestDb::fresh(backend, "users").expect("backend available");
    let s = settings(&users_db, billing_url.parse().unwrap());
    let (listener, users_url) = testkit::listener();
    testkit::serve(listener, vec![user_service::service(&s, user_service::http_client(&s)).unwrap()]);
    Stack { users: Api::new(users_url), billing: Api::new(billing_url), _dbs: vec![billing_db, users_db] }
}

const PASSWORD: &str = "correct horse battery";

fn new_user() -> serde_json::Value {
    let name = unique("user_");
    json!({ "username": name, "email": format!("{name}@example.com"), "password": PASSWORD, "first_name": "Ann" })
}

async fn creating_a_user_opens_the_billing_account(backend: Backend) {
    let s = spawn(backend).await;
    let body = new_user();
    let r = s.users.post("/users", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    assert_eq!(r.header("location"), Some(format!("/users/{id}").as_str()));
    assert_eq!(r.body["username"], body["username"]);
    assert_eq!(r.body["last_name"], serde_json::Value::Null, "absent optional fields are null");
    assert_eq!(r.body["phone"], serde_json::Value::Null);
    let account = s.billing.as_user(id).get(&format!("/billing/accounts/{id}")).await;
    assert_eq!(account.status, 200);
    assert_eq!(account.body["balance"], 0);
    let got = s.users.as_user(id).get(&format!("/users/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);
}

async fn duplicates_are_refused_case_insensitively(backend: Backend) {
    let s = spawn(backend).await;
    let body = new_user();
    assert_eq!(s.users.post("/users", body.clone()).await.status, 201);
    let mut same_name = new_user();
    same_name["username"] = json!(body["username"].as_str().unwrap().to_uppercase());
    assert_eq!(s.users.post("/users", same_name).await.assert_problem(409), "username-taken");
    let mut same_email = new_user();
    same_email["email"] = json!(body["email"].as_str().unwrap().to_uppercase());
    assert_eq!(s.users.post("/users", same_email).await.assert_problem(409), "email-taken");
}

/// Many sign-ups for one e-mail under different usernames at once (and for
/// one username under different e-mails): one wins, and every loser is told
/// the field it lost on, never the other one.
async fn racing_sign_ups_are_told_which_field_is_taken(backend: Backend) {
    let s = spawn(backend).await;
    for round in 0..10 {
        let shared = unique("race_");
        let attempts = (0..8).map(|_| {
            let own = unique("racer_");
            let body = if round % 2 == 0 {
                json!({ "username": own, "email": format!("{shared}@example.com"), "password": PASSWORD })
            } else {
                json!({ "username": shared, "email": format!("{own}@example.com"), "password": PASSWORD })
            };
            let users = s.users.clone();
            async move { users.post("/users", body).await }
        });
        let answers = futures_util::future::join_all(attempts).await;
        assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1, "one wins");
        let expected = if round % 2 == 0 { "email-taken" } else { "username-taken" };
        for r in answers.iter().filter(|r| r.status != 201) {
            assert_eq!(r.assert_problem(409), expected, "{}", r.text);
        }
    }
}

async fn invalid_users_are_refused(backend: Backend) {
    let s = spawn(backend).await;
    for (field, value) in [
        ("username", json!("ab")),
        ("username", json!("x".repeat(65))),
        ("username", json!("has space")),
        ("email", json!("not-an-email")),
        ("email", json!("a@b")),
        ("phone", json!("call me")),
        ("first_name", json!("x".repeat(101))),
    ] {
        let mut body = new_user();
        body[field] = value;
        s.users.post("/users", body).await.assert_problem(422);
    }
    s.users.post("/users", json!({ "email": "a@b.co" })).await.assert_problem(400);
    s.users.post("/users", json!({ "username": 5, "email": "a@b.co" })).await.assert_problem(400);
    s.users.post_raw("/users", Some("text/plain"), new_user().to_string()).await.assert_problem(415);
    // A JSON value that is not an object is not a user, even when its
    // elements line up with the fields.
    let name = unique("arr_");
    for body in [json!([name, format!("{name}@example.com")]), json!("ann"), json!(5), json!(null), json!([])] {
        s.users.post("/users", body).await.assert_problem(400);
    }
    let taken = s
        .users
        .post("/users", json!({ "username": name, "email": format!("{name}@example.com"), "password": PASSWORD }))
        .await;
    assert_eq!(taken.status, 201, "nothing was stored for the array: {}", taken.text);
    let reader = s.users.as_user(12345);
    reader.get("/users/abc").await.assert_problem(400);
    reader.get("/users/0").await.assert_problem(400);
    reader.get("/users/12345").await.assert_problem(404);
    s.users.send(s.users.client.delete(format!("{}/users/1", s.users.base))).await.assert_problem(405);
}

async fn an_idempotency_key_replays_the_first_answer(backend: Backend) {
    let s = spawn(backend).await;
    let key = unique("key-");
    let body = new_user();
    let first = s.users.post_keyed("/users", &key, body.clone()).await;
    assert_eq!(first.status, 201);
    let replay = s.users.post_keyed("/users", &key, body.clone()).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("location"), first.header("location"));
    let other = s.users.post_keyed("/users", &key, new_user()).await;
    assert_eq!(other.assert_problem(422), "idempotency-key-reused");
    s.users.post_keyed("/users", "", new_user()).await.assert_problem(400);
    s.users.post_keyed("/users", &"k".repeat(256), new_user()).await.assert_problem(400);
}

async fn no_user_is_left_when_billing_is_unreachable(backend: Backend) {
    let db = TestDb::fresh(backend, "users").expect("backend available");
    // A port nobody listens on.
    let dead = {
        let (l, url) = testkit::listener();
        drop(l);
        url
    };
    let s = settings(&db, dead.parse().unwrap());
    let (listener, url) = testkit::listener();
    testkit::serve(listener, vec![user_service::service(&s, user_service::http_client(&s)).unwrap()]);
    let users = Api::new(url);
    let body = new_user();
    let key = unique("key-");
    let r = users.post_keyed("/users", &key, body.clone()).await;
    assert_eq!(r.assert_problem(503), "service-unavailable");
    assert!(users.as_user(1).get("/users/1").await.status == 404, "no user is visible");
    // The name is free again and the key may be retried.
    let again = users.post_keyed("/users", &key, body).await;
    again.assert_problem(503);
}

on_both_backends!(
    racing_sign_ups_are_told_which_field_is_taken,
    creating_a_user_opens_the_billing_account,
    duplicates_are_refused_case_insensitively,
    invalid_users_are_refused,
    an_idempotency_key_replays_the_first_answer,
    no_user_is_left_when_billing_is_unreachable,
    recovery_finishes_a_user_left_pending,
);

/// The body the crashed request sent, in the order the service reads it.
fn crashed_request() -> String {
    r#"{"username":"Crashed","email":"crashed@example.com","password":"correct horse battery","first_name":null,"last_name":null,"phone":null}"#.to_owned()
}

/// A user whose creating request died between storing it and opening its
/// account (a crash) is invisible, and recovery finishes it.
async fn recovery_finishes_a_user_left_pending(backend: Backend) {
    let s = spawn(backend).await;
    let users_db = &s._dbs[1];
    testkit::execute_sql(
        users_db,
        "INSERT INTO users (username, username_key, email, email_key, status, created_at) \
         VALUES ('Crashed', 'crashed', 'crashed@example.com', 'crashed@example.com', 'pending', '2026-01-01 00:00:00')",
    );
    testkit::execute_sql(
        users_db,
        &format!(
            "INSERT INTO idempotency_keys (key, request, resource_id, created_at) VALUES ('k-crash', '{}', 1, '2026-01-01 00:00:00')",
            service_kit::auth::sha256_hex(crashed_request().as_bytes())
        ),
    );
    s.users.as_user(1).get("/users/1").await.assert_problem(404);
    let billing_url: BaseUrl = s.billing.base.parse().unwrap();
    let settings = settings(users_db, billing_url);
    let pool = service_kit::db::connect(&settings.common.database_url, Some(2), &user_service::MIGRATIONS).unwrap();
    let users = user_service::registration::Users {
        pool,
        billing: user_service::billing::BillingClient {
            peer: service_kit::peer::Peer::new("billing-service", settings.billing_url.clone(), reqwest::Client::new())
                .with_credential(testkit::credential()),
            policy: service_kit::peer::RetryPolicy::within(Duration::from_secs(2)),
        },
        answer_for: user_service::routes::answer_for,
    };
    assert_eq!(users.recover(Duration::from_secs(30)).await.unwrap(), 1);
    let user = s.users.as_user(1).get("/users/1").await;
    assert_eq!(user.status, 200, "{}", user.text);
    assert_eq!(user.body["username"], "Crashed");
    assert_eq!(s.billing.as_user(1).get("/billing/accounts/1").await.status, 200);
    // The key's replay is the 201 the crashed request never sent.
    let replay = s.users.post_keyed("/users", "k-crash", serde_json::from_str(&crashed_request()).unwrap()).await;
    assert_eq!(replay.status, 201, "{}", replay.text);
    assert_eq!(replay.body, user.body);
    assert_eq!(users.recover(Duration::from_secs(30)).await.unwrap(), 0, "nothing left to do");
}
