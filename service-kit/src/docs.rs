//! Swagger UI, served from the binary (vendored assets, no validator badge).

use utoipa::openapi::server::Server;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::{Config, SwaggerUi, Url};

/// Where the documents say the API lives: the host the page came from
/// first, so "Try it out" works locally and through the Ingress alike.
pub fn with_servers(mut doc: OpenApi) -> OpenApi {
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
