//! user-service: users, each with a billing account from the moment it is
//! visible.

pub mod billing;
pub mod directory;
pub mod domain;
pub mod error;
pub mod passwords;
pub mod registration;
pub mod routes;
pub mod schema;
pub mod sign_in;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::web;
use service_kit::auth::{Access, Endpoint, Gatekeeper, JWKS_PATH, Named, SigningKey, TokenKeys};
use service_kit::config::{self, BaseUrl, CommonSettings, ConfigError, Fallbacks, Millis};
use service_kit::db::{self, DatabaseSetupError, Migrations};
use service_kit::peer::{self, Peer, RetryPolicy};
use service_kit::server::{Service, Shutdown};
use utoipa::OpenApi;

use crate::billing::BillingClient;
use crate::registration::Users;
use crate::sign_in::SignIn;

pub const NAME: &str = "user-service";

pub static MIGRATIONS: Migrations =
    service_kit::migrations!["2026-11-25-000001_create_users", "2026-12-02-000001_passwords_and_sign_in_failures"];

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub billing_url: BaseUrl,
    /// `AUTH_SIGNING_KEY_FILE`: the Ed25519 key tokens are signed with.
    pub signing_key: Arc<SigningKey>,
    /// `TOKEN_TTL_SECONDS`: how long a token is valid.
    pub token_ttl: Duration,
    /// Per call to billing-service.
    pub http_timeout: Duration,
    /// All attempts to open the account within one request.
    pub budget: Duration,
    pub recovery_interval: Duration,
}

/// Seconds, at least 1.
#[derive(Debug, Clone, Copy)]
struct Seconds(Duration);

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u64>() {
            Ok(secs) if secs > 0 => Ok(Seconds(Duration::from_secs(secs))),
            _ => Err("expected a positive number of seconds".into()),
        }
    }
}

impl Settings {
    /// From the environment; `fallbacks` stand in for what the all-in-one
    /// run supplies itself.
    pub fn from_env(fallbacks: &Fallbacks) -> Result<Self, ConfigError> {
        let signing_key = match (config::signing_key_file("AUTH_SIGNING_KEY_FILE")?, &fallbacks.signing_key) {
            (Some(key), _) => key,
            (None, Some(key)) => key.clone(),
            (None, None) => return Err(ConfigError::missing("AUTH_SIGNING_KEY_FILE")),
        };
        Ok(Settings {
            common: CommonSettings::from_env("sqlite://data/users.db", fallbacks)?,
            billing_url: fallbacks.peer("BILLING_SERVICE_URL")?,
            signing_key,
            token_ttl: config::var_or("TOKEN_TTL_SECONDS", Seconds(Duration::from_secs(3600)))?.0,
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
        description = "Users of the shop, and their sign-in. Creating a user also opens the user's billing account: \
            a 201 means the account exists; if billing cannot open it, no user is created (503). \
            `POST /users/tokens` gives a bearer token that every other service accepts for that user.",
        license(name = "MIT", identifier = "MIT"),
        version = "1.0.0"
    ),
    paths(routes::create_user, routes::sign_in, routes::jwks, routes::get_user, routes::get_user_internal),
    components(schemas(service_kit::Problem)),
    tags((name = "users", description = "Creating users, signing in, reading your user"))
)]
pub struct ApiDoc;

/// Every route with who may call it.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::POST, "/users", Access::Open, routes::create_user),
        Endpoint::new(Method::POST, "/users/tokens", Access::Open, routes::sign_in),
        Endpoint::new(Method::GET, JWKS_PATH, Access::Open, routes::jwks),
        Endpoint::new(Method::GET, "/users/{id}", Access::OwnUser(Named::Path("id")), routes::get_user),
        Endpoint::new(Method::GET, "/internal/users/{id}", Access::Internal, routes::get_user_internal),
    ]
}

/// How old a pending user must be before recovery takes it over: well past
/// any live request's budget.
const STALE_AFTER: Duration = Duration::from_secs(30);

pub fn service(settings: &Settings, client: reqwest::Client) -> Result<Service, DatabaseSetupError> {
    let pool = db::connect(&settings.common.database_url, settings.common.pool_size, &MIGRATIONS)?;
    let users = Users {
        pool: pool.clone(),
        billing: BillingClient {
            peer: Peer::new("billing-service", settings.billing_url.clone(), client)
                .with_credential(settings.common.credential.clone()),
            policy: RetryPolicy::within(settings.budget),
        },
        answer_for: routes::answer_for,
    };
    let signing =
        web::Data::new(SignIn { pool: pool.clone(), key: settings.signing_key.clone(), ttl: settings.token_ttl });
    let (recovery, every) = (users.clone(), settings.recovery_interval);
    let users = web::Data::new(users);
    Ok(Service {
        name: NAME,
        docs_slug: "users",
        openapi: ApiDoc::openapi(),
        database: pool,
        state: Arc::new(move |cfg| {
            cfg.app_data(users.clone()).app_data(signing.clone());
        }),
        endpoints: endpoints(),
        gate: Arc::new(Gatekeeper {
            tokens: TokenKeys::Own(settings.signing_key.clone()),
            credential: settings.common.credential.clone(),
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
