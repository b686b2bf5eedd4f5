//! `Idempotency-Key` on creating requests: the first request with a key
//! claims it (in the same transaction that writes the resource), and its
//! final answer is stored; a repeat with the same body gets that answer, a
//! repeat with another body gets 422, a repeat while the first still runs
//! gets 409.
//!
//! Each service that uses it has an `idempotency_keys` table created by its
//! own migrations (the SQL is in `IDEMPOTENCY_KEYS_SQL`'s doc).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::problem::{Problem, ProblemType};

pub const HEADER: &str = "Idempotency-Key";

diesel::table! {
    idempotency_keys (key) {
        key -> Text,
        request -> Text,
        resource_id -> Nullable<BigInt>,
        status_code -> Nullable<Integer>,
        response_body -> Nullable<Text>,
        location -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

/// A client-chosen key: 1..=255 characters.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The request's key, if it sent one; a present but unusable key is a 400.
    pub fn from_request(req: &HttpRequest) -> Result<Option<Self>, Problem> {
        let Some(value) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| Problem::bad_request("Idempotency-Key must be visible ASCII text"))?;
        if text.is_empty() || text.chars().count() > 255 {
            return Err(Problem::bad_request("Idempotency-Key must be 1 to 255 characters long"));
        }
        Ok(Some(IdempotencyKey(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This key as user `user`'s: `user-{id}:` and a SHA-256 of the key,
    /// which fits the 255 characters of the stored key whatever its length.
    pub fn scoped_to(&self, user: i64) -> IdempotencyKey {
        IdempotencyKey(format!("user-{user}:{}", crate::auth::sha256_hex(self.0.as_bytes())))
    }
}

/// A request that carries an Idempotency-Key: the key and the request's
/// fingerprint (its canonical JSON), which a repeat must match.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedRequest {
    pub key: IdempotencyKey,
    pub fingerprint: String,
}

impl KeyedRequest {
    /// The fingerprint is a SHA-256 of the request's JSON: what a repeat must
    /// match, without keeping the request (a password, say) itself.
    pub fn new(key: IdempotencyKey, request: &impl serde::Serialize) -> KeyedRequest {
        let json = serde_json::to_string(request).expect("a request always serializes");
        KeyedRequest { key, fingerprint: crate::auth::sha256_hex(json.as_bytes()) }
    }
}

/// Why a key cannot be used for this request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("this Idempotency-Key was used with a different request body")]
    Reused,
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    InProgress,
}

impl From<&KeyRefusal> for Problem {
    fn from(e: &KeyRefusal) -> Problem {
        match e {
            KeyRefusal::Reused => Problem::new(ProblemType::IdempotencyKeyReused, e.to_string()),
            KeyRefusal::InProgress => Problem::new(ProblemType::RequestInProgress, e.to_string()),
        }
    }
}

/// The request's `Idempotency-Key`, if it sent one; as an extractor, a
/// present but unusable key is a 400 before the handler runs.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyHeader(pub Option<IdempotencyKey>);

impl actix_web::FromRequest for KeyHeader {
    type Error = Problem;
    type Future = std::future::Ready<Result<KeyHeader, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(IdempotencyKey::from_request(req).map(KeyHeader))
    }
}

impl KeyHeader {
    /// The key with the request it came with.
    pub fn with(self, request: &impl serde::Serialize) -> Option<KeyedRequest> {
        self.0.map(|key| KeyedRequest::new(key, request))
    }

    /// The key, scoped to the user the request acts for (two users' keys
    /// never meet), with the request it came with.
    pub fn for_user(self, user: i64, request: &impl serde::Serialize) -> Option<KeyedRequest> {
        self.0.map(|key| KeyedRequest::new(key.scoped_to(user), request))
    }
}

/// An answer kept for replays.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
}

impl StoredResponse {
    pub fn to_response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut res = HttpResponse::build(status);
        res.content_type("application/json");
        if let Some(location) = &self.location {
            res.insert_header((actix_web::http::header::LOCATION, location.as_str()));
        }
        res.body(self.body.clone())
    }

    /// The answer once more, marked as a replay.
    pub fn replay_response(&self) -> HttpResponse {
        let mut res = self.to_response();
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
        res
    }
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
struct KeyRow {
    request: String,
    status_code: Option<i32>,
    response_body: Option<String>,
    location: Option<String>,
}

/// What a key says about a request carrying it.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// First use: go ahead.
    Fresh,
    /// Done before with this body: answer this.
    Replay(StoredResponse),
    /// Used before with another body.
    Mismatch,
    /// The first request with this key has not finished.
    InProgress,
}

impl Claim {
    /// `Fresh`: no earlier answer, go ahead; `Replay`: that answer; else the
    /// refusal.
    pub fn settle(self) -> Result<Option<StoredResponse>, KeyRefusal> {
        match self {
            Claim::Fresh => Ok(None),
            Claim::Replay(stored) => Ok(Some(stored)),
            Claim::Mismatch => Err(KeyRefusal::Reused),
            Claim::InProgress => Err(KeyRefusal::InProgress),
        }
    }
}

fn judge(row: KeyRow, request: &str) -> Claim {
    if row.request != request {
        return Claim::Mismatch;
    }
    match (row.status_code, row.response_body) {
        (Some(status), Some(body)) => {
            Claim::Replay(StoredResponse { status: u16::try_from(status).unwrap_or(200), body, location: row.location })
        }
        _ => Claim::InProgress,
    }
}

/// Key bookkeeping, the same code compiled for each backend.
pub trait IdempotencyStore {
    /// What the key says, without claiming it.
    fn check_key(&mut self, key: &IdempotencyKey, request: &str) -> QueryResult<Claim>;
    /// Claims the key for `request` unless it is known; call inside the
    /// transaction that writes the resource.
    fn claim_key(&mut self, key: &IdempotencyKey, request: &str, now: NaiveDateTime) -> QueryResult<Claim>;
    fn attach_resource(&mut self, key: &IdempotencyKey, resource_id: i64) -> QueryResult<()>;
    /// Stores the answer for replays, unless one is stored already (the
    /// first answer is the one that stays).
    fn complete_key(&mut self, key: &str, response: &StoredResponse) -> QueryResult<()>;
    /// Completes the unfinished key of `resource_id`, if one exists.
    fn complete_key_of_resource(&mut self, resource_id: i64, response: &StoredResponse) -> QueryResult<()>;
    /// Forgets the key so that a retry runs afresh (the request failed
    /// without leaving anything behind).
    fn release_key(&mut self, key: &IdempotencyKey) -> QueryResult<()>;
}

macro_rules! idempotency_store {
    ($conn:ty) => {
        impl IdempotencyStore for $conn {
            fn check_key(&mut self, key: &IdempotencyKey, request: &str) -> QueryResult<Claim> {
                let row =
                    idempotency_keys::table.find(key.as_str()).select(KeyRow::as_select()).first(self).optional()?;
                Ok(row.map_or(Claim::Fresh, |row| judge(row, request)))
            }

            fn claim_key(&mut self, key: &IdempotencyKey, request: &str, now: NaiveDateTime) -> QueryResult<Claim> {
                let inserted = diesel::insert_into(idempotency_keys::table)
                    .values((
                        idempotency_keys::key.eq(key.as_str()),
                        idempotency_keys::request.eq(request),
                        idempotency_keys::created_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(self)?;
                if inserted == 1 { Ok(Claim::Fresh) } else { self.check_key(key, request) }
            }

            fn attach_resource(&mut self, key: &IdempotencyKey, resource_id: i64) -> QueryResult<()> {
                diesel::update(idempotency_keys::table.find(key.as_str()))
                    .set(idempotency_keys::resource_id.eq(resource_id))
                    .execute(self)
                    .map(drop)
            }

            fn complete_key(&mut self, key: &str, response: &StoredResponse) -> QueryResult<()> {
                diesel::update(idempotency_keys::table.find(key).filter(idempotency_keys::status_code.is_null()))
                    .set((
                        idempotency_keys::status_code.eq(i32::from(response.status)),
                        idempotency_keys::response_body.eq(&response.body),
                        idempotency_keys::location.eq(&response.location),
                    ))
                    .execute(self)
                    .map(drop)
            }

            fn complete_key_of_resource(&mut self, resource_id: i64, response: &StoredResponse) -> QueryResult<()> {
                diesel::update(
                    idempotency_keys::table
                        .filter(idempotency_keys::resource_id.eq(resource_id))
                        .filter(idempotency_keys::status_code.is_null()),
                )
                .set((
                    idempotency_keys::status_code.eq(i32::from(response.status)),
                    idempotency_keys::response_body.eq(&response.body),
                    idempotency_keys::location.eq(&response.location),
                ))
                .execute(self)
                .map(drop)
            }

            fn release_key(&mut self, key: &IdempotencyKey) -> QueryResult<()> {
                diesel::delete(idempotency_keys::table.find(key.as_str())).execute(self).map(drop)
            }
        }
    };
}

idempotency_store!(diesel::PgConnection);
idempotency_store!(diesel::SqliteConnection);

/// The SQL each service's migration uses for the table (kept here so the
/// two copies can be checked against it).
pub const IDEMPOTENCY_KEYS_SQL: &str = "CREATE TABLE idempotency_keys (
    key VARCHAR(255) PRIMARY KEY NOT NULL,
    request TEXT NOT NULL,
    resource_id BIGINT,
    status_code INTEGER,
    response_body TEXT,
    location TEXT,
    created_at TIMESTAMP NOT NULL
);";

#[cfg(test)]
mod tests {
    use super::*;

    fn row(request: &str, status: Option<i32>) -> KeyRow {
        KeyRow {
            request: request.into(),
            status_code: status,
            response_body: status.map(|_| "{}".into()),
            location: None,
        }
    }

    #[test]
    fn every_service_creates_the_table_alike() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for migration in [
            "user-service/migrations/2026-11-25-000001_create_users/up.sql",
            "order-service/migrations/2026-11-25-000001_create_orders/up.sql",
        ] {
            let sql = std::fs::read_to_string(root.join(migration)).unwrap();
            assert!(
                sql.contains(IDEMPOTENCY_KEYS_SQL),
                "{migration} must create idempotency_keys as IDEMPOTENCY_KEYS_SQL says"
            );
        }
    }

    #[test]
    fn judges_repeats() {
        assert_eq!(judge(row("a", None), "b"), Claim::Mismatch);
        assert_eq!(judge(row("a", None), "a"), Claim::InProgress);
        assert!(matches!(judge(row("a", Some(201)), "a"), Claim::Replay(s) if s.status == 201));
    }

    #[test]
    fn keys_are_1_to_255_chars() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        assert_eq!(IdempotencyKey::from_request(&req).unwrap(), None);
        let req = actix_web::test::TestRequest::default().insert_header((HEADER, "k-1")).to_http_request();
        assert_eq!(IdempotencyKey::from_request(&req).unwrap().unwrap().as_str(), "k-1");
        let long = "x".repeat(256);
        let req = actix_web::test::TestRequest::default().insert_header((HEADER, long.as_str())).to_http_request();
        assert!(IdempotencyKey::from_request(&req).is_err());
    }
}
