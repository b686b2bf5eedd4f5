use actix_web::http::StatusCode;
use service_kit::db::StorageError;
use service_kit::idempotency::KeyRefusal;
use service_kit::Problem;

use crate::peers::PeerError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0} does not exist")]
    UnknownUser(i64),
    #[error("order {0} not found")]
    NotFound(i64),
    #[error("the order cannot be placed right now")]
    Unavailable(#[source] PeerError),
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for OrderError {
    fn from(e: diesel::result::Error) -> Self {
        OrderError::Storage(StorageError::Query(e))
    }
}

impl From<&OrderError> for Problem {
    fn from(e: &OrderError) -> Problem {
        let detail = e.to_string();
        match e {
            OrderError::Invalid(_) => Problem::validation(detail),
            OrderError::UnknownUser(_) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown-user", "Unknown user", detail)
            }
            OrderError::NotFound(_) => {
                Problem::new(StatusCode::NOT_FOUND, "order-not-found", "Order not found", detail)
            }
            OrderError::Unavailable(cause) => Problem::unavailable(format!("{detail}: {cause}")),
            OrderError::Key(refusal) => Problem::from(refusal),
            OrderError::Problem(p) => p.clone(),
            OrderError::Storage(s) => Problem::from(s),
        }
    }
}

service_kit::problem_response!(OrderError);
