//! `GET /notifications` (public) and `POST /internal/notifications`.

use actix_web::web::{self, Json, Query};
use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use service_kit::body::JsonObject;
use service_kit::ids::UserIdQuery;
use service_kit::problem::BodyRefusals;
use service_kit::{db, time, with_backend, Problem};
use utoipa::ToSchema;

use crate::letters::{Letter, Mailbox, NewLetter};
use crate::Notifications;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum LetterKind {
    OrderPaid,
    OrderRejected,
}

impl LetterKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LetterKind::OrderPaid => "order_paid",
            LetterKind::OrderRejected => "order_rejected",
        }
    }
}

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
            kind: if l.kind == "order_paid" { LetterKind::OrderPaid } else { LetterKind::OrderRejected },
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

impl LetterRequest {
    fn into_letter(self) -> Result<NewLetter, Problem> {
        let within = |field: &str, text: &str, min: usize, max: usize| {
            let len = text.chars().count();
            if (min..=max).contains(&len) {
                Ok(())
            } else {
                Err(Problem::validation(format!("{field} must be {min} to {max} characters long, got {len}")))
            }
        };
        if self.user_id < 1 || self.order_id < 1 {
            return Err(Problem::validation("user_id and order_id must be positive"));
        }
        within("email", &self.email, 3, 320)?;
        if !self.email.contains('@') {
            return Err(Problem::validation("email must contain '@'"));
        }
        // Stored text: no control characters (PostgreSQL cannot store NUL at
        // all), except the line breaks and tabs a letter's body may have.
        if self.email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Problem::validation("email must not contain spaces or control characters"));
        }
        within("subject", &self.subject, 1, 255)?;
        if self.subject.chars().any(char::is_control) {
            return Err(Problem::validation("subject must not contain control characters"));
        }
        within("body", &self.body, 1, 10_000)?;
        if self.body.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
            return Err(Problem::validation("body must not contain control characters other than tab and line breaks"));
        }
        Ok(NewLetter {
            user_id: self.user_id,
            order_id: self.order_id,
            kind: self.kind.as_str().to_owned(),
            email: self.email,
            subject: self.subject,
            body: self.body,
            created_at: time::now(),
        })
    }
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
        (status = 400, description = "`user_id` is missing or not a positive 64-bit integer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    service: web::Data<Notifications>,
    query: Query<UserIdQuery>,
) -> Result<Json<Vec<LetterBody>>, Problem> {
    let user_id = query.user_id.get();
    let letters = db::run(&service.pool, move |conn| {
        with_backend!(conn, c => c.letters_of(user_id)).map_err(db::StorageError::from)
    })
    .await
    .map_err(|e| Problem::from(&e))?;
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
        (status = 400, description = "The body is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is out of its bounds", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn send(service: web::Data<Notifications>, body: JsonObject<LetterRequest>) -> Result<HttpResponse, Problem> {
    let letter = body.into_inner().into_letter()?;
    let (stored, is_new) = db::run(&service.pool, move |conn| {
        with_backend!(conn, c => c.deliver(&letter)).map_err(db::StorageError::from)
    })
    .await
    .map_err(|e| Problem::from(&e))?;
    if is_new {
        log::info!("stored letter {} ({}) for order {}", stored.id, stored.kind, stored.order_id);
    }
    let mut res = if is_new { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(res.json(LetterBody::from(stored)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(email: &str, subject: &str, body: &str) -> LetterRequest {
        LetterRequest {
            user_id: 1,
            order_id: 1,
            kind: LetterKind::OrderPaid,
            email: email.into(),
            subject: subject.into(),
            body: body.into(),
        }
    }

    #[test]
    fn stored_text_has_no_control_characters() {
        assert!(letter("a@b.co", "Order #1 is paid", "line 1\nline 2\tend\r\n").into_letter().is_ok());
        let refused = [
            ("a@b.co\u{0}", "s", "b"),
            ("a b@c.de", "s", "b"),
            ("a@b.co", "s\u{0}", "b"),
            ("a@b.co", "two\nlines", "b"),
            ("a@b.co", "s", "b\u{0}"),
            ("a@b.co", "s", "bell\u{7}"),
        ];
        for (email, subject, body) in refused {
            let problem = letter(email, subject, body).into_letter().unwrap_err();
            assert_eq!(problem.status, 422, "{email:?} {subject:?} {body:?}");
        }
    }
}
