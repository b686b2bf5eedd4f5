//! What placing or reading an order can come to besides the order (the
//! answers for them are in `routes`).

use service_kit::db::StorageError;
use service_kit::idempotency::KeyRefusal;
use service_kit::money::AmountError;

use crate::peers::PeerError;

/// What placing or reading an order can come to besides the order.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    InvalidPrice(#[from] AmountError),
    #[error("user {0} does not exist")]
    UnknownUser(i64),
    #[error("order {0} not found")]
    NotFound(i64),
    #[error("order {0} was rejected: there is nothing to cancel")]
    NotCancellable(i64),
    #[error("this token acts for user {token_user}, not {user}")]
    Forbidden { user: i64, token_user: i64 },
    #[error("the order cannot be placed right now")]
    Unavailable(#[source] Box<PeerError>),
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

service_kit::from_query_error!(OrderError);
