//! The HTTP server every binary runs: one or more services mounted on one
//! port, with the same middleware, error bodies, probes and metrics.

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};

use crate::db::DbPool;
use crate::health::Readiness;
use crate::{docs, http_errors, metrics, request_id};

pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A service ready to be mounted: its routes, its document, its database
/// and the background work it needs (recovery loops).
pub struct Service {
    pub name: &'static str,
    /// The segment of its Swagger UI path: `/docs/{slug}/`.
    pub docs_slug: &'static str,
    pub openapi: utoipa::openapi::OpenApi,
    pub database: DbPool,
    pub routes: Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>,
    pub tasks: Vec<Task>,
}

/// Starts serving `services` on `listener`; the returned server runs until
/// stopped or until SIGTERM/SIGINT, after which in-flight requests finish.
pub fn start(listener: TcpListener, services: Vec<Service>) -> std::io::Result<Server> {
    let readiness =
        web::Data::new(Readiness { databases: services.iter().map(|s| (s.name, s.database.clone())).collect() });
    let mounts: Vec<_> =
        services.iter().map(|s| (s.routes.clone(), s.docs_slug, docs::publish(s.openapi.clone()))).collect();
    let slugs: Vec<&'static str> = services.iter().map(|s| s.docs_slug).collect();
    let home = if slugs.len() == 1 { format!("/docs/{}/", slugs[0]) } else { "/docs/".to_owned() };
    let metrics = metrics::middleware();
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(readiness.clone())
            .app_data(http_errors::json_config())
            .app_data(http_errors::path_config())
            .app_data(http_errors::query_config())
            .configure(crate::health::routes);
        for (routes, slug, doc) in &mounts {
            let routes = routes.clone();
            app = app
                .configure(move |cfg| routes(cfg))
                .service(docs::service_page(slug, doc.clone()))
                .route(&format!("/docs/{slug}"), redirect_to(format!("/docs/{slug}/")));
        }
        app = app.route("/docs", redirect_to(home.clone())).route("/", redirect_to(home.clone()));
        if slugs.len() > 1 {
            app = app.service(docs::index_page(&slugs));
        }
        app.default_service(web::to(http_errors::unknown_route))
            .wrap(http_errors::problem_bodies())
            .wrap(metrics.clone())
            .wrap(from_fn(request_id::propagate))
    })
    .keep_alive(std::time::Duration::from_secs(75))
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    for service in services {
        for task in service.tasks {
            actix_web::rt::spawn(task);
        }
    }
    Ok(server)
}

/// A GET route that sends the browser to `target` (Swagger UI needs the
/// trailing slash).
fn redirect_to(target: String) -> actix_web::Route {
    web::get().to(move || {
        let target = target.clone();
        async move { HttpResponse::Found().insert_header(("Location", target)).finish() }
    })
}

/// Prints a start-up error as one line and exits 1.
pub fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| {
        log::error!("{e}");
        eprintln!("error: {e}");
        std::process::exit(1)
    })
}

/// Binds `addr`, naming it in the error.
pub fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("cannot listen on BIND_ADDR={addr}: {e}"))
}

/// `main` of a binary that runs one service: logging, configuration,
/// database, then serve until SIGTERM. `build` gets the parsed settings.
pub async fn run_alone<S>(
    settings: Result<S, crate::config::ConfigError>,
    bind_addr: impl FnOnce(&S) -> std::net::SocketAddr,
    build: impl FnOnce(&S) -> Result<Service, crate::db::DatabaseSetupError>,
) -> std::io::Result<()> {
    let settings = or_exit(settings);
    let addr = bind_addr(&settings);
    let listener = or_exit(bind(addr));
    let service = or_exit(build(&settings));
    log::info!("{} listening on {addr}", service.name);
    start(listener, vec![service])?.await
}
