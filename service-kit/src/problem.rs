//! RFC 9457 problem details: the one error body every service answers with.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_BASE: &str = "https://arch.homework/problems/";

/// An error answer (`application/problem+json`, RFC 9457).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({
    "type": "https://arch.homework/problems/validation-error",
    "title": "Invalid value",
    "status": 422,
    "detail": "price must be between 1 and 1000000000000 minor units, got 0"
}))]
pub struct Problem {
    /// A URI naming the kind of problem; its last segment is a stable slug.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code of this answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    pub detail: String,
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
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: format!("{TYPE_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// A problem whose slug and title follow from the status alone.
    pub fn from_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        let slug = title.to_ascii_lowercase().replace(' ', "-");
        Problem::new(status, &slug, title, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", detail)
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation-error", "Invalid value", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "service-unavailable", "Service unavailable", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "Internal error", detail)
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The last segment of `type`, e.g. `insufficient-funds`.
    pub fn slug(&self) -> &str {
        self.problem_type.rsplit('/').next().unwrap_or_default()
    }

    pub fn to_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(PROBLEM_JSON)
            .body(serde_json::to_string(self).expect("a problem always serializes"))
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

/// Answers an error type that converts into a [`Problem`] (`From<&E>`)
/// with that problem: one mapping from a service's errors to responses.
#[macro_export]
macro_rules! problem_response {
    ($error:ty) => {
        impl actix_web::ResponseError for $error {
            fn status_code(&self) -> actix_web::http::StatusCode {
                $crate::Problem::from(self).status_code()
            }

            fn error_response(&self) -> actix_web::HttpResponse {
                $crate::Problem::from(self).to_response()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_based_problems_get_a_slug_from_the_reason() {
        let p = Problem::from_status(StatusCode::METHOD_NOT_ALLOWED, "no");
        assert_eq!(p.problem_type, "https://arch.homework/problems/method-not-allowed");
        assert_eq!(p.slug(), "method-not-allowed");
        assert_eq!(p.status, 405);
    }

    #[test]
    fn serializes_type_field_name() {
        let json = serde_json::to_value(Problem::bad_request("x")).unwrap();
        assert_eq!(json["type"], "https://arch.homework/problems/bad-request");
        assert_eq!(json["detail"], "x");
    }
}
