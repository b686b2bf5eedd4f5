//! Test support: a fresh database per test on either backend, services
//! started on port 0, and a JSON client; the service binaries as child
//! processes (`cluster`), the invariants of what they store (`invariants`)
//! and the seeded chaos soak (`chaos`).

pub mod chaos;
pub mod cluster;
pub mod fault_proxy;
pub mod invariants;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::OnceLock;

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;
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
/// reach quickly, or to read what requests left behind).
pub fn execute_sql(db: &TestDb, sql: &str) {
    match db.database_url() {
        DatabaseUrl::Postgres(url) => {
            let mut conn = PgConnection::establish(&url).expect("connect");
            diesel::sql_query(sql).execute(&mut conn).expect("sql runs");
        }
        DatabaseUrl::Sqlite(path) => {
            let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy()).expect("connect");
            diesel::sql_query(sql).execute(&mut conn).expect("sql runs");
        }
    }
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
        self.body["type"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
    }
}

/// A small JSON client for tests.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api { base: base.into(), client: reqwest::Client::new() }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
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
