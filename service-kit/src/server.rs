//! The HTTP server every binary runs: one or more services mounted on one
//! port, with the same middleware, error bodies, probes and metrics, and the
//! way it stops: a drain on SIGTERM/SIGINT (see [`serve`]).

use std::future::Future;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::rt::task::JoinHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::sync::watch;

use crate::auth::{self, Endpoint, Gatekeeper};
use crate::config::{CommonSettings, ShutdownSettings};
use crate::db::DbPool;
use crate::health::Readiness;
use crate::{docs, http_errors, metrics, request_id};

pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Builds a background task; it is told through the [`Shutdown`] when the
/// process begins to stop.
pub type TaskFactory = Box<dyn FnOnce(Shutdown) -> Task>;

/// A service ready to be mounted: its endpoints (each with the access it
/// allows) and the state they share, its document, its database, how it
/// checks callers, and the background work it needs (recovery loops).
pub struct Service {
    pub name: &'static str,
    /// The segment of its Swagger UI path: `/docs/{slug}/`.
    pub docs_slug: &'static str,
    pub openapi: utoipa::openapi::OpenApi,
    pub database: DbPool,
    /// Registers the state the handlers extract (`web::Data`).
    pub state: Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>,
    pub endpoints: Vec<Endpoint>,
    pub gate: Arc<Gatekeeper>,
    pub tasks: Vec<TaskFactory>,
}

/// Whether the process has begun to stop (the drain after SIGTERM). Cheap to
/// clone; every clone sees the same moment.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::channel(false).0))
    }
}

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Shutdown").field(&self.is_begun()).finish()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Marks the drain as begun; readiness answers 503 from now on.
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    pub fn is_begun(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the drain has begun (at once if it already has).
    pub async fn begun(&self) {
        let mut seen = self.0.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = seen.wait_for(|begun| *begun).await;
    }
}

/// Starts serving `services` on `listener`, for a server that the caller
/// stops itself (tests: `ServerHandle::stop`). Signals are not handled
/// here; a binary uses [`serve`].
pub fn start(listener: TcpListener, services: Vec<Service>) -> std::io::Result<Server> {
    Ok(launch(listener, services, &Shutdown::new(), ShutdownSettings::default().timeout)?.0)
}

/// Builds the server (signals disabled: [`serve`] handles them) and spawns
/// the background tasks with `shutdown`.
fn launch(
    listener: TcpListener,
    services: Vec<Service>,
    shutdown: &Shutdown,
    in_flight_bound: Duration,
) -> std::io::Result<(Server, Vec<JoinHandle<()>>)> {
    let readiness = web::Data::new(Readiness {
        databases: services.iter().map(|s| (s.name, s.database.clone())).collect(),
        shutdown: shutdown.clone(),
    });
    let mounts: Vec<_> = services
        .iter()
        .map(|s| {
            let doc = docs::publish(s.openapi.clone(), &s.endpoints);
            (s.state.clone(), s.endpoints.clone(), s.gate.clone(), s.docs_slug, doc)
        })
        .collect();
    let slugs: Vec<&'static str> = services.iter().map(|s| s.docs_slug).collect();
    let home = if slugs.len() == 1 { format!("/docs/{}/", slugs[0]) } else { "/docs/".to_owned() };
    let metrics = metrics::middleware(services.iter().map(|s| (s.name, s.database.clone())).collect());
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(readiness.clone())
            .app_data(http_errors::json_config())
            .app_data(http_errors::path_config())
            .app_data(http_errors::query_config())
            .configure(crate::health::routes);
        for (state, endpoints, gate, slug, doc) in &mounts {
            let (state, endpoints, gate) = (state.clone(), endpoints.clone(), gate.clone());
            app = app
                .configure(move |cfg| {
                    state(cfg);
                    auth::mount(cfg, &endpoints, &gate);
                })
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
    .keep_alive(Duration::from_secs(75))
    .disable_signals()
    // Whole seconds, rounded up: `serve` enforces the exact bound itself.
    .shutdown_timeout(in_flight_bound.as_millis().div_ceil(1000) as u64)
    .listen(listener)?
    .run();
    let tasks = services
        .into_iter()
        .flat_map(|service| service.tasks)
        .map(|task| actix_web::rt::spawn(task(shutdown.clone())))
        .collect();
    Ok((server, tasks))
}

/// Serves `services` until SIGTERM or SIGINT, then stops without failing a
/// request a load balancer could still send: readiness turns 503 at once and
/// everything is still served for `settings.drain` (a second signal cuts the
/// drain short); then the listener closes, idle keep-alive connections are
/// closed, and requests in flight and the background tasks' current rounds
/// get `settings.timeout` to finish. Returns (exit 0) when all is done; if
/// the bound runs out, what is left is abandoned with a warning.
pub async fn serve(listener: TcpListener, services: Vec<Service>, settings: ShutdownSettings) -> std::io::Result<()> {
    let shutdown = Shutdown::new();
    let (server, tasks) = launch(listener, services, &shutdown, settings.timeout)?;
    let handle = server.handle();
    let mut running = actix_web::rt::spawn(server);
    let signal = tokio::select! {
        ended = &mut running => return ended.map_err(std::io::Error::other)?,
        signal = termination_signal() => signal?,
    };
    let began = Instant::now();
    shutdown.begin();
    log::info!(
        "{signal}: readiness is 503 now; serving for SHUTDOWN_DRAIN_MS={} more, then finishing in-flight work within SHUTDOWN_TIMEOUT_MS={}",
        settings.drain.as_millis(),
        settings.timeout.as_millis()
    );
    tokio::select! {
        _ = tokio::time::sleep(settings.drain) => {}
        again = termination_signal() => log::info!("{}: drain cut short", again?),
    }
    log::info!("drain over after {} ms: no longer accepting connections", began.elapsed().as_millis());
    let finishing = async {
        handle.stop(true).await;
        futures_util::future::join_all(tasks).await;
    };
    if tokio::time::timeout(settings.timeout, finishing).await.is_err() {
        log::warn!(
            "in-flight work still running {} ms after the drain (SHUTDOWN_TIMEOUT_MS): abandoned",
            settings.timeout.as_millis()
        );
        // A runtime with stuck work may not wind down by itself.
        std::process::exit(0);
    }
    running.await.map_err(std::io::Error::other)??;
    log::info!("stopped {} ms after {signal}", began.elapsed().as_millis());
    Ok(())
}

/// The next SIGTERM or SIGINT, by name.
async fn termination_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
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
/// database, then serve until SIGTERM. `common` picks the shared settings
/// out of the parsed ones; `build` gets the parsed settings.
pub async fn run_alone<S>(
    settings: Result<S, crate::config::ConfigError>,
    common: impl FnOnce(&S) -> &CommonSettings,
    build: impl FnOnce(&S) -> Result<Service, crate::db::DatabaseSetupError>,
) -> std::io::Result<()> {
    let settings = or_exit(settings);
    let CommonSettings { bind_addr: addr, shutdown, .. } = *common(&settings);
    let listener = or_exit(bind(addr));
    let service = or_exit(build(&settings));
    log::info!("{} listening on {addr}", service.name);
    serve(listener, vec![service], shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn shutdown_is_seen_by_every_clone_and_wakes_waiters() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(!clone.is_begun());
        let waiting = actix_web::rt::spawn({
            let clone = clone.clone();
            async move { clone.begun().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "nothing has begun yet");
        shutdown.begin();
        tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("woken").unwrap();
        assert!(clone.is_begun());
        // Once begun, waiting returns at once.
        tokio::time::timeout(Duration::from_millis(50), clone.begun()).await.expect("immediate");
    }
}
