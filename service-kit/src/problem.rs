//! RFC 9457 problem details: the one error body every service answers with,
//! and the one catalogue of problem types all four services draw from (a
//! problem cannot be made of a type that is not in it).

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";
pub const TYPE_BASE: &str = "https://arch.homework/problems/";

macro_rules! catalogue {
    ($($variant:ident => ($slug:literal, $status:literal, $title:literal, $meaning:literal),)+) => {
        /// Every kind of problem the services answer. Its slug is the last
        /// segment of the problem's `type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ProblemType {
            $($variant,)+
        }

        impl ProblemType {
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)+];

            pub fn slug(self) -> &'static str {
                match self { $(ProblemType::$variant => $slug,)+ }
            }

            /// The status a problem of this type answers with.
            pub fn status(self) -> StatusCode {
                let code = match self { $(ProblemType::$variant => $status,)+ };
                StatusCode::from_u16(code).expect("catalogue statuses are valid")
            }

            pub fn title(self) -> &'static str {
                match self { $(ProblemType::$variant => $title,)+ }
            }

            /// When a service answers it.
            pub fn meaning(self) -> &'static str {
                match self { $(ProblemType::$variant => $meaning,)+ }
            }
        }
    };
}

catalogue! {
    BadRequest => ("bad-request", 400, "Bad request",
        "The body is not JSON, not an object, or does not have the request's shape (a missing field, a wrong type, a float or a number beyond 64 bits for money), or a header such as Idempotency-Key is malformed."),
    InvalidParameter => ("invalid-parameter", 400, "Invalid parameter",
        "A path or query parameter is missing or is not a valid id (1 to 2^63-1)."),
    Unauthorized => ("unauthorized", 401, "Unauthorized",
        "No valid bearer token: none was sent, or the token is malformed, expired, not yet valid, or not signed by user-service for this audience."),
    InvalidCredentials => ("invalid-credentials", 401, "Invalid credentials",
        "Sign-in with an unknown username or a wrong password (the two are not told apart)."),
    Forbidden => ("forbidden", 403, "Forbidden",
        "The token acts for another user than the one the request names."),
    NotFound => ("not-found", 404, "Not found",
        "No route for this method and path."),
    UserNotFound => ("user-not-found", 404, "User not found", "No user with this id."),
    AccountNotFound => ("account-not-found", 404, "Account not found", "No billing account for this user."),
    OrderNotFound => ("order-not-found", 404, "Order not found", "No order with this id (for this user)."),
    MethodNotAllowed => ("method-not-allowed", 405, "Method not allowed",
        "The path exists but not with this method; `Allow` lists the methods it takes."),
    UsernameTaken => ("username-taken", 409, "Username taken",
        "Another user has this username (compared case-insensitively)."),
    EmailTaken => ("email-taken", 409, "E-mail taken",
        "Another user has this e-mail (compared case-insensitively)."),
    InsufficientFunds => ("insufficient-funds", 409, "Insufficient funds",
        "The balance is below the amount; nothing was withdrawn."),
    RequestInProgress => ("request-in-progress", 409, "Request in progress",
        "A request with this Idempotency-Key is still being processed; retry shortly."),
    OrderNotCancellable => ("order-not-cancellable", 409, "Order not cancellable",
        "The order was rejected: there is nothing to cancel."),
    PaymentCancelled => ("payment-cancelled", 409, "Payment cancelled",
        "A withdrawal under an order payment's reference after the order was cancelled: nothing was withdrawn."),
    PayloadTooLarge => ("payload-too-large", 413, "Payload too large", "The body is over 64 KiB."),
    UnsupportedMediaType => ("unsupported-media-type", 415, "Unsupported media type",
        "A body was sent without Content-Type: application/json."),
    ValidationError => ("validation-error", 422, "Invalid value",
        "A well-formed value breaks its rules (money out of 1..=10^12, a username, e-mail, password, reference or letter field out of bounds)."),
    UnknownUser => ("unknown-user", 422, "Unknown user", "An order for a user that does not exist."),
    BalanceOverflow => ("balance-overflow", 422, "Balance overflow",
        "The deposit would take the balance past 2^63-1."),
    ReferenceReused => ("reference-reused", 422, "Reference reused",
        "The reference was used before for another kind of movement or another amount."),
    IdempotencyKeyReused => ("idempotency-key-reused", 422, "Idempotency-Key reused",
        "The Idempotency-Key was used before with a different request body."),
    TooManyRequests => ("too-many-requests", 429, "Too many requests",
        "Too many failed sign-ins for this username; `Retry-After` says when to try again."),
    InternalError => ("internal-error", 500, "Internal error",
        "A fault of the service itself (for example its database failed to answer); nothing was half-written."),
    ServiceUnavailable => ("service-unavailable", 503, "Service unavailable",
        "A database or a peer service cannot be reached right now; the request may be retried (with its Idempotency-Key or reference)."),
    Draining => ("draining", 503, "Draining",
        "Readiness only: the process is stopping and should get no new requests."),
}

impl ProblemType {
    /// The type for a status the framework answered by itself.
    pub fn for_status(status: StatusCode) -> ProblemType {
        match status.as_u16() {
            401 => ProblemType::Unauthorized,
            403 => ProblemType::Forbidden,
            404 => ProblemType::NotFound,
            405 => ProblemType::MethodNotAllowed,
            413 => ProblemType::PayloadTooLarge,
            415 => ProblemType::UnsupportedMediaType,
            429 => ProblemType::TooManyRequests,
            503 => ProblemType::ServiceUnavailable,
            500..=599 => ProblemType::InternalError,
            _ => ProblemType::BadRequest,
        }
    }

    pub fn uri(self) -> String {
        format!("{TYPE_BASE}{}", self.slug())
    }

    /// The catalogue as a Markdown table (for the documents and docs/).
    pub fn catalogue_markdown() -> String {
        let mut out = String::from(
            "| `type` (after `https://arch.homework/problems/`) | status | title | when |\n|---|---|---|---|\n",
        );
        for t in ProblemType::ALL {
            out.push_str(&format!("| `{}` | {} | {} | {} |\n", t.slug(), t.status().as_u16(), t.title(), t.meaning()));
        }
        out
    }
}

/// An error answer (`application/problem+json`, RFC 9457).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({
    "type": "https://arch.homework/problems/validation-error",
    "title": "Invalid value",
    "status": 422,
    "detail": "price must be between 1 and 1000000000000 minor units, got 0",
    "request_id": "5f0c6b2e9d8a4f17b3c2a1e0d9f8c7b6"
}))]
pub struct Problem {
    /// A URI naming the kind of problem: `https://arch.homework/problems/`
    /// and a slug from the catalogue in the document's description.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code of this answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    pub detail: String,
    /// The `X-Request-Id` of the request this answers: quote it when
    /// reporting the problem; the services' logs carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The 400 of an operation whose only 400 is a body that is not JSON, not
/// an object or not of the request's shape, for its `responses(...)`.
#[derive(utoipa::IntoResponses)]
pub enum MalformedBody {
    #[response(status = 400, description = "The body is malformed", content_type = "application/problem+json")]
    Malformed(Problem),
}

/// The refusals `http_errors` answers for any JSON body before a handler
/// runs, for the `responses(...)` of every operation that takes one.
#[derive(utoipa::IntoResponses)]
pub enum BodyRefusals {
    #[response(status = 413, description = "The body is over 64 KiB", content_type = "application/problem+json")]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "The body is not application/json",
        content_type = "application/problem+json"
    )]
    NotJson(Problem),
}

impl Problem {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem::with_status(kind, kind.status(), detail)
    }

    /// A problem of `kind` answered with another status than its usual one
    /// (the framework's rarer refusals).
    pub fn with_status(kind: ProblemType, status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: kind.uri(),
            title: kind.title().to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
        }
    }

    /// A problem whose type follows from the status alone.
    pub fn from_status(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem::with_status(ProblemType::for_status(status), status, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::BadRequest, detail)
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::ValidationError, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::NotFound, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::ServiceUnavailable, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(ProblemType::InternalError, detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The last segment of `type`, e.g. `insufficient-funds`.
    pub fn slug(&self) -> &str {
        self.problem_type.rsplit('/').next().unwrap_or_default()
    }

    pub fn is(&self, kind: ProblemType) -> bool {
        self.slug() == kind.slug()
    }

    /// The answer, carrying the id of the request it answers.
    pub fn to_response(&self) -> HttpResponse {
        let mut body = self.clone();
        if body.request_id.is_none() {
            body.request_id = crate::request_id::current();
        }
        HttpResponse::build(self.status_code())
            .content_type(PROBLEM_JSON)
            .body(serde_json::to_string(&body).expect("a problem always serializes"))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl std::error::Error for Problem {}

impl actix_web::ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        Problem::status_code(self)
    }

    fn error_response(&self) -> HttpResponse {
        self.to_response()
    }
}

/// The causes of an error, outermost first, joined with `: `.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Answers an error type that converts into a [`Problem`] (`From<&E>`)
/// with that problem: one mapping from a service's errors to responses. A
/// 5xx is logged here, once, with the whole chain of causes.
#[macro_export]
macro_rules! problem_response {
    ($error:ty) => {
        impl actix_web::ResponseError for $error {
            fn status_code(&self) -> actix_web::http::StatusCode {
                $crate::Problem::from(self).status_code()
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                let problem = $crate::Problem::from(self);
                if problem.status >= 500 {
                    log::error!("{}", $crate::problem::chain(self));
                }
                problem.to_response()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_based_problems_come_from_the_catalogue() {
        let p = Problem::from_status(StatusCode::METHOD_NOT_ALLOWED, "no");
        assert_eq!(p.problem_type, "https://arch.homework/problems/method-not-allowed");
        assert_eq!(p.slug(), "method-not-allowed");
        assert_eq!(p.status, 405);
        let rare = Problem::from_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "big");
        assert_eq!((rare.slug(), rare.status), ("bad-request", 431));
    }

    #[test]
    fn serializes_type_field_name_and_the_request_id_only_when_known() {
        let json = serde_json::to_value(Problem::bad_request("x")).unwrap();
        assert_eq!(json["type"], "https://arch.homework/problems/bad-request");
        assert_eq!(json["detail"], "x");
        assert!(json.get("request_id").is_none());
    }

    #[test]
    fn the_catalogue_has_one_entry_per_slug() {
        let mut slugs: Vec<_> = ProblemType::ALL.iter().map(|t| t.slug()).collect();
        slugs.sort();
        let before = slugs.len();
        slugs.dedup();
        assert_eq!(slugs.len(), before, "duplicate slugs");
        assert!(ProblemType::catalogue_markdown().contains("| `insufficient-funds` | 409 |"));
    }

    #[test]
    fn chains_name_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&e), "outer: inner");
    }
}
