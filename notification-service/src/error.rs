//! What notification-service can refuse or fail at (the answers for them
//! are in `routes`).

use service_kit::db::StorageError;

use crate::domain::LetterError;

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error(transparent)]
    Invalid(#[from] LetterError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for NotificationError {
    fn from(e: diesel::result::Error) -> Self {
        NotificationError::Storage(StorageError::Query(e))
    }
}
