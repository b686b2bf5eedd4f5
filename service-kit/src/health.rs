//! Probes: live means the process answers; ready means every database it
//! owns is reachable and the process is not stopping.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{self, DbPool};
use crate::server::Shutdown;

/// The databases behind this process, by the service that owns each, and
/// whether it has begun to stop.
#[derive(Clone, Default)]
pub struct Readiness {
    pub databases: Vec<(&'static str, DbPool)>,
    pub shutdown: Shutdown,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: &'static str,
    /// Each owned database by service name, `up` or `down` (empty for `live`).
    #[schema(value_type = Object, example = json!({"user-service": "up"}))]
    pub checks: std::collections::BTreeMap<&'static str, &'static str>,
}

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "up", checks: Default::default() })
}

pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    if readiness.shutdown.is_begun() {
        return crate::Problem::new(
            crate::problem::ProblemType::Draining,
            "draining: the process is shutting down; it still answers requests until the drain ends, \
             but should get no new ones",
        )
        .to_response();
    }
    let databases = readiness.databases.clone();
    let checks = web::block(move || {
        databases
            .iter()
            .map(|(name, pool)| (*name, if db::is_reachable(pool) { "up" } else { "down" }))
            .collect::<std::collections::BTreeMap<_, _>>()
    })
    .await
    .unwrap_or_default();
    let up = !checks.is_empty() && checks.values().all(|s| *s == "up");
    let body = Health { status: if up { "up" } else { "down" }, checks };
    if up { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live)).route("/health/ready", web::get().to(ready));
}
