//! Identity and access from the outside: every route guarded as declared,
//! every kind of bad token refused, another user's data out of reach,
//! passwords and sign-ins with their bad inputs, the sign-in throttle, the
//! key set out of reach, and no secret in any log line. On SQLite and on
//! PostgreSQL where a database is involved.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use service_kit::auth::{Access, SigningKey};
use support::{PASSWORD, System, Timing, spawn_all_in_one};
use testkit::fault_proxy::{FaultProxy, Mode};
use testkit::{Api, Backend, Reply, TestDb, on_both_backends, unique};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(user: i64) -> Value {
    json!({ "sub": user.to_string(), "iat": now(), "exp": now() + 600, "iss": "user-service", "aud": "arch" })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A token signed by `key` (an Ed25519 PEM) whose header names `kid`.
fn signed(claims: &Value, kid: &str, pem: &[u8]) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(pem).unwrap()).unwrap()
}

/// Every kind of token SPEC.md says must be refused, by name.
fn bad_tokens(user: i64) -> Vec<(&'static str, String)> {
    let key = testkit::signing_key();
    let kid = key.kid().to_owned();
    let pem = testkit::signing_key_pem();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims(user);
        change(&mut c);
        signed(&c, &kid, pem.as_bytes())
    };
    let good = testkit::token_for(user);
    let x = key.key_set().keys[0].clone();
    let public_x = match x.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(p) => p.x,
        _ => unreachable!("an Ed25519 key"),
    };
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let (other, other_pem) = SigningKey::generate();
    assert_ne!(other.kid(), kid);
    let parts: Vec<&str> = good.split('.').collect();
    vec![
        ("alg none", format!("{}.{}.", b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })), b64(&claims(user)))),
        (
            "HS256 with the public key as the secret",
            jsonwebtoken::encode(&hs, &claims(user), &EncodingKey::from_secret(public_x.as_bytes()).unwrap()).unwrap(),
        ),
        ("another Ed25519 key under the same kid", signed(&claims(user), &kid, other_pem.as_bytes())),
        ("expired", with(&|c| c["exp"] = json!(now() - 120))),
        ("not yet valid (nbf)", with(&|c| c["nbf"] = json!(now() + 120))),
        ("issued in the future (iat)", with(&|c| c["iat"] = json!(now() + 120))),
        ("another aud", with(&|c| c["aud"] = json!("somebody-else"))),
        ("another iss", with(&|c| c["iss"] = json!("not-user-service"))),
        ("unknown kid", signed(&claims(user), "no-such-kid", pem.as_bytes())),
        ("truncated", good[..good.len() - 8].to_owned()),
        ("bad base64 segment", format!("{}.!!!not-base64!!!.{}", parts[0], parts[2])),
        ("not a JWT at all", "garbage".to_owned()),
        ("the service credential", testkit::TEST_CREDENTIAL.to_owned()),
    ]
}

fn assert_unauthorized(r: &Reply, challenge: &str, what: &str) {
    assert_eq!(r.assert_problem(401), "unauthorized", "{what}: {}", r.text);
    assert_eq!(r.header("www-authenticate"), Some(challenge), "{what}");
}

/// Each bad token is a 401 with `Bearer error="invalid_token"`, on a
/// service that checks tokens with its own key (user-service) and on ones
/// that fetch the key set (billing, orders, notifications); the good token
/// passes everywhere.
async fn bad_tokens_are_refused_everywhere(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.user().await;
    let routes = [
        (&sys.api.users, format!("/users/{user}")),
        (&sys.api.billing, format!("/billing/accounts/{user}")),
        (&sys.api.orders, format!("/orders?user_id={user}")),
        (&sys.api.notifications, format!("/notifications?user_id={user}")),
    ];
    for (api, path) in &routes {
        assert_eq!(api.as_user(user).get(path).await.status, 200, "{path} with a good token");
        for (what, token) in bad_tokens(user) {
            let r = api.with_token(token).get(path).await;
            assert_unauthorized(&r, r#"Bearer error="invalid_token""#, &format!("{what} on {path}"));
        }
        let none = api.get(path).await;
        assert_unauthorized(&none, "Bearer", &format!("no token on {path}"));
        let basic =
            api.send(api.client.get(format!("{}{path}", api.base)).header("Authorization", "Basic dXNlcjpwdw==")).await;
        assert_unauthorized(&basic, "Bearer", &format!("Authorization without Bearer on {path}"));
        let token = testkit::token_for(user);
        let twice = api
            .send(
                api.client
                    .get(format!("{}{path}", api.base))
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Authorization", format!("Bearer {token}")),
            )
            .await;
        assert_unauthorized(&twice, r#"Bearer error="invalid_token""#, &format!("two Authorization headers on {path}"));
    }
}

/// The 401 comes before every other check: a wrong content type, an
/// oversized or malformed body, an invalid id. An unknown path is still a
/// 404 and a wrong method a 405.
async fn the_401_comes_first(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let orders = &sys.api.orders;
    assert_unauthorized(&orders.post_raw("/orders", Some("text/plain"), "x").await, "Bearer", "wrong content type");
    assert_unauthorized(&orders.post_raw("/orders", Some("application/json"), "{").await, "Bearer", "malformed body");
    let huge = format!(r#"{{"pad": "{}"}}"#, "x".repeat(70_000));
    assert_unauthorized(&orders.post_raw("/orders", Some("application/json"), huge).await, "Bearer", "oversized body");
    assert_unauthorized(&sys.api.billing.get("/billing/accounts/abc").await, "Bearer", "invalid id");
    sys.api.billing.get("/billing/nothing-here").await.assert_problem(404);
    let put = orders.send(orders.client.put(format!("{}/orders", orders.base))).await;
    put.assert_problem(405);
    // With a token, the usual answers.
    sys.api.billing.as_user(1).get("/billing/accounts/abc").await.assert_problem(400);
}

/// A token reads and moves its own user's things only: another user's id in
/// a path, query or body is a 403 (whether or not that user exists) and
/// nothing is read or written; another user's order is a 404, as if it did
/// not exist.
async fn nobody_touches_another_users_things(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let (ann, bob) = (sys.user().await, sys.funded_user(1_000).await);
    let paid = sys.order(bob, 100).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let bobs_order = paid.body["id"].as_i64().unwrap();
    let as_ann = |api: &Api| api.as_user(ann);
    for (api, path) in [
        (&sys.api.users, format!("/users/{bob}")),
        (&sys.api.billing, format!("/billing/accounts/{bob}")),
        (&sys.api.billing, format!("/billing/accounts/{bob}/transactions")),
        (&sys.api.orders, format!("/orders?user_id={bob}")),
        (&sys.api.notifications, format!("/notifications?user_id={bob}")),
        (&sys.api.billing, "/billing/accounts/987654".to_owned()),
    ] {
        assert_eq!(as_ann(api).get(&path).await.assert_problem(403), "forbidden", "{path}");
    }
    let withdraw = json!({ "amount": 500, "reference": unique("theft-") });
    let r = as_ann(&sys.api.billing).post(&format!("/billing/accounts/{bob}/withdraw"), withdraw).await;
    assert_eq!(r.assert_problem(403), "forbidden");
    let deposit =
        as_ann(&sys.api.billing).post(&format!("/billing/accounts/{bob}/deposit"), json!({ "amount": 5 })).await;
    deposit.assert_problem(403);
    let order = as_ann(&sys.api.orders).post("/orders", json!({ "user_id": bob, "price": 100 })).await;
    assert_eq!(order.assert_problem(403), "forbidden", "{}", order.text);
    assert_eq!(
        as_ann(&sys.api.orders).get(&format!("/orders/{bobs_order}")).await.assert_problem(404),
        "order-not-found"
    );
    // Nothing moved.
    assert_eq!(sys.balance(bob).await, 900);
    assert_eq!(sys.ledger(bob).await.len(), 2);
    assert_eq!(sys.orders_of(bob).await.len(), 1);
    assert!(sys.orders_of(ann).await.is_empty());
    // An invalid id is a 400 before the 403.
    as_ann(&sys.api.billing).get("/billing/accounts/0").await.assert_problem(400);
}

/// Internal routes take the service credential and nothing else.
async fn internal_routes_take_only_the_service_credential(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.user().await;
    let open = json!({ "user_id": 424242 });
    let letter =
        json!({ "user_id": user, "order_id": 1, "kind": "order_paid", "email": "a@b.co", "subject": "s", "body": "b" });
    for (api, path, body) in [
        (&sys.api.billing, "/internal/billing/accounts", open.clone()),
        (&sys.api.notifications, "/internal/notifications", letter.clone()),
    ] {
        assert_unauthorized(&api.post(path, body.clone()).await, "Bearer", &format!("{path} without a token"));
        let with_user = api.as_user(user).post(path, body.clone()).await;
        assert_unauthorized(&with_user, r#"Bearer error="invalid_token""#, &format!("{path} with a user's token"));
        let wrong = api.with_token("x".repeat(40)).post(path, body.clone()).await;
        assert_unauthorized(&wrong, r#"Bearer error="invalid_token""#, &format!("{path} with a wrong credential"));
        assert!(api.as_service().post(path, body).await.status < 300, "{path} with the credential");
    }
    let user_read = sys.api.users.as_user(user).get(&format!("/internal/users/{user}")).await;
    assert_unauthorized(&user_read, r#"Bearer error="invalid_token""#, "internal user read with a user's token");
    assert_eq!(sys.api.users.as_service().get(&format!("/internal/users/{user}")).await.status, 200);
}

/// Passwords: 8 to 128 characters, a string, required; nothing is written
/// when one is refused. A sign-in for an unknown user and one with a wrong
/// password get the same answer.
async fn passwords_and_sign_ins(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let users = &sys.api.users;
    let name = unique("pw_");
    let body =
        |password: Value| json!({ "username": name, "email": format!("{name}@example.com"), "password": password });
    users.post("/users", body(json!("x".repeat(7)))).await.assert_problem(422);
    users.post("/users", body(json!("x".repeat(129)))).await.assert_problem(422);
    users.post("/users", body(json!(12345678))).await.assert_problem(400);
    let mut missing = body(json!(null));
    missing.as_object_mut().unwrap().remove("password");
    users.post("/users", missing).await.assert_problem(400);
    let created = users.post("/users", body(json!("ж".repeat(128)))).await;
    assert_eq!(created.status, 201, "128 characters (not bytes) is fine: {}", created.text);
    assert!(created.body.get("password").is_none() && !created.text.contains("жжж"), "{}", created.text);

    let unknown = users.post("/users/tokens", json!({ "username": unique("nobody_"), "password": PASSWORD })).await;
    let wrong = users.post("/users/tokens", json!({ "username": name, "password": "not the password" })).await;
    // A name no user can have (a NUL: PostgreSQL refuses it in text) is an unknown user.
    let impossible = users.post("/users/tokens", json!({ "username": "nul\u{0}name", "password": "" })).await;
    impossible.assert_problem(401);
    assert_eq!(unknown.assert_problem(401), "invalid-credentials");
    assert_eq!(wrong.assert_problem(401), "invalid-credentials");
    for field in ["type", "title", "status", "detail"] {
        assert_eq!(unknown.body[field], wrong.body[field], "{field}: the same answer");
    }
    let ok = users.post("/users/tokens", json!({ "username": name.to_uppercase(), "password": "ж".repeat(128) })).await;
    assert_eq!(ok.status, 200, "usernames compare case-insensitively: {}", ok.text);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert_eq!(ok.body["expires_in"], 3600);
    users.post("/users/tokens", json!({ "username": name })).await.assert_problem(400);
    users.post("/users/tokens", json!(["a", "b"])).await.assert_problem(400);
}

/// Ten failed sign-ins for a username within 15 minutes shut it out: the
/// 11th attempt is a 429 with Retry-After, the right password included, and
/// the count is per username whatever its case. The counter lives in the
/// database, so a second user-service replica on it sees the same count.
async fn the_eleventh_wrong_password_is_throttled(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let users = &sys.api.users;
    let name = unique("thr_");
    let r = users
        .post("/users", json!({ "username": name, "email": format!("{name}@example.com"), "password": PASSWORD }))
        .await;
    assert_eq!(r.status, 201);
    for attempt in 1..=10 {
        let username = if attempt % 2 == 0 { name.to_uppercase() } else { name.clone() };
        let r = users.post("/users/tokens", json!({ "username": username, "password": "wrong password" })).await;
        assert_eq!(r.assert_problem(401), "invalid-credentials", "attempt {attempt}");
    }
    for password in ["wrong password", PASSWORD] {
        let r = users.post("/users/tokens", json!({ "username": name, "password": password })).await;
        assert_eq!(r.assert_problem(429), "too-many-requests", "{password:?}: {}", r.text);
        let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=900).contains(&retry), "Retry-After {retry}");
    }
    let failures = testkit::count_rows(&sys.dbs.users, &format!("sign_in_failures WHERE username_key = '{name}'"));
    assert_eq!(failures, 10, "counted in the database; the refused attempts are not failures");
    // A username nobody has is counted too.
    let ghost = unique("ghost_");
    for _ in 0..10 {
        users.post("/users/tokens", json!({ "username": ghost, "password": "whatever!" })).await.assert_problem(401);
    }
    users.post("/users/tokens", json!({ "username": ghost, "password": "whatever!" })).await.assert_problem(429);
}

/// A service that cannot fetch user-service's key set answers 503 for its
/// protected routes (never 401, never unchecked), and checks tokens again
/// once the set can be had; an unknown kid makes it fetch the set again.
async fn without_the_key_set_protected_routes_are_503(backend: Backend) {
    let db = TestDb::fresh(backend, "billing-keys").unwrap();
    let keys = Arc::new(Mutex::new(testkit::signing_key().key_set().clone()));
    let key_server = testkit::serve_keys(keys.clone());
    let proxy = FaultProxy::start(&key_server);
    proxy.set(Mode::Refuse);
    let (listener, url) = testkit::listener();
    let settings = billing_service::Settings { common: db.common(4), user_url: proxy.url().parse().unwrap() };
    testkit::serve(listener, vec![billing_service::service(&settings, reqwest::Client::new()).unwrap()]);
    let billing = Api::new(url);
    billing.as_service().post("/internal/billing/accounts", json!({ "user_id": 7 })).await;

    let r = billing.as_user(7).get("/billing/accounts/7").await;
    assert_eq!(r.assert_problem(503), "service-unavailable", "{}", r.text);
    let forged = billing.with_token(bad_tokens(7).remove(2).1).get("/billing/accounts/7").await;
    forged.assert_problem(503);
    assert_unauthorized(&billing.get("/billing/accounts/7").await, "Bearer", "no token needs no key");

    proxy.set(Mode::Pass);
    assert_eq!(billing.as_user(7).get("/billing/accounts/7").await.status, 200);
    // A new key (a rotation): its kid is unknown to the cached set, which
    // is fetched again (no more often than every 5 s).
    let (rotated, _) = SigningKey::generate();
    keys.lock().unwrap().keys.extend(rotated.key_set().keys.clone());
    let token = rotated.issue(7, Duration::from_secs(60)).token;
    let accepted = support::eventually(Duration::from_secs(10), || {
        let billing = billing.with_token(token.clone());
        async move { billing.get("/billing/accounts/7").await.status == 200 }
    })
    .await;
    assert!(accepted, "the rotated key was fetched and accepted");
    // With user-service gone again, the cached set still judges the kids it knows.
    proxy.set(Mode::Refuse);
    assert_eq!(billing.as_user(7).get("/billing/accounts/7").await.status, 200);
}

on_both_backends!(
    bad_tokens_are_refused_everywhere,
    the_401_comes_first,
    nobody_touches_another_users_things,
    internal_routes_take_only_the_service_credential,
    passwords_and_sign_ins,
    the_eleventh_wrong_password_is_throttled,
    without_the_key_set_protected_routes_are_503,
);

/// Every route of every service is either on the short open list or
/// guarded: called without a token it answers 401 with `WWW-Authenticate:
/// Bearer`. A new route that forgets to say who may call it cannot be
/// declared (an `Endpoint` needs its `Access`); one declared `Open` by
/// mistake fails here.
#[actix_web::test]
async fn every_route_is_open_by_name_or_guarded() {
    const OPEN: &[&str] = &["POST /users", "POST /users/tokens", "GET /.well-known/jwks.json"];
    let process = spawn_all_in_one(&[]).await;
    let api = Api::new(process.url.clone());
    let endpoints = [
        user_service::endpoints(),
        billing_service::endpoints(),
        order_service::endpoints(),
        notification_service::endpoints(),
    ]
    .concat();
    let mut open = Vec::new();
    for endpoint in &endpoints {
        let name = format!("{} {}", endpoint.method, endpoint.path);
        if endpoint.access == Access::Open {
            open.push(name);
            continue;
        }
        let path = endpoint.path.replace("{user_id}", "1").replace("{id}", "1");
        let url = format!("{}{path}", api.base);
        let r = api.send(api.client.request(endpoint.method.as_str().parse().unwrap(), url)).await;
        assert_unauthorized(&r, "Bearer", &name);
    }
    open.sort();
    let mut expected: Vec<String> = OPEN.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(open, expected, "the open routes");
}

/// No password, token or service credential appears in any log line, even
/// at debug level, across sign-ups, sign-ins (right and wrong), requests
/// with good and bad tokens, and the internal calls between the services;
/// nor on `/metrics`.
#[actix_web::test]
async fn no_secret_reaches_a_log_line() {
    let process = spawn_all_in_one(&[("RUST_LOG", "debug".into())]).await;
    let api = Api::new(process.url.clone());
    let (name, password, wrong) = (unique("quiet_"), "s3cret-password-in-logs?".to_owned(), "wr0ng-password-in-logs!");
    let r = api
        .post("/users", json!({ "username": name, "email": format!("{name}@example.com"), "password": password }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_i64().unwrap();
    api.post("/users/tokens", json!({ "username": name, "password": wrong })).await.assert_problem(401);
    let signed = api.post("/users/tokens", json!({ "username": name, "password": password })).await;
    let token = signed.body["access_token"].as_str().unwrap().to_owned();
    let me = api.with_token(&token);
    me.post(&format!("/billing/accounts/{id}/deposit"), json!({ "amount": 500 })).await;
    assert_eq!(me.post("/orders", json!({ "user_id": id, "price": 100 })).await.status, 201);
    me.get(&format!("/notifications?user_id={id}")).await;
    let forged = format!("{token}x");
    api.with_token(&forged).get(&format!("/users/{id}")).await.assert_problem(401);
    let metrics = api.get("/metrics").await.text;
    let log = process.log().join("\n");
    assert!(log.contains("POST /users/tokens 401"), "the log was captured: {log}");
    for secret in [password.as_str(), wrong, token.as_str(), forged.as_str(), testkit::TEST_CREDENTIAL] {
        let head = &secret[..12.min(secret.len())];
        assert!(!log.contains(secret), "a secret in the log: {head}…");
        assert!(!metrics.contains(secret), "a secret on /metrics: {head}…");
    }
    // Not even the signature part of the token.
    assert!(!log.contains(token.rsplit('.').next().unwrap()));
}
