//! Ids in paths and queries: positive signed 64-bit integers.

use serde::{Deserialize, Serialize};

use crate::Problem;

/// A resource id: 1 ..= 2^63−1. Anything else in a path or a query is a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Id(i64);

impl Id {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Id {
    type Error = String;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value >= 1 { Ok(Id(value)) } else { Err(format!("an id must be between 1 and {}, got {value}", i64::MAX)) }
    }
}

impl From<Id> for i64 {
    fn from(id: Id) -> i64 {
        id.0
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What an operation with an [`Id`] in its path answers when it is not one,
/// for its `responses(...)`.
#[derive(utoipa::IntoResponses)]
pub enum IdRefusal {
    #[response(
        status = 400,
        description = "The id is not a positive 64-bit integer",
        content_type = "application/problem+json"
    )]
    NotAnId(Problem),
}

/// The `user_id` query of the list routes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserIdQuery {
    /// Whose items to list.
    #[param(value_type = i64, minimum = 1, example = 1)]
    pub user_id: Id,
}

/// What an operation taking a [`UserIdQuery`] answers without one, for its
/// `responses(...)`.
#[derive(utoipa::IntoResponses)]
pub enum UserIdQueryRefusal {
    #[response(
        status = 400,
        description = "`user_id` is missing or not a positive 64-bit integer",
        content_type = "application/problem+json"
    )]
    NoUserId(Problem),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positive_ids_only() {
        assert!(Id::try_from(1).is_ok());
        assert!(Id::try_from(i64::MAX).is_ok());
        assert!(Id::try_from(0).is_err());
        assert!(Id::try_from(-5).is_err());
    }
}
