//! The all-in-one run: the four services in one process on one port, each
//! with its own SQLite file, still calling each other over real HTTP
//! through that port.

pub mod secrets;

use std::path::Path;
use std::sync::Arc;

use service_kit::auth::ServiceCredential;
use service_kit::config::{self, BaseUrl, ConfigError, Fallbacks};
use service_kit::db::{DatabaseSetupError, DatabaseUrl};
use service_kit::server::Service;
use utoipa::OpenApi;

/// Each service's database: `<SERVICE>_DATABASE_URL`, by default a SQLite
/// file under `./data/`. (`DATABASE_URL` is not used here: four services
/// cannot share one database.)
/// Where the all-in-one keeps its databases and secrets.
pub const DATA_DIR: &str = "data";

fn database(var: &'static str, file: &str) -> Result<DatabaseUrl, ConfigError> {
    config::var_or(var, format!("sqlite://data/{file}").parse().expect("valid default"))
}

/// The four services' settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub users: user_service::Settings,
    pub billing: billing_service::Settings,
    pub orders: order_service::Settings,
    pub notifications: notification_service::Settings,
}

impl Settings {
    /// From the environment, with peers at `own_url` unless `*_SERVICE_URL`
    /// says otherwise, and the service credential and the signing key from
    /// `INTERNAL_API_TOKEN` and `AUTH_SIGNING_KEY_FILE`, else from (or newly
    /// into) `data_dir` (`./data/`) — so tokens survive a restart.
    pub fn from_env(own_url: BaseUrl, data_dir: &Path) -> Result<Settings, String> {
        let text = |e: ConfigError| e.to_string();
        let fallbacks = Fallbacks {
            peers: Some(own_url),
            credential: match config::optional_secret::<ServiceCredential>("INTERNAL_API_TOKEN").map_err(text)? {
                Some(_) => None,
                None => Some(secrets::credential(data_dir)?),
            },
            signing_key: match config::optional::<String>("AUTH_SIGNING_KEY_FILE").map_err(text)? {
                Some(_) => None,
                None => Some(Arc::new(secrets::signing_key(data_dir)?)),
            },
        };
        let mut users = user_service::Settings::from_env(&fallbacks).map_err(text)?;
        users.common.database_url = database("USER_DATABASE_URL", "users.db").map_err(text)?;
        let mut billing = billing_service::Settings::from_env(&fallbacks).map_err(text)?;
        billing.common.database_url = database("BILLING_DATABASE_URL", "billing.db").map_err(text)?;
        let mut orders = order_service::Settings::from_env(&fallbacks).map_err(text)?;
        orders.common.database_url = database("ORDER_DATABASE_URL", "orders.db").map_err(text)?;
        let mut notifications = notification_service::Settings::from_env(&fallbacks).map_err(text)?;
        notifications.common.database_url = database("NOTIFICATION_DATABASE_URL", "notifications.db").map_err(text)?;
        Ok(Settings { users, billing, orders, notifications })
    }
}

/// The four services, ready to be served on one port.
pub fn services(settings: &Settings) -> Result<Vec<Service>, DatabaseSetupError> {
    // One client for the whole process.
    let client = order_service::http_client(&settings.orders);
    Ok(vec![
        user_service::service(&settings.users, client.clone())?,
        billing_service::service(&settings.billing, client.clone())?,
        order_service::service(&settings.orders, client.clone())?,
        notification_service::service(&settings.notifications, client)?,
    ])
}

/// The URL this process reaches itself at: a wildcard bind address is
/// reached on loopback.
pub fn own_url(bound: std::net::SocketAddr) -> BaseUrl {
    let host = if bound.ip().is_unspecified() { "127.0.0.1".to_owned() } else { bound.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    format!("http://{host}:{}", bound.port()).parse().expect("a valid URL")
}

/// The four OpenAPI documents as served (with their `servers`), by the
/// file they are committed as under `openapi/`.
pub fn openapi_documents() -> Vec<(&'static str, utoipa::openapi::OpenApi)> {
    use service_kit::docs::publish;
    vec![
        ("user-service.yaml", publish(user_service::ApiDoc::openapi(), &user_service::endpoints())),
        ("billing-service.yaml", publish(billing_service::ApiDoc::openapi(), &billing_service::endpoints())),
        ("order-service.yaml", publish(order_service::ApiDoc::openapi(), &order_service::endpoints())),
        (
            "notification-service.yaml",
            publish(notification_service::ApiDoc::openapi(), &notification_service::endpoints()),
        ),
    ]
}

/// A document as committed: YAML, ending with a newline.
pub fn to_yaml(doc: &utoipa::openapi::OpenApi) -> String {
    let mut text = doc.to_yaml().expect("a document always serializes");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// `docs/problems.md`: the catalogue of problem types, as the documents
/// carry it.
pub fn problem_catalogue_page() -> String {
    format!(
        "# Problem types\n\nGenerated from `service_kit::problem::ProblemType` by `cargo run --bin openapi` (a test \
         fails when it drifts). Every error any service answers is `application/problem+json` (RFC 9457) with \
         `type`, `title`, `status`, `detail` and `request_id` (the request's `X-Request-Id`, which the logs \
         carry); `type` is one of these:\n\n{}",
        service_kit::problem::ProblemType::catalogue_markdown()
    )
}
