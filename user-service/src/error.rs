use actix_web::http::StatusCode;
use service_kit::db::StorageError;
use service_kit::Problem;

use service_kit::idempotency::KeyRefusal;

use crate::billing::OpenAccountError;
use crate::directory::Taken;
use crate::domain::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("a user with this {} already exists", match .0 { Taken::Username => "username", Taken::Email => "email" })]
    Taken(Taken),
    #[error("user {0} not found")]
    NotFound(i64),
    #[error("the billing account could not be opened, so no user was created")]
    BillingUnavailable(#[source] OpenAccountError),
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    #[error(transparent)]
    Problem(#[from] Problem),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for UserError {
    fn from(e: diesel::result::Error) -> Self {
        if let Some(taken) = Taken::from_violation(&e) {
            // Lost a race with another request for the same name or e-mail.
            return UserError::Taken(taken);
        }
        UserError::Storage(StorageError::Query(e))
    }
}

impl From<&UserError> for Problem {
    fn from(e: &UserError) -> Problem {
        let detail = e.to_string();
        match e {
            UserError::Invalid(_) => Problem::validation(detail),
            UserError::Taken(Taken::Username) => {
                Problem::new(StatusCode::CONFLICT, "username-taken", "Username taken", detail)
            }
            UserError::Taken(Taken::Email) => Problem::new(StatusCode::CONFLICT, "email-taken", "E-mail taken", detail),
            UserError::NotFound(_) => Problem::new(StatusCode::NOT_FOUND, "user-not-found", "User not found", detail),
            UserError::BillingUnavailable(cause) => Problem::unavailable(format!("{detail}: {cause}")),
            UserError::Key(refusal) => Problem::from(refusal),
            UserError::Problem(p) => p.clone(),
            UserError::Storage(s) => Problem::from(s),
        }
    }
}

service_kit::problem_response!(UserError);
