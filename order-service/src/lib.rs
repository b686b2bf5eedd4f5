//! order-service: orders, and the saga that pays for them and tells the
//! user.

pub mod book;
pub mod error;
pub mod metrics;
pub mod peers;
pub mod routes;
pub mod saga;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::web;
use service_kit::auth::{Access, Endpoint, Gatekeeper, Named};
use service_kit::config::{self, BaseUrl, CommonSettings, ConfigError, Fallbacks, Millis};
use service_kit::db::{self, DatabaseSetupError, Migrations};
use service_kit::peer::{self, Peer};
use service_kit::server::{Service, Shutdown};
use utoipa::OpenApi;

use crate::peers::Peers;
use crate::saga::OrderSaga;

pub const NAME: &str = "order-service";

pub static MIGRATIONS: Migrations = service_kit::migrations![
    "2026-11-25-000001_create_orders",
    "2026-12-02-000001_saga_states_and_leases",
    "2026-12-02-000002_cancellations",
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub user_url: BaseUrl,
    pub billing_url: BaseUrl,
    pub notification_url: BaseUrl,
    /// Per call to a peer.
    pub http_timeout: Duration,
    /// How long one `POST /orders` works before answering 202.
    pub budget: Duration,
    pub recovery_interval: Duration,
}

impl Settings {
    /// `default_peer` stands in for unset peer URLs (the all-in-one run
    /// points them at itself); without one they are required.
    pub fn from_env(fallbacks: &Fallbacks) -> Result<Self, ConfigError> {
        Ok(Settings {
            common: CommonSettings::from_env("sqlite://data/orders.db", fallbacks)?,
            user_url: fallbacks.peer("USER_SERVICE_URL")?,
            billing_url: fallbacks.peer("BILLING_SERVICE_URL")?,
            notification_url: fallbacks.peer("NOTIFICATION_SERVICE_URL")?,
            http_timeout: config::var_or("HTTP_TIMEOUT_MS", Millis(Duration::from_secs(2)))?.0,
            budget: config::var_or("ORDER_BUDGET_MS", Millis(Duration::from_secs(5)))?.0,
            recovery_interval: config::var_or("RECOVERY_INTERVAL_MS", Millis(Duration::from_secs(5)))?.0,
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Orders. Placing an order runs the order saga: the price is withdrawn through billing-service \
            (reference `order-{id}`, so an order is never charged twice), the order becomes `paid` or `rejected`, \
            and notification-service stores a happy or a sad letter for the user. Cancelling an order is the saga's \
            compensation: its payment is settled for good (refunded, or voided if it was never taken), the order \
            becomes `cancelled` and the user gets a letter saying what came back. Prices are integer minor units (kopecks).",
        license(name = "MIT", identifier = "MIT"),
        version = "1.0.0"
    ),
    paths(routes::create_order, routes::get_order, routes::list_orders, routes::cancel_order),
    components(schemas(service_kit::Problem)),
    tags((name = "orders", description = "Placing and reading orders"))
)]
pub struct ApiDoc;

/// Every route with who may call it.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::POST, "/orders", Access::User, routes::create_order),
        Endpoint::new(Method::GET, "/orders", Access::OwnUser(Named::Query("user_id")), routes::list_orders),
        Endpoint::new(Method::GET, "/orders/{id}", Access::User, routes::get_order),
        Endpoint::new(Method::POST, "/orders/{id}/cancel", Access::User, routes::cancel_order),
    ]
}

pub fn service(settings: &Settings, client: reqwest::Client) -> Result<Service, DatabaseSetupError> {
    let pool = db::connect(&settings.common.database_url, settings.common.pool_size, &MIGRATIONS)?;
    metrics::register();
    let credential = &settings.common.credential;
    let saga = OrderSaga {
        pool: pool.clone(),
        peers: Peers {
            users: Peer::new("user-service", settings.user_url.clone(), client.clone())
                .with_credential(credential.clone()),
            billing: Peer::new("billing-service", settings.billing_url.clone(), client.clone())
                .with_credential(credential.clone()),
            notifications: Peer::new("notification-service", settings.notification_url.clone(), client.clone())
                .with_credential(credential.clone()),
        },
        budget: settings.budget,
        // Past the request's budget, with room for its last writes.
        lease: settings.budget + Duration::from_secs(5),
        recovery_interval: settings.recovery_interval,
        answer_for: routes::answer_for,
    };
    let (recovery, every) = (saga.clone(), settings.recovery_interval);
    let saga = web::Data::new(saga);
    Ok(Service {
        name: NAME,
        docs_slug: "orders",
        openapi: ApiDoc::openapi(),
        database: pool,
        state: Arc::new(move |cfg| {
            cfg.app_data(saga.clone());
        }),
        endpoints: endpoints(),
        gate: Arc::new(Gatekeeper::with_published_keys(settings.user_url.clone(), client, credential.clone())),
        tasks: vec![Box::new(move |shutdown| Box::pin(recovery_loop(recovery, every, shutdown)))],
    })
}

/// At start-up and then every `every`: finish what requests left unfinished.
/// Once the process begins to stop, no new round starts (a round under way
/// finishes; the server waits for it within its shutdown bound).
async fn recovery_loop(saga: OrderSaga, every: Duration, shutdown: Shutdown) {
    while !shutdown.is_begun() {
        let id = format!("recovery-{}", service_kit::request_id::generate());
        match service_kit::request_id::scope(id, saga.recover(&shutdown)).await {
            Ok(0) => {}
            Ok(n) => log::info!("recovery finished {n} order(s)"),
            Err(e) => log::warn!("order recovery failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.begun() => {}
        }
    }
    log::info!("order recovery stopped: the process is shutting down");
}

pub fn http_client(settings: &Settings) -> reqwest::Client {
    peer::client(settings.http_timeout)
}
