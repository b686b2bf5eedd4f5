//! `GET /notifications` (public) and `POST /internal/notifications`.

use actix_web::HttpResponse;
use actix_web::web::{self, Json, Query};
use serde::{Deserialize, Serialize};
use service_kit::body::JsonObject;
use service_kit::ids::{UserIdQuery, UserIdQueryRefusal};
use service_kit::problem::{BodyRefusals, MalformedBody, ProblemType};
use service_kit::{Problem, time};
use utoipa::ToSchema;

use crate::Notifications;
use crate::domain::{LetterKind, NewLetter};
use crate::error::NotificationError;
use crate::letters::Letter;

impl From<&NotificationError> for Problem {
    fn from(e: &NotificationError) -> Problem {
        match e {
            NotificationError::Invalid(_) => Problem::new(ProblemType::ValidationError, e.to_string()),
            NotificationError::Storage(s) => Problem::from(s),
        }
    }
}

service_kit::problem_response!(NotificationError);

/// A stored letter.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "user_id": 1, "order_id": 1, "kind": "order_paid", "email": "ivan@example.com",
    "subject": "Order #1 is paid", "body": "Your order #1 for 400.00 is paid.", "created_at": "2026-11-25T10:00:00Z"
}))]
pub struct LetterBody {
    #[schema(minimum = 1)]
    pub id: i64,
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1)]
    pub order_id: i64,
    pub kind: LetterKind,
    pub email: String,
    pub subject: String,
    pub body: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Letter> for LetterBody {
    fn from(l: Letter) -> Self {
        LetterBody {
            id: l.id,
            user_id: l.user_id,
            order_id: l.order_id,
            kind: l.kind,
            email: l.email,
            subject: l.subject,
            body: l.body,
            created_at: time::utc(l.created_at),
        }
    }
}

/// A letter to store.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({
    "user_id": 1, "order_id": 1, "kind": "order_paid", "email": "ivan@example.com",
    "subject": "Order #1 is paid", "body": "Your order #1 for 400.00 is paid."
}))]
pub struct LetterRequest {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1)]
    pub order_id: i64,
    pub kind: LetterKind,
    /// An address with an `@`; no spaces or control characters.
    #[schema(
        min_length = 3,
        max_length = 320,
        pattern = "^[^\\s\\x00-\\x1F\\x7F-\\x9F]*@[^\\s\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub email: String,
    /// One line: no control characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*$")]
    pub subject: String,
    /// Text; of the control characters only tab, line feed and carriage return.
    #[schema(min_length = 1, max_length = 10000, pattern = "^[^\\x00-\\x08\\x0B\\x0C\\x0E-\\x1F\\x7F-\\x9F]*$")]
    pub body: String,
}

/// List a user's letters
///
/// Every letter sent to the user, newest first; `[]` when there are none.
#[utoipa::path(
    get,
    path = "/notifications",
    operation_id = "list_notifications",
    tag = "notifications",
    params(UserIdQuery),
    responses(
        (status = 200, description = "The letters, newest first", body = Vec<LetterBody>),
        UserIdQueryRefusal,
    )
)]
pub async fn list(
    service: web::Data<Notifications>,
    query: Query<UserIdQuery>,
) -> Result<Json<Vec<LetterBody>>, NotificationError> {
    let letters = service.letters_of(query.user_id.get()).await?;
    Ok(Json(letters.into_iter().map(Into::into).collect()))
}

/// Store a letter
///
/// Called by order-service. Idempotent on `(order_id, kind)`: 201 when
/// stored, 200 with the letter stored earlier.
#[utoipa::path(
    post,
    path = "/internal/notifications",
    operation_id = "send_notification",
    tag = "notifications",
    request_body = LetterRequest,
    responses(
        (status = 201, description = "Stored", body = LetterBody),
        (status = 200, description = "This order's letter of this kind was stored before", body = LetterBody),
        MalformedBody,
        (status = 422, description = "A field is out of its bounds", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn send(
    service: web::Data<Notifications>,
    body: JsonObject<LetterRequest>,
) -> Result<HttpResponse, NotificationError> {
    let r = body.into_inner();
    let letter = NewLetter::new(r.user_id, r.order_id, r.kind, r.email, r.subject, r.body)?;
    let (stored, is_new) = service.send(letter).await?;
    let mut res = if is_new { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.json(LetterBody::from(stored)))
}
