//! Swagger UI, served from the binary (vendored assets, no validator badge).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::server::Server;
use utoipa::openapi::{ObjectBuilder, OpenApi, Required, Type};
use utoipa_swagger_ui::{Config, SwaggerUi, Url};

/// A document as served and committed: the servers, no authentication, and
/// `X-Request-Id` on every operation and every response.
pub fn publish(doc: OpenApi) -> OpenApi {
    with_request_ids(without_authentication(with_servers(doc)))
}

/// No route asks for credentials (the Ingress exposes only the public routes;
/// NetworkPolicies keep the internal ones to the services that call them):
/// an empty top-level `security` says so, instead of leaving it unsaid.
fn without_authentication(mut doc: OpenApi) -> OpenApi {
    doc.security = Some(Vec::new());
    doc
}

fn request_id_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(128))
}

/// Every operation accepts an `X-Request-Id` and every answer carries one.
fn with_request_ids(mut doc: OpenApi) -> OpenApi {
    let parameter = ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Correlates the request across services and logs: 1 to 128 visible ASCII characters; \
             one is generated when absent or invalid.",
        ))
        .schema(Some(request_id_schema().pattern(Some("^[\\x21-\\x7E]{1,128}$"))))
        .example(Some(serde_json::json!("5f0c6b2e9d8a4f17b3c2a1e0d9f8c7b6")))
        .build();
    let parameter = example_in_schema(parameter);
    let header = HeaderBuilder::new()
        .schema(request_id_schema())
        .description(Some("The request's id: the caller's if it sent a valid one, else a generated one."))
        .build();
    for item in doc.paths.paths.values_mut() {
        let operations: [&mut Option<Operation>; 5] =
            [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
        for operation in operations.into_iter().flatten() {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            for p in parameters.iter_mut().filter(|p| p.parameter_in == ParameterIn::Header) {
                *p = example_in_schema(p.clone());
            }
            parameters.push(parameter.clone());
            for response in operation.responses.responses.values_mut() {
                if let utoipa::openapi::RefOr::T(response) = response {
                    response.headers.insert("X-Request-Id".into(), header.clone());
                }
            }
        }
    }
    doc
}

/// Moves a header parameter's example into its schema's `examples`: Swagger
/// UI copies a parameter's `example` into the "Try it out" field, and a fixed
/// request id or idempotency key sent with every request would defeat both.
fn example_in_schema(parameter: Parameter) -> Parameter {
    // `Parameter::example` is not public: go through its JSON form.
    let mut json = serde_json::to_value(&parameter).expect("a parameter serializes");
    match (json.as_object_mut().and_then(|p| p.remove("example")), json.get_mut("schema")) {
        (Some(example), Some(serde_json::Value::Object(schema))) if !schema.contains_key("$ref") => {
            schema.insert("examples".into(), serde_json::json!([example]));
            serde_json::from_value(json).expect("still a parameter")
        }
        _ => parameter,
    }
}

/// Where the documents say the API lives: the host the page came from
/// first, so "Try it out" works locally and through the Ingress alike.
fn with_servers(mut doc: OpenApi) -> OpenApi {
    doc.servers = Some(vec![Server::new("/"), {
        let mut s = Server::new("http://arch.homework");
        s.description = Some("The Kubernetes Ingress host".into());
        s
    }]);
    doc
}

pub fn spec_path(slug: &str) -> String {
    format!("/docs/{slug}/openapi.json")
}

/// One service's page at `/docs/{slug}/` and its document.
pub fn service_page(slug: &str, doc: OpenApi) -> SwaggerUi {
    SwaggerUi::new(format!("/docs/{slug}/{{_:.*}}"))
        .url(spec_path(slug), doc)
        .config(Config::default().validator_url("none").try_it_out_enabled(true))
}

/// `/docs/`: one page with a selector of every service's document (served
/// by the service pages themselves).
pub fn index_page(slugs: &[&'static str]) -> SwaggerUi {
    let urls: Vec<Url<'static>> =
        slugs.iter().map(|slug| Url::new(slug, Box::leak(spec_path(slug).into_boxed_str()))).collect();
    SwaggerUi::new("/docs/{_:.*}").config(Config::new(urls).validator_url("none").try_it_out_enabled(true))
}
