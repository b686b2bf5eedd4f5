//! Framework-level refusals (bad JSON, wrong content type, bad path, unknown
//! route, wrong method, oversized body) as problem+json, like every other
//! error.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::problem::{PROBLEM_JSON, Problem, ProblemType};

/// The largest request body accepted: 64 KiB.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(BODY_LIMIT).error_handler(|err, _req| json_problem(&err).into())
}

fn json_problem(err: &JsonPayloadError) -> Problem {
    match err {
        JsonPayloadError::ContentType => Problem::new(
            ProblemType::UnsupportedMediaType,
            "the request body must be sent as Content-Type: application/json",
        ),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => too_large(),
        JsonPayloadError::Payload(actix_web::error::PayloadError::Overflow) => too_large(),
        JsonPayloadError::Deserialize(e) => {
            Problem::bad_request(format!("the body is not valid for this request: {e}"))
        }
        other => Problem::bad_request(format!("the body could not be read: {other}")),
    }
}

fn too_large() -> Problem {
    Problem::new(ProblemType::PayloadTooLarge, format!("the request body must not exceed {BODY_LIMIT} bytes"))
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req: &HttpRequest| {
        let PathError::Deserialize(e) = &err else {
            return Problem::bad_request(err.to_string()).into();
        };
        Problem::new(ProblemType::InvalidParameter, format!("the path is not valid: {e}")).into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req: &HttpRequest| {
        Problem::new(ProblemType::InvalidParameter, format!("the query is not valid: {err}")).into()
    })
}

/// The answer for a path no service knows.
pub async fn unknown_route(req: HttpRequest) -> HttpResponse {
    Problem::not_found(format!("no route for {} {}", req.method(), req.path())).to_response()
}

/// Rewrites any error answer that is not problem+json yet (405 from the
/// router, 413 from the payload reader, 404 for unknown paths) into one,
/// keeping its status and headers such as `Allow`.
pub fn problem_bodies<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let already = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
        if already {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let detail = match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                format!("{} is not allowed on {}", res.request().method(), res.request().path())
            }
            StatusCode::NOT_FOUND => format!("no route for {} {}", res.request().method(), res.request().path()),
            _ => res
                .response()
                .error()
                .map(|e| e.to_string())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
        };
        let problem = Problem::from_status(status, detail);
        let (req, old) = res.into_parts();
        let mut fresh = problem.to_response();
        for (name, value) in old.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                fresh.headers_mut().insert(name.clone(), value.clone());
            }
        }
        fresh.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        let fresh: HttpResponse<BoxBody> = fresh;
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, fresh).map_into_right_body()))
    })
}
