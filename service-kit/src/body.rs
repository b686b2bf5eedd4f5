//! Request bodies. serde reads a struct from a JSON array as readily as
//! from an object (`["ann", "ann@example.com"]` fills the first two
//! fields), so a body is read as a JSON value first and must be an object
//! before it becomes the request's type.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::problem::Problem;

/// A request body that is a JSON object of type `T`. The framework's JSON
/// rules (content type, size limit, problem answers) apply first; anything
/// but an object is a 400.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<T> JsonObject<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for JsonObject<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(value) = value.await?;
            Ok(JsonObject(parse(value)?))
        })
    }
}

fn parse<T: DeserializeOwned>(value: Value) -> Result<T, Problem> {
    let kind = match &value {
        Value::Object(_) => return serde_json::from_value(value).map_err(not_valid),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
    };
    Err(Problem::bad_request(format!("the body must be a JSON object, got {kind}")))
}

fn not_valid(e: serde_json::Error) -> Problem {
    Problem::bad_request(format!("the body is not valid for this request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Pair {
        a: i64,
        b: String,
    }

    #[test]
    fn only_objects_become_structs() {
        assert_eq!(parse::<Pair>(json!({"a": 1, "b": "x"})).unwrap(), Pair { a: 1, b: "x".into() });
        // What serde alone would accept:
        assert!(serde_json::from_value::<Pair>(json!([1, "x"])).is_ok());
        for refused in [json!([1, "x"]), json!("x"), json!(1), json!(true), json!(null)] {
            let problem = parse::<Pair>(refused.clone()).unwrap_err();
            assert_eq!(problem.status, 400, "{refused}");
            assert!(problem.detail.contains("must be a JSON object"), "{}", problem.detail);
        }
    }

    #[test]
    fn wrong_shapes_are_bad_requests() {
        for refused in
            [json!({"a": 1.5, "b": "x"}), json!({"a": 9_223_372_036_854_775_808_u64, "b": "x"}), json!({"a": 1})]
        {
            assert_eq!(parse::<Pair>(refused.clone()).unwrap_err().status, 400, "{refused}");
        }
    }
}
