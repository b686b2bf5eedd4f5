//! Test support: a fresh database per test on either backend, services
//! started on port 0, and a JSON client; the service binaries as child
//! processes (`cluster`), HAProxy in front of them (`haproxy`), the
//! invariants of what they store (`invariants`), the seeded chaos soak
//! (`chaos`) and the rolling restarts under load (`rolling`).

pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod fault_proxy;
pub mod haproxy;
pub mod invariants;
pub mod rolling;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;
use std::sync::Arc;

use service_kit::auth::{JwkSet, ServiceCredential, SigningKey};
use service_kit::config::CommonSettings;
use service_kit::db::DatabaseUrl;
use service_kit::server::Service;

pub const PG_ADMIN_URL_VAR: &str = "TEST_PG_URL";
const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn pg_base() -> String {
    std::env::var(PG_ADMIN_URL_VAR).unwrap_or_else(|_| PG_DEFAULT.to_owned())
}

/// Whether the local PostgreSQL answers. When it does not, PostgreSQL tests
/// are skipped loudly, unless `REQUIRE_POSTGRES=1` (as in CI) makes that a
/// failure.
pub fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| match PgConnection::establish(&format!("{}/postgres", pg_base())) {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {e}");
            }
            eprintln!("\n*** SKIPPING PostgreSQL tests: {} unreachable: {e} ***\n", pg_base());
            false
        }
    })
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Pg(String),
    Dir(PathBuf),
}

impl TestDb {
    /// `None` when the backend cannot be had here (PostgreSQL down).
    pub fn fresh(backend: Backend, label: &str) -> Option<TestDb> {
        let suffix = format!("{:016x}", fastrand::u64(..));
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("order-system-test-{label}-{suffix}"));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(TestDb {
                    url: format!("sqlite://{}", dir.join("db.sqlite").display()),
                    cleanup: Cleanup::Dir(dir),
                })
            }
            Backend::Postgres => {
                if !postgres_available() {
                    return None;
                }
                let name = format!("t_{}_{suffix}", label.replace('-', "_"));
                let mut admin = PgConnection::establish(&format!("{}/postgres", pg_base())).expect("admin connection");
                diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create database");
                Some(TestDb { url: format!("{}/{name}", pg_base()), cleanup: Cleanup::Pg(name) })
            }
        }
    }

    pub fn database_url(&self) -> DatabaseUrl {
        self.url.parse().expect("test URLs are valid")
    }

    pub fn common(&self, pool_size: u32) -> CommonSettings {
        CommonSettings {
            bind_addr: ([127, 0, 0, 1], 0).into(),
            database_url: self.database_url(),
            pool_size: Some(pool_size),
            shutdown: Default::default(),
            credential: credential(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Pg(name) => {
                if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", pg_base())) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin);
                }
            }
        }
    }
}

/// Runs SQL directly on a test database (to arrange states no request can
/// reach quickly, or to read what requests left behind); the rows it changed.
pub fn execute_sql(db: &TestDb, sql: &str) -> usize {
    match db.database_url() {
        DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::establish(&url).expect("connect");
            diesel::sql_query(sql).execute(&mut conn).expect("sql runs")
        }
        DatabaseUrl::Sqlite(path) => {
            let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).expect("connect");
            diesel::sql_query(sql).execute(&mut conn).expect("sql runs")
        }
    }
}

/// `SELECT COUNT(*) FROM {from}` on a test database; `from` may carry a
/// `WHERE` clause.
pub fn count_rows(db: &TestDb, from: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let query = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {from}"));
    let count: Count = match db.database_url() {
        DatabaseUrl::Postgres(url) => query.get_result(&mut PgConnection::establish(&url).expect("connect")),
        DatabaseUrl::Sqlite(path) => {
            query.get_result(&mut diesel::SqliteConnection::establish(&path.to_string_lossy()).expect("connect"))
        }
    }
    .expect("count runs");
    count.n
}

/// The service credential every test service shares.
pub const TEST_CREDENTIAL: &str = "test-service-credential-0123456789abcdef";

pub fn credential() -> ServiceCredential {
    TEST_CREDENTIAL.parse().expect("a valid credential")
}

/// The signing key of this test process, and its PEM.
fn test_key() -> &'static (Arc<SigningKey>, String) {
    static KEY: OnceLock<(Arc<SigningKey>, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let (key, pem) = SigningKey::generate();
        (Arc::new(key), pem)
    })
}

/// The signing key of this test process: user-service signs with it, and
/// [`token_for`] mints tokens with it.
pub fn signing_key() -> Arc<SigningKey> {
    test_key().0.clone()
}

/// The key's PKCS#8 PEM.
pub fn signing_key_pem() -> String {
    test_key().1.clone()
}

/// The key as a PEM file (for a service run as a process), written once.
pub fn signing_key_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("order-system-test-key-{}.pem", std::process::id()));
        std::fs::write(&path, &test_key().1).expect("key file written");
        path
    })
    .clone()
}

/// A valid token for `user`, as user-service would issue it.
pub fn token_for(user: i64) -> String {
    signing_key().issue(user, std::time::Duration::from_secs(3600)).token
}

/// Serves this process's public key set (`GET /.well-known/jwks.json`) on
/// a port of its own, as user-service would: for a service tested without
/// a user-service. Returns its base URL.
pub fn serve_key_set() -> String {
    serve_keys(Arc::new(std::sync::Mutex::new(signing_key().key_set().clone())))
}

/// Serves whatever key set `keys` holds at the time of each request.
pub fn serve_keys(keys: Arc<std::sync::Mutex<JwkSet>>) -> String {
    let (listener, url) = listener();
    let server = actix_web::HttpServer::new(move || {
        let keys = keys.clone();
        actix_web::App::new().route(
            service_kit::auth::JWKS_PATH,
            actix_web::web::get().to(move || {
                let set = keys.lock().expect("key set lock").clone();
                async move { actix_web::HttpResponse::Ok().json(set) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("key server listens")
    .run();
    actix_web::rt::spawn(server);
    url
}

/// A listener on a free loopback port and its base URL.
pub fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    (listener, url)
}

/// Serves `services` on `listener` in the background until the test ends.
pub fn serve(listener: TcpListener, services: Vec<Service>) -> actix_web::dev::ServerHandle {
    let server = service_kit::server::start(listener, services).expect("server starts");
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

/// A JSON answer: status, headers and body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json body with this status and returns its slug.
    pub fn assert_problem(&self, status: u16) -> String {
        assert_eq!(self.status, status, "expected {status}, got {}: {}", self.status, self.text);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text);
        for field in ["type", "title", "status", "detail"] {
            assert!(!self.body[field].is_null(), "problem without {field}: {}", self.text);
        }
        assert_eq!(self.body["status"], status);
        assert_eq!(
            self.body["request_id"].as_str(),
            self.header("x-request-id"),
            "a problem names the request it answers: {}",
            self.text
        );
        self.body["type"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
    }
}

/// A small JSON client for tests; with a token, every request carries it.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api { base: base.into(), client: reqwest::Client::new(), token: None }
    }

    /// The same client, sending `token` as its bearer token.
    pub fn with_token(&self, token: impl Into<String>) -> Api {
        Api { token: Some(token.into()), ..self.clone() }
    }

    /// The same client, acting for `user` (a token from [`token_for`]).
    pub fn as_user(&self, user: i64) -> Api {
        self.with_token(token_for(user))
    }

    /// The same client, calling as another service (the service credential).
    pub fn as_service(&self) -> Api {
        self.with_token(TEST_CREDENTIAL)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let res = req.send().await.expect("request sent");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body read");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn post_keyed(&self, path: &str, key: &str, body: Value) -> Reply {
        self.send(self.client.post(format!("{}{path}", self.base)).header("Idempotency-Key", key).json(&body)).await
    }

    pub async fn post_raw(&self, path: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req).await
    }
}

/// Declares `#[actix_web::test]`s that run `$body(Backend)` once per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $name() {
                    if !$crate::postgres_available() {
                        return;
                    }
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A random name, for usernames and keys that must not collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:x}", fastrand::u64(..))
}
