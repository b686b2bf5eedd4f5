//! What creating or reading a user can come to besides the user (the
//! answers for them are in `routes`).

use service_kit::db::StorageError;
use service_kit::idempotency::KeyRefusal;

use crate::billing::OpenAccountError;
use crate::directory::Taken;
use crate::domain::FieldError;
use crate::passwords::HashError;

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
    Hash(#[from] HashError),
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
