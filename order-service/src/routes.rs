//! `POST /orders`, `GET /orders/{id}`, `GET /orders?user_id=`.

use actix_web::HttpResponse;
use actix_web::web::{self, Json, Path, Query};
use serde::{Deserialize, Serialize};
use service_kit::auth::AuthenticatedUser;
use service_kit::body::JsonObject;
use service_kit::idempotency::{KeyHeader, StoredResponse};
use service_kit::ids::{Id, IdRefusal, UserIdQuery, UserIdQueryRefusal};
use service_kit::money::Amount;
use service_kit::problem::{BodyRefusals, ProblemType};
use service_kit::{Problem, time};
use utoipa::ToSchema;

use crate::book::{FailureReason, Order, OrderStatus};
use crate::error::OrderError;
use crate::saga::{Cancellation, OrderSaga, Placement};

impl From<&OrderError> for Problem {
    fn from(e: &OrderError) -> Problem {
        let detail = e.to_string();
        match e {
            OrderError::InvalidPrice(_) => Problem::new(ProblemType::ValidationError, detail),
            OrderError::UnknownUser(_) => Problem::new(ProblemType::UnknownUser, detail),
            OrderError::NotFound(_) => Problem::new(ProblemType::OrderNotFound, detail),
            OrderError::Forbidden { .. } => Problem::new(ProblemType::Forbidden, detail),
            OrderError::NotCancellable(_) => Problem::new(ProblemType::OrderNotCancellable, detail),
            OrderError::Unavailable(cause) => Problem::unavailable(format!("{detail}: {cause}")),
            OrderError::Key(refusal) => Problem::from(refusal),
            OrderError::Storage(s) => Problem::from(s),
        }
    }
}

service_kit::problem_response!(OrderError);

/// An order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "user_id": 1, "price": 40000, "status": "paid", "failure_reason": null,
    "created_at": "2026-11-25T10:00:00Z", "updated_at": "2026-11-25T10:00:00Z"
}))]
pub struct OrderBody {
    #[schema(minimum = 1)]
    pub id: i64,
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// Minor units (kopecks).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub price: i64,
    /// `pending` only while billing could not be reached (the order is
    /// finished later); `cancelling` while a cancellation is being settled.
    pub status: OrderStatus,
    /// Why a rejected order was rejected; `null` otherwise.
    #[schema(required = true)]
    pub failure_reason: Option<FailureReason>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        OrderBody {
            id: o.id,
            user_id: o.user_id,
            price: o.price,
            status: o.status,
            failure_reason: o.failure_reason,
            created_at: time::utc(o.created_at),
            updated_at: time::utc(o.updated_at),
        }
    }
}

/// The answer to `POST /orders` for this order, as an Idempotency-Key keeps
/// it: 201 once decided, 202 while the payment is still open.
pub fn answer_for(order: &Order) -> StoredResponse {
    StoredResponse {
        status: if order.is_pending() { 202 } else { 201 },
        body: serde_json::to_string(&OrderBody::from(order.clone())).expect("an order always serializes"),
        location: Some(format!("/orders/{}", order.id)),
    }
}

/// An order to place.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"user_id": 1, "price": 40000}))]
pub struct NewOrderRequest {
    /// An existing user.
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// Minor units (kopecks).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub price: i64,
}

/// Place an order
///
/// Withdraws the price from the user's account and sends the user a letter:
/// `paid` with a happy letter, or `rejected` (`insufficient_funds`) with a
/// sad one. If billing cannot be reached in time the answer is 202 with
/// status `pending`, and the order is finished later. With an
/// `Idempotency-Key`, a repeat with the same body returns the original answer.
#[utoipa::path(
    post,
    path = "/orders",
    operation_id = "create_order",
    tag = "orders",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255,
            pattern = "^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$", example = "3f1c2a9e-order-1",
            description = "Makes a retry safe: the same key and body return the original answer \
                (1 to 255 visible ASCII characters; inner spaces allowed)"),
    ),
    request_body = NewOrderRequest,
    responses(
        (status = 201, description = "Placed and decided: `paid` or `rejected`", body = OrderBody,
            headers(("Location" = String, description = "/orders/{id}"))),
        (status = 202, description = "Placed; the payment is still open (status `pending`)", body = OrderBody,
            headers(("Location" = String, description = "/orders/{id}"))),
        (status = 400, description = "The body is malformed, or the Idempotency-Key is empty, too long or not visible ASCII", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`user_id` is not the token's user; no order was stored", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is still in progress", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid price, or the key was used with another body; no order was stored", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "user-service could not be reached; no order was stored", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn create_order(
    saga: web::Data<OrderSaga>,
    caller: AuthenticatedUser,
    key: KeyHeader,
    body: JsonObject<NewOrderRequest>,
) -> Result<HttpResponse, OrderError> {
    let request = body.into_inner();
    if request.user_id != caller.0 {
        return Err(OrderError::Forbidden { user: request.user_id, token_user: caller.0 });
    }
    let keyed = key.for_user(caller.0, &request);
    let price = Amount::parse("price", request.price)?;
    if request.user_id < 1 {
        return Err(OrderError::UnknownUser(request.user_id));
    }
    Ok(match saga.place(request.user_id, price, keyed).await? {
        Placement::New(order) => answer_for(&order).to_response(),
        Placement::Replayed(answer) => answer.replay_response(),
    })
}

/// Get an order
///
/// The order with its current status: `paid` or `rejected` once decided,
/// `pending` while its payment is still open.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    operation_id = "get_order",
    tag = "orders",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = OrderBody),
        IdRefusal,
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_order(
    saga: web::Data<OrderSaga>,
    caller: AuthenticatedUser,
    id: Path<Id>,
) -> Result<Json<OrderBody>, OrderError> {
    Ok(Json(saga.find(id.into_inner().get(), caller.0).await?.into()))
}

/// List a user's orders
///
/// Newest first; `[]` for a user without orders.
#[utoipa::path(
    get,
    path = "/orders",
    operation_id = "list_orders",
    tag = "orders",
    params(UserIdQuery),
    responses(
        (status = 200, description = "The orders, newest first", body = Vec<OrderBody>),
        UserIdQueryRefusal,
    )
)]
pub async fn list_orders(
    saga: web::Data<OrderSaga>,
    query: Query<UserIdQuery>,
) -> Result<Json<Vec<OrderBody>>, OrderError> {
    let orders = saga.orders_of(query.user_id.get()).await?;
    Ok(Json(orders.into_iter().map(Into::into).collect()))
}

/// Cancel an order
///
/// Cancels your order (SPEC: "Cancelling an order"). A `paid` order's price
/// is refunded (a `refund` ledger entry under `refund-order-{id}`); a
/// `pending` one's payment is settled for good (refunded if it was taken,
/// else voided so that it never is). Then the order is `cancelled` and a
/// letter `order_cancelled` says what came back. A cancelled order answers
/// 200 again, unchanged: nothing is refunded or sent twice. While billing
/// cannot be reached the answer is 202 `cancelling`; it is finished later.
/// A request body, if any, is ignored.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    operation_id = "cancel_order",
    tag = "orders",
    params(("id" = i64, Path, minimum = 1, example = 1, description = "The order's id")),
    responses(
        (status = 200, description = "Cancelled: the money is back, or was never taken", body = OrderBody),
        (status = 202, description = "Cancelling: billing is settling it; finished later", body = OrderBody),
        IdRefusal,
        (status = 404, description = "No such order (of yours)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order was rejected: nothing to cancel, nothing changed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel_order(
    saga: web::Data<OrderSaga>,
    caller: AuthenticatedUser,
    id: Path<Id>,
) -> Result<HttpResponse, OrderError> {
    Ok(match saga.cancel(id.into_inner().get(), caller.0).await? {
        Cancellation::Done(order) => HttpResponse::Ok().json(OrderBody::from(order)),
        Cancellation::InProgress(order) => HttpResponse::Accepted().json(OrderBody::from(order)),
    })
}
