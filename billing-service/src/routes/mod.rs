pub mod accounts;
pub mod internal;

use serde::Serialize;
use service_kit::Problem;
use service_kit::problem::ProblemType;
use utoipa::ToSchema;

use crate::domain::EntryKind;
use crate::error::BillingError;
use crate::ledger::{Account, Entry, Receipt, Settlement};

impl From<&BillingError> for Problem {
    fn from(e: &BillingError) -> Problem {
        let detail = e.to_string();
        let kind = match e {
            BillingError::NoAccount(_) => ProblemType::AccountNotFound,
            BillingError::InsufficientFunds { .. } => ProblemType::InsufficientFunds,
            BillingError::BalanceOverflow => ProblemType::BalanceOverflow,
            BillingError::ReferenceReused => ProblemType::ReferenceReused,
            BillingError::PaymentCancelled => ProblemType::PaymentCancelled,
            BillingError::InvalidAmount(_) | BillingError::InvalidReference(_) | BillingError::InvalidUserId(_) => {
                ProblemType::ValidationError
            }
            BillingError::Storage(s) => return Problem::from(s),
        };
        Problem::new(kind, detail)
    }
}

service_kit::problem_response!(BillingError);

/// What an operation on an account answers when the user has none.
#[derive(utoipa::IntoResponses)]
pub enum NoAccount {
    #[response(status = 404, description = "No account for this user", content_type = "application/problem+json")]
    Missing(Problem),
}

/// What a withdrawal answers, on the public route and on order-service's.
#[derive(utoipa::IntoResponses)]
pub enum WithdrawalAnswers {
    #[response(status = 200, description = "Withdrawn (or the original result of this reference)")]
    Withdrawn(ReceiptBody),
    #[response(
        status = 400,
        description = "The body or the id is malformed",
        content_type = "application/problem+json"
    )]
    Malformed(Problem),
    #[response(status = 404, description = "No account for this user", content_type = "application/problem+json")]
    NoAccount(Problem),
    #[response(
        status = 409,
        description = "Insufficient funds (or, for an order payment, the order was cancelled first); nothing was withdrawn",
        content_type = "application/problem+json"
    )]
    InsufficientFunds(Problem),
    #[response(
        status = 422,
        description = "Invalid amount or reference, or reference reused",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
}

/// A billing account.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"user_id": 1, "balance": 100000, "updated_at": "2026-11-25T10:00:00Z"}))]
pub struct AccountBody {
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// Minor units (kopecks); never below zero.
    #[schema(minimum = 0)]
    pub balance: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Account> for AccountBody {
    fn from(a: Account) -> Self {
        AccountBody { user_id: a.user_id, balance: a.balance, updated_at: service_kit::time::utc(a.updated_at) }
    }
}

/// The outcome of a deposit or withdrawal.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"user_id": 1, "balance": 100000, "transaction_id": 1}))]
pub struct ReceiptBody {
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// The balance right after this movement, in minor units.
    #[schema(minimum = 0)]
    pub balance: i64,
    /// The ledger entry's `id`.
    #[schema(minimum = 1)]
    pub transaction_id: i64,
}

impl From<Receipt> for ReceiptBody {
    fn from(r: Receipt) -> Self {
        ReceiptBody { user_id: r.user_id, balance: r.balance, transaction_id: r.transaction_id }
    }
}

/// One ledger entry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 2, "kind": "withdrawal", "amount": 40000, "balance_after": 60000,
    "reference": "order-1", "created_at": "2026-11-25T10:05:00Z"
}))]
pub struct EntryBody {
    #[schema(minimum = 1)]
    pub id: i64,
    pub kind: EntryKind,
    /// Minor units.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    #[schema(minimum = 0)]
    pub balance_after: i64,
    #[schema(required = true)]
    pub reference: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Entry> for EntryBody {
    fn from(e: Entry) -> Self {
        EntryBody {
            id: e.id,
            kind: e.kind,
            amount: e.amount,
            balance_after: e.balance_after,
            reference: e.reference,
            created_at: service_kit::time::utc(e.created_at),
        }
    }
}

/// How a cancelled order payment was settled.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettlementOutcome {
    /// What was withdrawn was given back.
    Refunded,
    /// Nothing was withdrawn, and nothing will be under this reference.
    NothingCharged,
}

/// The settlement of a cancelled order payment.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"user_id": 1, "outcome": "refunded", "refunded": 40000, "balance": 100000, "transaction_id": 3}))]
pub struct SettlementBody {
    #[schema(minimum = 1)]
    pub user_id: i64,
    pub outcome: SettlementOutcome,
    /// Minor units given back (0 when nothing was charged).
    #[schema(minimum = 0)]
    pub refunded: i64,
    /// The balance right after the refund, or now.
    #[schema(minimum = 0)]
    pub balance: i64,
    /// The refund's ledger entry; `null` when nothing was charged.
    #[schema(required = true, minimum = 1)]
    pub transaction_id: Option<i64>,
}

impl From<Settlement> for SettlementBody {
    fn from(s: Settlement) -> Self {
        match s {
            Settlement::Refunded(receipt, refunded) => SettlementBody {
                user_id: receipt.user_id,
                outcome: SettlementOutcome::Refunded,
                refunded,
                balance: receipt.balance,
                transaction_id: Some(receipt.transaction_id),
            },
            Settlement::NothingCharged { user_id, balance } => SettlementBody {
                user_id,
                outcome: SettlementOutcome::NothingCharged,
                refunded: 0,
                balance,
                transaction_id: None,
            },
        }
    }
}
