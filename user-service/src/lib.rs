//! user-service: users, each with a billing account from the moment it is
//! visible.

pub mod billing;
pub mod directory;
pub mod domain;
pub mod error;
pub mod registration;
pub mod routes;
pub mod schema;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use service_kit::config::{self, BaseUrl, CommonSettings, ConfigError, Millis};
use service_kit::db::{self, DatabaseSetupError, Migrations, SqlMigration};
use service_kit::peer::{self, Peer, RetryPolicy};
use service_kit::server::{Service, Shutdown};
use utoipa::OpenApi;

use crate::billing::BillingClient;
use crate::registration::Users;

pub const NAME: &str = "user-service";

pub static MIGRATIONS: Migrations = Migrations(&[SqlMigration {
    name: "2026-11-25-000001_create_users",
    up: include_str!("../migrations/2026-11-25-000001_create_users/up.sql"),
    down: include_str!("../migrations/2026-11-25-000001_create_users/down.sql"),
}]);

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub billing_url: BaseUrl,
    /// Per call to billing-service.
    pub http_timeout: Duration,
    /// All attempts to open the account within one request.
    pub budget: Duration,
    pub recovery_interval: Duration,
}

impl Settings {
    /// `default_billing` stands in for an unset `BILLING_SERVICE_URL` (the
    /// all-in-one run points it at itself); without one the variable is required.
    pub fn from_env(default_billing: Option<BaseUrl>) -> Result<Self, ConfigError> {
        let billing_url = match default_billing {
            Some(url) => config::var_or("BILLING_SERVICE_URL", url)?,
            None => config::required("BILLING_SERVICE_URL")?,
        };
        Ok(Settings {
            common: CommonSettings::from_env("sqlite://data/users.db")?,
            billing_url,
            http_timeout: config::var_or("HTTP_TIMEOUT_MS", Millis(Duration::from_secs(2)))?.0,
            budget: config::var_or("REQUEST_BUDGET_MS", Millis(Duration::from_secs(5)))?.0,
            recovery_interval: config::var_or("RECOVERY_INTERVAL_MS", Millis(Duration::from_secs(10)))?.0,
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-service",
        description = "Users of the shop. Creating a user also opens the user's billing account: \
            a 201 means the account exists; if billing cannot open it, no user is created (503).",
        license(name = "MIT", identifier = "MIT"),
        version = "1.0.0"
    ),
    paths(routes::create_user, routes::get_user),
    components(schemas(service_kit::Problem)),
    tags((name = "users", description = "Creating and reading users"))
)]
pub struct ApiDoc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/users").route(web::post().to(routes::create_user)))
        .service(web::resource("/users/{id}").route(web::get().to(routes::get_user)));
}

/// How old a pending user must be before recovery takes it over: well past
/// any live request's budget.
const STALE_AFTER: Duration = Duration::from_secs(30);

pub fn service(settings: &Settings, client: reqwest::Client) -> Result<Service, DatabaseSetupError> {
    let pool = db::connect(&settings.common.database_url, settings.common.pool_size, &MIGRATIONS)?;
    let users = Users {
        pool: pool.clone(),
        billing: BillingClient {
            peer: Peer::new("billing-service", settings.billing_url.clone(), client),
            policy: RetryPolicy::within(settings.budget),
        },
    };
    let (recovery, every) = (users.clone(), settings.recovery_interval);
    let users = web::Data::new(users);
    Ok(Service {
        name: NAME,
        docs_slug: "users",
        openapi: ApiDoc::openapi(),
        database: pool,
        routes: Arc::new(move |cfg| {
            cfg.app_data(users.clone());
            routes(cfg);
        }),
        tasks: vec![Box::new(move |shutdown| Box::pin(recovery_loop(recovery, every, shutdown)))],
    })
}

/// Every `every`: finish registrations that requests left half done. Once
/// the process begins to stop, no new round starts.
async fn recovery_loop(users: Users, every: Duration, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.begun() => break,
        }
        let id = format!("recovery-{}", service_kit::request_id::generate());
        if let Err(e) = service_kit::request_id::scope(id, users.recover(STALE_AFTER)).await {
            log::warn!("user recovery failed: {e}");
        }
    }
    log::info!("user recovery stopped: the process is shutting down");
}

/// The process's one HTTP client, for a binary that runs this service alone.
pub fn http_client(settings: &Settings) -> reqwest::Client {
    peer::client(settings.http_timeout)
}
