//! billing-service: accounts and their ledger.

pub mod domain;
pub mod error;
pub mod ledger;
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

use crate::domain::{Movement, Reference};
use crate::error::BillingError;
use crate::ledger::{Account, Entry, Ledger, Receipt, Settlement};

pub const NAME: &str = "billing-service";

pub static MIGRATIONS: Migrations =
    service_kit::migrations!["2026-11-25-000001_create_accounts", "2026-12-02-000001_refunds_and_voids"];

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    /// `USER_SERVICE_URL`: where the keys that check tokens are published.
    pub user_url: BaseUrl,
}

impl Settings {
    pub fn from_env(fallbacks: &Fallbacks) -> Result<Self, ConfigError> {
        Ok(Settings {
            common: CommonSettings::from_env("sqlite://data/billing.db", fallbacks)?,
            user_url: fallbacks.peer("USER_SERVICE_URL")?,
        })
    }
}

/// The service's state: its database.
#[derive(Clone)]
pub struct Billing {
    pool: DbPool,
}

impl Billing {
    pub async fn account(&self, user_id: i64) -> Result<Option<Account>, BillingError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok(c.account(user_id)?))).await
    }

    pub async fn open_account(&self, user_id: i64) -> Result<(Account, bool), BillingError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok(c.open_account(user_id, time::now())?))).await
    }

    /// The ledger, or `None` when there is no account.
    pub async fn entries(&self, user_id: i64) -> Result<Option<Vec<Entry>>, BillingError> {
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => match c.account(user_id)? {
                None => Ok(None),
                Some(_) => Ok(Some(c.entries(user_id)?)),
            })
        })
        .await
    }

    pub async fn cancel_payment(&self, user_id: i64, payment: Reference) -> Result<Settlement, BillingError> {
        let settlement = db::run(&self.pool, move |conn| {
            with_backend!(conn, c => match c.cancel_payment(user_id, &payment, time::now()) {
                Err(e) if e.is_reference_race() => c.cancel_payment(user_id, &payment, time::now()),
                other => other,
            })
        })
        .await?;
        log::info!("account {user_id}: an order payment settled on cancellation: {settlement:?}");
        Ok(settlement)
    }

    pub async fn apply(&self, movement: Movement) -> Result<Receipt, BillingError> {
        let receipt = db::run(&self.pool, move |conn| {
            with_backend!(conn, c => match c.apply(&movement, time::now()) {
                Err(e) if e.is_reference_race() => c.apply(&movement, time::now()),
                other => other,
            })
        })
        .await?;
        log::info!(
            "account {} moved money; balance {} (entry {})",
            receipt.user_id,
            receipt.balance,
            receipt.transaction_id
        );
        Ok(receipt)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "billing-service",
        description = "Accounts and their ledger. Money is an integer number of minor units (kopecks). \
            A balance changes only by one conditional update plus a ledger entry in one transaction, \
            so concurrent withdrawals can never overdraw. A `reference` makes a deposit or withdrawal idempotent.",
        license(name = "MIT", identifier = "MIT"),
        version = "1.0.0"
    ),
    paths(
        routes::accounts::get_account,
        routes::accounts::deposit,
        routes::accounts::withdraw,
        routes::accounts::list_transactions,
        routes::internal::open_account,
        routes::internal::pay_order,
        routes::internal::cancel_payment,
    ),
    components(schemas(service_kit::Problem)),
    tags((name = "billing", description = "Accounts, deposits, withdrawals and the ledger. \
        Routes under `/internal/` are for user-service and order-service only; the Ingress does not expose them."))
)]
pub struct ApiDoc;

/// Every route with who may call it.
pub fn endpoints() -> Vec<Endpoint> {
    use routes::{accounts, internal};
    let own = Access::OwnUser(Named::Path("user_id"));
    vec![
        Endpoint::new(Method::GET, "/billing/accounts/{user_id}", own, accounts::get_account),
        Endpoint::new(Method::POST, "/billing/accounts/{user_id}/deposit", own, accounts::deposit),
        Endpoint::new(Method::POST, "/billing/accounts/{user_id}/withdraw", own, accounts::withdraw),
        Endpoint::new(Method::GET, "/billing/accounts/{user_id}/transactions", own, accounts::list_transactions),
        Endpoint::new(Method::POST, "/internal/billing/accounts", Access::Internal, internal::open_account),
        Endpoint::new(
            Method::POST,
            "/internal/billing/accounts/{user_id}/withdraw",
            Access::Internal,
            internal::pay_order,
        ),
        Endpoint::new(
            Method::POST,
            "/internal/billing/accounts/{user_id}/cancel-payment",
            Access::Internal,
            internal::cancel_payment,
        ),
    ]
}

/// Connects the database (applying migrations) and describes the service
/// for the server; `client` fetches the keys that check tokens.
pub fn service(settings: &Settings, client: reqwest::Client) -> Result<Service, DatabaseSetupError> {
    let pool = db::connect(&settings.common.database_url, settings.common.pool_size, &MIGRATIONS)?;
    let billing = web::Data::new(Billing { pool: pool.clone() });
    Ok(Service {
        name: NAME,
        docs_slug: "billing",
        openapi: ApiDoc::openapi(),
        database: pool,
        state: Arc::new(move |cfg| {
            cfg.app_data(billing.clone());
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
