//! Service-to-service routes: `/internal/billing/…`. Never routed by the
//! Ingress.

use actix_web::HttpResponse;
use actix_web::web::{self, Json, Path};
use serde::Deserialize;
use service_kit::Problem;
use service_kit::body::JsonObject;
use service_kit::ids::Id;
use service_kit::problem::{BodyRefusals, MalformedBody};
use utoipa::ToSchema;

use super::accounts::MoneyRequest;
use super::{AccountBody, NoAccount, ReceiptBody, SettlementBody, WithdrawalAnswers};
use crate::Billing;
use crate::domain::{Caller, EntryKind, Reference};
use crate::error::BillingError;

/// Whose account to open.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": 1}))]
pub struct OpenAccountRequest {
    #[schema(minimum = 1)]
    pub user_id: i64,
}

/// A withdrawal that pays an order.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"amount": 40000, "reference": "order-1"}))]
pub struct OrderPaymentRequest {
    /// Minor units (kopecks).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// `order-{order_id}`: the same order is never charged twice. 1 to 255
    /// characters, no control characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub reference: String,
}

/// Open an account
///
/// Called by user-service before it confirms a new user. Idempotent: 201
/// when created, 200 when it was already there.
#[utoipa::path(
    post,
    path = "/internal/billing/accounts",
    operation_id = "open_account",
    tag = "billing",
    request_body = OpenAccountRequest,
    responses(
        (status = 201, description = "Opened with balance 0", body = AccountBody,
            headers(("Location" = String, description = "/billing/accounts/{user_id}"))),
        (status = 200, description = "Already open", body = AccountBody,
            headers(("Location" = String, description = "/billing/accounts/{user_id}"))),
        MalformedBody,
        (status = 422, description = "The user id is not positive", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn open_account(
    billing: web::Data<Billing>,
    body: JsonObject<OpenAccountRequest>,
) -> Result<HttpResponse, BillingError> {
    let user_id = Id::try_from(body.user_id).map_err(|_| BillingError::InvalidUserId(body.user_id))?;
    let (account, created) = billing.open_account(user_id.get()).await?;
    let mut res = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res
        .insert_header(("Location", format!("/billing/accounts/{}", account.user_id)))
        .json(AccountBody::from(account)))
}

/// Pay for an order
///
/// A withdrawal with a required reference; the only route that accepts
/// `order-…` references.
#[utoipa::path(
    post,
    path = "/internal/billing/accounts/{user_id}/withdraw",
    operation_id = "pay_order",
    tag = "billing",
    params(("user_id" = i64, Path, minimum = 1, example = 1, description = "The account's user id")),
    request_body = OrderPaymentRequest,
    responses(
        WithdrawalAnswers,
        BodyRefusals,
    )
)]
pub async fn pay_order(
    billing: web::Data<Billing>,
    user_id: Path<Id>,
    body: JsonObject<OrderPaymentRequest>,
) -> Result<Json<ReceiptBody>, BillingError> {
    let body = body.into_inner();
    let request = MoneyRequest { amount: body.amount, reference: Some(body.reference) };
    let movement = request.into_movement(user_id.into_inner(), EntryKind::Withdrawal, Caller::OrderService)?;
    Ok(Json(billing.apply(movement).await?.into()))
}

/// The order payment to cancel.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"reference": "order-1"}))]
pub struct CancelPaymentRequest {
    /// `order-{order_id}`: the reference the order was (or would have been)
    /// paid under.
    #[schema(min_length = 1, max_length = 255, pattern = "^order-[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub reference: String,
}

/// Cancel an order payment
///
/// Settles the payment for good, in one transaction: what was withdrawn
/// under the reference is refunded (a `refund` entry under
/// `refund-{reference}`), or, if nothing was, the reference is voided and a
/// withdrawal under it that arrives later is declined (409
/// `payment-cancelled`). Idempotent: a repeat gives the same answer and
/// never refunds twice.
#[utoipa::path(
    post,
    path = "/internal/billing/accounts/{user_id}/cancel-payment",
    operation_id = "cancel_payment",
    tag = "billing",
    params(("user_id" = i64, Path, minimum = 1, example = 1, description = "The account's user id")),
    request_body = CancelPaymentRequest,
    responses(
        (status = 200, description = "Settled: refunded, or nothing charged", body = SettlementBody),
        (status = 400, description = "The body or the id is malformed", body = Problem, content_type = "application/problem+json"),
        NoAccount,
        (status = 422, description = "Not an order payment's reference, or the reference was used for something else", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn cancel_payment(
    billing: web::Data<Billing>,
    user_id: Path<Id>,
    body: JsonObject<CancelPaymentRequest>,
) -> Result<Json<SettlementBody>, BillingError> {
    let payment = Reference::order_payment(body.into_inner().reference)?;
    Ok(Json(billing.cancel_payment(user_id.into_inner().get(), payment).await?.into()))
}
