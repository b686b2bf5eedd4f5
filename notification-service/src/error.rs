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

service_kit::from_query_error!(NotificationError);
