use actix_web::http::StatusCode;
use service_kit::db::StorageError;
use service_kit::Problem;

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
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<diesel::result::Error> for BillingError {
    fn from(e: diesel::result::Error) -> Self {
        BillingError::Storage(StorageError::Query(e))
    }
}

impl BillingError {
    /// Two requests with one new reference raced and this one lost: running
    /// it again finds the winner's entry.
    pub fn is_reference_race(&self) -> bool {
        matches!(self, BillingError::Storage(StorageError::Query(e)) if service_kit::db::is_unique_violation(e))
    }
}

impl From<&BillingError> for Problem {
    fn from(e: &BillingError) -> Problem {
        let detail = e.to_string();
        match e {
            BillingError::NoAccount(_) => {
                Problem::new(StatusCode::NOT_FOUND, "account-not-found", "Account not found", detail)
            }
            BillingError::InsufficientFunds { .. } => {
                Problem::new(StatusCode::CONFLICT, "insufficient-funds", "Insufficient funds", detail)
            }
            BillingError::BalanceOverflow => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "balance-overflow", "Balance overflow", detail)
            }
            BillingError::ReferenceReused => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "reference-reused", "Reference reused", detail)
            }
            BillingError::Invalid(_) => Problem::validation(detail),
            BillingError::Storage(s) => Problem::from(s),
        }
    }
}

service_kit::problem_response!(BillingError);
