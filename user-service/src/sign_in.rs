//! Sign-in: a username and a password for a token. Failed attempts are
//! counted per username (lower-cased, known or not) in the database, so the
//! throttle holds across replicas: once 10 have failed within 15 minutes,
//! every attempt for that username is refused until the oldest of them is
//! 15 minutes old — the right password included.

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::auth::{IssuedToken, SigningKey};
use service_kit::db::{self, DbPool, StorageError};
use service_kit::{time, with_backend};

use crate::directory::Directory;
use crate::passwords;
use crate::schema::sign_in_failures;

/// The window failed attempts are counted in.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed attempts within the window after which a username is shut out.
pub const LIMIT: i64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// An unknown username and a wrong password are the same answer.
    #[error("the username or the password is wrong")]
    InvalidCredentials,
    #[error("too many failed sign-ins for this username; try again in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub trait Throttle {
    /// How many attempts for `key` failed since `since`, and when the
    /// oldest of them did.
    fn failures_since(&mut self, key: &str, since: NaiveDateTime) -> QueryResult<(i64, Option<NaiveDateTime>)>;
    /// Counts a failed attempt, and forgets those before `forget_before`.
    fn record_failure(&mut self, key: &str, now: NaiveDateTime, forget_before: NaiveDateTime) -> QueryResult<()>;
}

macro_rules! throttle {
    ($conn:ty) => {
        impl Throttle for $conn {
            fn failures_since(&mut self, key: &str, since: NaiveDateTime) -> QueryResult<(i64, Option<NaiveDateTime>)> {
                sign_in_failures::table
                    .filter(sign_in_failures::username_key.eq(key))
                    .filter(sign_in_failures::failed_at.gt(since))
                    .select((diesel::dsl::count_star(), diesel::dsl::min(sign_in_failures::failed_at)))
                    .first(self)
            }

            fn record_failure(
                &mut self,
                key: &str,
                now: NaiveDateTime,
                forget_before: NaiveDateTime,
            ) -> QueryResult<()> {
                diesel::delete(
                    sign_in_failures::table
                        .filter(sign_in_failures::username_key.eq(key))
                        .filter(sign_in_failures::failed_at.le(forget_before)),
                )
                .execute(self)?;
                diesel::insert_into(sign_in_failures::table)
                    .values((sign_in_failures::username_key.eq(key), sign_in_failures::failed_at.eq(now)))
                    .execute(self)
                    .map(drop)
            }
        }
    };
}

throttle!(diesel::PgConnection);
throttle!(diesel::SqliteConnection);

#[derive(Clone)]
pub struct SignIn {
    pub pool: DbPool,
    pub key: Arc<SigningKey>,
    pub ttl: Duration,
}

fn window_start(now: NaiveDateTime) -> NaiveDateTime {
    now - chrono::Duration::from_std(WINDOW).expect("15 minutes fit")
}

impl SignIn {
    pub async fn sign_in(&self, username: &str, password: String) -> Result<IssuedToken, SignInError> {
        // Usernames are ASCII and compared case-insensitively; a longer one,
        // or one with a control character, cannot exist (and would not fit
        // the counter's column; PostgreSQL refuses a NUL in text outright).
        let key = username.to_lowercase();
        if key.chars().count() > 64 || key.chars().any(char::is_control) {
            return Err(SignInError::InvalidCredentials);
        }
        let now = time::now();
        let lookup = key.clone();
        let (failures, oldest, credentials) = db::run(&self.pool, move |conn| {
            with_backend!(conn, c => {
                let (failures, oldest) = c.failures_since(&lookup, window_start(now))?;
                Ok::<_, StorageError>((failures, oldest, c.credentials(&lookup)?))
            })
        })
        .await?;
        if failures >= LIMIT {
            let oldest = oldest.unwrap_or(now);
            let free_at = oldest + chrono::Duration::from_std(WINDOW).expect("15 minutes fit");
            let millis = u64::try_from((free_at - now).num_milliseconds()).unwrap_or(0);
            let retry_after = millis.div_ceil(1000).max(1);
            return Err(SignInError::Throttled { retry_after });
        }
        let (user, hash) = match credentials {
            Some((user, hash)) => (Some(user), hash),
            None => (None, None),
        };
        match (user, passwords::verify(password, hash).await) {
            (Some(user), true) => Ok(self.key.issue(user, self.ttl)),
            _ => {
                let now = time::now();
                db::run(&self.pool, move |conn| {
                    with_backend!(conn, c => Ok::<_, StorageError>(c.record_failure(&key, now, window_start(now))?))
                })
                .await?;
                Err(SignInError::InvalidCredentials)
            }
        }
    }
}
