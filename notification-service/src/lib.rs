//! notification-service: stores the letters order-service sends.

pub mod domain;
pub mod error;
pub mod letters;
pub mod routes;
pub mod schema;

use std::sync::Arc;

use actix_web::http::Method;
use actix_web::web;
use service_kit::auth::{Access, Endpoint, Gatekeeper, Named};
use service_kit::config::{BaseUrl, CommonSettings, ConfigError, Fallbacks};
use service_kit::db::{self, DatabaseSetupError, DbPool, Migrations};
use service_kit::server::Service;
use service_kit::{time, with_backend};
use utoipa::OpenApi;

use crate::domain::NewLetter;
use crate::error::NotificationError;
use crate::letters::{Letter, Mailbox};

pub const NAME: &str = "notification-service";

pub static MIGRATIONS: Migrations =
    service_kit::migrations!["2026-11-25-000001_create_notifications", "2026-12-02-000001_cancelled_letters"];

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    /// `USER_SERVICE_URL`: where the keys that check tokens are published.
    pub user_url: BaseUrl,
}

impl Settings {
    pub fn from_env(fallbacks: &Fallbacks) -> Result<Self, ConfigError> {
        Ok(Settings {
            common: CommonSettings::from_env("sqlite://data/notifications.db", fallbacks)?,
            user_url: fallbacks.peer("USER_SERVICE_URL")?,
        })
    }
}

/// The service's state: its database.
#[derive(Clone)]
pub struct Notifications {
    pool: DbPool,
}

impl Notifications {
    /// Stores the letter once per `(order_id, kind)`; returns the stored
    /// letter and whether it is new.
    pub async fn send(&self, letter: NewLetter) -> Result<(Letter, bool), NotificationError> {
        let (stored, is_new) = db::run(
            &self.pool,
            move |conn| with_backend!(conn, c => Ok::<_, NotificationError>(c.deliver(&letter, time::now())?)),
        )
        .await?;
        if is_new {
            log::info!("stored letter {} ({}) for order {}", stored.id, stored.kind, stored.order_id);
        }
        Ok((stored, is_new))
    }

    /// Newest first.
    pub async fn letters_of(&self, user_id: i64) -> Result<Vec<Letter>, NotificationError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok(c.letters_of(user_id)?))).await
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "notification-service",
        description = "Letters to users about their orders. Nothing is really sent: letters are stored and listed. \
            A letter is stored once per `(order_id, kind)`, however often order-service posts it.",
        license(name = "MIT", identifier = "MIT"),
        version = "1.0.0"
    ),
    paths(routes::list, routes::send),
    components(schemas(service_kit::Problem)),
    tags((name = "notifications", description = "Letters sent to users. \
        `POST /internal/notifications` is for order-service only; the Ingress does not expose it."))
)]
pub struct ApiDoc;

/// Every route with who may call it.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(Method::GET, "/notifications", Access::OwnUser(Named::Query("user_id")), routes::list),
        Endpoint::new(Method::POST, "/internal/notifications", Access::Internal, routes::send),
    ]
}

/// Connects the database (applying migrations) and describes the service
/// for the server; `client` fetches the keys that check tokens.
pub fn service(settings: &Settings, client: reqwest::Client) -> Result<Service, DatabaseSetupError> {
    let pool = db::connect(&settings.common.database_url, settings.common.pool_size, &MIGRATIONS)?;
    let state = web::Data::new(Notifications { pool: pool.clone() });
    Ok(Service {
        name: NAME,
        docs_slug: "notifications",
        openapi: ApiDoc::openapi(),
        database: pool,
        state: Arc::new(move |cfg| {
            cfg.app_data(state.clone());
        }),
        endpoints: endpoints(),
        gate: Arc::new(Gatekeeper::with_published_keys(
            settings.user_url.clone(),
            client,
            settings.common.credential.clone(),
        )),
        tasks: Vec::new(),
    })
}
