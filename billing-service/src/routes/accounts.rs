//! Public routes: `/billing/accounts/{user_id}…`.

use actix_web::web::{self, Json, Path};
use serde::Deserialize;
use service_kit::Problem;
use service_kit::body::JsonObject;
use service_kit::ids::{Id, IdRefusal};
use service_kit::money::Amount;
use service_kit::problem::BodyRefusals;
use utoipa::ToSchema;

use super::{AccountBody, EntryBody, NoAccount, ReceiptBody, WithdrawalAnswers};
use crate::Billing;
use crate::domain::{Caller, EntryKind, Movement, Reference};
use crate::error::BillingError;

/// A deposit or a withdrawal.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"amount": 100000, "reference": "top-up-1"}))]
pub struct MoneyRequest {
    /// Minor units (kopecks).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// Makes the request idempotent: a repeat with the same reference, kind
    /// and amount returns the original result. 1 to 255 characters, no
    /// control characters; must not start with `order-` or `refund-`.
    #[schema(min_length = 1, max_length = 255, nullable = true, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    #[serde(default)]
    pub reference: Option<String>,
}

impl MoneyRequest {
    pub fn into_movement(self, user_id: Id, kind: EntryKind, caller: Caller) -> Result<Movement, BillingError> {
        let amount = Amount::parse("amount", self.amount)?;
        let reference = self.reference.map(|r| Reference::parse(r, caller)).transpose()?;
        Ok(Movement { user_id: user_id.get(), kind, amount, reference })
    }
}

/// Get an account
///
/// The user's balance in minor units (kopecks).
#[utoipa::path(
    get,
    path = "/billing/accounts/{user_id}",
    operation_id = "get_account",
    tag = "billing",
    params(("user_id" = i64, Path, minimum = 1, example = 1, description = "The account's user id")),
    responses(
        (status = 200, description = "The account", body = AccountBody),
        IdRefusal,
        NoAccount,
    )
)]
pub async fn get_account(billing: web::Data<Billing>, user_id: Path<Id>) -> Result<Json<AccountBody>, BillingError> {
    let user_id = user_id.into_inner().get();
    billing.account(user_id).await?.map(|a| Json(a.into())).ok_or(BillingError::NoAccount(user_id))
}

/// Deposit money
///
/// Adds `amount` minor units to the balance and records a ledger entry.
#[utoipa::path(
    post,
    path = "/billing/accounts/{user_id}/deposit",
    operation_id = "deposit",
    tag = "billing",
    params(("user_id" = i64, Path, minimum = 1, example = 1, description = "The account's user id")),
    request_body = MoneyRequest,
    responses(
        (status = 200, description = "Deposited (or the original result of this reference)", body = ReceiptBody),
        (status = 400, description = "The body or the id is malformed", body = Problem, content_type = "application/problem+json"),
        NoAccount,
        (status = 422, description = "Invalid amount or reference, reference reused, or the balance would overflow", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn deposit(
    billing: web::Data<Billing>,
    user_id: Path<Id>,
    body: JsonObject<MoneyRequest>,
) -> Result<Json<ReceiptBody>, BillingError> {
    let movement = body.into_inner().into_movement(user_id.into_inner(), EntryKind::Deposit, Caller::Public)?;
    Ok(Json(billing.apply(movement).await?.into()))
}

/// Withdraw money
///
/// Takes `amount` minor units from the balance if it is at least that much;
/// otherwise 409 `insufficient-funds` and the balance is unchanged.
#[utoipa::path(
    post,
    path = "/billing/accounts/{user_id}/withdraw",
    operation_id = "withdraw",
    tag = "billing",
    params(("user_id" = i64, Path, minimum = 1, example = 1, description = "The account's user id")),
    request_body = MoneyRequest,
    responses(
        WithdrawalAnswers,
        BodyRefusals,
    )
)]
pub async fn withdraw(
    billing: web::Data<Billing>,
    user_id: Path<Id>,
    body: JsonObject<MoneyRequest>,
) -> Result<Json<ReceiptBody>, BillingError> {
    let movement = body.into_inner().into_movement(user_id.into_inner(), EntryKind::Withdrawal, Caller::Public)?;
    Ok(Json(billing.apply(movement).await?.into()))
}

/// List the ledger
///
/// Every deposit and withdrawal of the account, newest first.
#[utoipa::path(
    get,
    path = "/billing/accounts/{user_id}/transactions",
    operation_id = "list_transactions",
    tag = "billing",
    params(("user_id" = i64, Path, minimum = 1, example = 1, description = "The account's user id")),
    responses(
        (status = 200, description = "The ledger, newest first", body = Vec<EntryBody>),
        IdRefusal,
        NoAccount,
    )
)]
pub async fn list_transactions(
    billing: web::Data<Billing>,
    user_id: Path<Id>,
) -> Result<Json<Vec<EntryBody>>, BillingError> {
    let user_id = user_id.into_inner().get();
    let entries = billing.entries(user_id).await?.ok_or(BillingError::NoAccount(user_id))?;
    Ok(Json(entries.into_iter().map(Into::into).collect()))
}
