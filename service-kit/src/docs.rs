//! Swagger UI, served from the binary (vendored assets, no validator badge).

use actix_web::http::Method;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{ObjectBuilder, OpenApi, Ref, RefOr, Required, Type};

use crate::auth::{Access, Endpoint};
use crate::problem::{PROBLEM_JSON, ProblemType};
use utoipa_swagger_ui::{Config, SwaggerUi, Url};

/// A document as served and committed: the servers, who may call each
/// operation (from the service's endpoints: the one place that says it),
/// `X-Request-Id` on every operation and every response, the server errors
/// every operation can answer, the problem catalogue, and the internal
/// routes marked as such.
pub fn publish(doc: OpenApi, endpoints: &[Endpoint]) -> OpenApi {
    let doc = with_security(with_servers(doc), endpoints);
    with_problem_catalogue(internal_routes_marked(with_shared_parts(doc)))
}

/// The scheme of a user's token (from `POST /users/tokens`).
pub const USER_TOKEN: &str = "user_token";
/// The scheme of the service credential (`INTERNAL_API_TOKEN`).
pub const SERVICE_CREDENTIAL: &str = "service_credential";

fn bearer_scheme(format: Option<&str>, description: &str) -> RefOr<SecurityScheme> {
    let mut http = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description));
    if let Some(format) = format {
        http = http.bearer_format(format);
    }
    RefOr::T(SecurityScheme::Http(http.build()))
}

/// Each operation's `security` from its endpoint's access: none for the
/// open ones, a user's token, or the service credential; with the 401 (and
/// 403 where another user's id can be named) it can answer. An operation
/// without an endpoint, or an endpoint without an operation, is a bug the
/// document must not hide.
fn with_security(mut doc: OpenApi, endpoints: &[Endpoint]) -> OpenApi {
    let uses = |access: fn(&Access) -> bool| endpoints.iter().any(|e| access(&e.access));
    let (user_routes, internal_routes) =
        (uses(|a| matches!(a, Access::User | Access::OwnUser(_))), uses(|a| *a == Access::Internal));
    let components = doc.components.get_or_insert_with(Default::default);
    // Only the schemes some operation uses.
    if user_routes {
        components.security_schemes.insert(
            USER_TOKEN.into(),
            bearer_scheme(
                Some("JWT"),
                "A user's token: `POST /users/tokens` with a username and password gives `access_token`. \
             It acts for its own user only.",
            ),
        );
    }
    if internal_routes {
        components.security_schemes.insert(
            SERVICE_CREDENTIAL.into(),
            bearer_scheme(None, "The shared service credential (`INTERNAL_API_TOKEN`): for the other services only."),
        );
    }
    components.responses.insert(
        "Unauthorized".into(),
        problem_response(
            "No valid bearer token (401 unauthorized); `WWW-Authenticate: Bearer` says so, with \
             `error=\"invalid_token\"` when a token was sent",
        )
        .into(),
    );
    components.responses.insert(
        "Forbidden".into(),
        problem_response(
            "The token acts for another user than the one named (403 forbidden); nothing was read or written",
        )
        .into(),
    );
    let mut documented = Vec::new();
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, &mut item.get),
            (Method::POST, &mut item.post),
            (Method::PUT, &mut item.put),
            (Method::DELETE, &mut item.delete),
            (Method::PATCH, &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let endpoint = endpoints
                .iter()
                .find(|e| e.method == method && e.path == path)
                .unwrap_or_else(|| panic!("{method} {path} is documented but has no endpoint"));
            documented.push((method, path.clone()));
            let scheme = match endpoint.access {
                Access::Open => {
                    operation.security = Some(Vec::new());
                    continue;
                }
                Access::User | Access::OwnUser(_) => USER_TOKEN,
                Access::Internal => SERVICE_CREDENTIAL,
            };
            operation.security = Some(vec![SecurityRequirement::new::<_, _, &str>(scheme, [])]);
            let responses = &mut operation.responses.responses;
            responses.entry("401".into()).or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unauthorized")));
            if matches!(endpoint.access, Access::OwnUser(_)) {
                responses.entry("403".into()).or_insert_with(|| RefOr::Ref(Ref::from_response_name("Forbidden")));
            }
        }
    }
    for endpoint in endpoints {
        assert!(
            documented.iter().any(|(m, p)| *m == endpoint.method && p == endpoint.path),
            "{endpoint:?} has no operation in the document"
        );
    }
    doc
}

const REQUEST_ID: &str = "XRequestId";

fn request_id_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(128))
}

fn problem_response(description: &str) -> Response {
    let mut response = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build();
    response.headers.insert("X-Request-Id".into(), request_id_header());
    response
}

fn request_id_header() -> RefOr<Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{REQUEST_ID}")))
}

/// The parts every operation shares, defined once in `components` and
/// referenced: the `X-Request-Id` parameter and response header, and the
/// 500 and 503 answers any operation can give.
fn with_shared_parts(mut doc: OpenApi) -> OpenApi {
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
    let header = HeaderBuilder::new()
        .schema(Some(request_id_schema()))
        .description(Some("The request's id: the caller's if it sent a valid one, else a generated one."))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.parameters.insert(REQUEST_ID.into(), example_in_schema(parameter).into());
    components.headers.insert(REQUEST_ID.into(), header.into());
    components.responses.insert(
        "InternalError".into(),
        problem_response("The service failed (500 internal-error); nothing was half-written").into(),
    );
    components.responses.insert(
        "Unavailable".into(),
        problem_response(
            "A database or a peer service cannot be reached right now (503 service-unavailable); retry later",
        )
        .into(),
    );
    for operation in operations(&mut doc) {
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        for p in parameters.iter_mut() {
            if let RefOr::T(parameter) = p
                && parameter.parameter_in == ParameterIn::Header
            {
                *p = RefOr::T(example_in_schema(parameter.clone()));
            }
        }
        parameters.push(RefOr::Ref(Ref::new(format!("#/components/parameters/{REQUEST_ID}"))));
        for response in operation.responses.responses.values_mut() {
            if let RefOr::T(response) = response {
                response.headers.insert("X-Request-Id".into(), request_id_header());
            }
        }
        let responses = &mut operation.responses.responses;
        responses.entry("500".into()).or_insert_with(|| RefOr::Ref(Ref::from_response_name("InternalError")));
        responses.entry("503".into()).or_insert_with(|| RefOr::Ref(Ref::from_response_name("Unavailable")));
    }
    doc
}

/// Every operation of the document, with its path.
fn operations(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten()
    })
}

/// Routes under `/internal/` are for the other services only: marked
/// `x-internal: true` and offered only at the service's own address, never
/// at the public host.
fn internal_routes_marked(mut doc: OpenApi) -> OpenApi {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/internal/") {
            continue;
        }
        for operation in
            [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch].into_iter().flatten()
        {
            let mut server = Server::new("/");
            server.description =
                Some("The service's own address inside the cluster: the Ingress never routes /internal/".into());
            operation.servers = Some(vec![server]);
            let extensions = operation.extensions.get_or_insert_with(Default::default);
            extensions.merge(ExtensionsBuilder::new().add("x-internal", true).build());
        }
    }
    doc
}

/// The document's description ends with the catalogue of problem types.
fn with_problem_catalogue(mut doc: OpenApi) -> OpenApi {
    let description = doc.info.description.take().unwrap_or_default();
    doc.info.description = Some(format!(
        "{description}\n\n## Problem types\n\nEvery error is `application/problem+json` (RFC 9457) with \
         `type`, `title`, `status`, `detail` and the request's `request_id`. The types all services \
         answer with:\n\n{}",
        ProblemType::catalogue_markdown()
    ));
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
        .config(Config::default().validator_url("none").try_it_out_enabled(true).persist_authorization(true))
}

/// `/docs/`: one page with a selector of every service's document (served
/// by the service pages themselves).
pub fn index_page(slugs: &[&'static str]) -> SwaggerUi {
    let urls: Vec<Url<'static>> =
        slugs.iter().map(|slug| Url::new(slug, Box::leak(spec_path(slug).into_boxed_str()))).collect();
    SwaggerUi::new("/docs/{_:.*}")
        .config(Config::new(urls).validator_url("none").try_it_out_enabled(true).persist_authorization(true))
}
