//! Timestamps: stored as UTC without a zone (portable across SQLite and
//! PostgreSQL), shown as RFC 3339 in UTC.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// Now, cut to microseconds: what PostgreSQL keeps, so a value read back
/// equals the value written on both backends.
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub fn utc(stored: NaiveDateTime) -> DateTime<Utc> {
    stored.and_utc()
}
