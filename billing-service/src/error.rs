//! What billing can refuse or fail at, in its own terms (the answers for
//! them are in `routes`).

use service_kit::db::StorageError;
use service_kit::money::AmountError;

use crate::domain::ReferenceError;

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("user {0} has no account")]
    NoAccount(i64),
    #[error("balance {balance} is less than the amount {amount}")]
    InsufficientFunds { balance: i64, amount: i64 },
    #[error("the deposit would make the balance exceed {}", i64::MAX)]
    BalanceOverflow,
    #[error("this reference was already used for a different kind or amount")]
    ReferenceReused,
    #[error("this order payment was cancelled: nothing is withdrawn under its reference")]
    PaymentCancelled,
    #[error(transparent)]
    InvalidAmount(#[from] AmountError),
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("user_id must be between 1 and {max}, got {0}", max = i64::MAX)]
    InvalidUserId(i64),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

service_kit::from_query_error!(BillingError);

impl BillingError {
    /// Two requests with one new reference raced and this one lost: running
    /// it again finds the winner's entry.
    pub fn is_reference_race(&self) -> bool {
        matches!(self, BillingError::Storage(StorageError::Query(e)) if service_kit::db::is_unique_violation(e))
    }
}
