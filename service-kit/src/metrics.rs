//! Prometheus: request counts and latency histograms by route template
//! (from actix-web-prom), plus the counters a service registers itself.

use std::sync::OnceLock;

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::core::Collector;
use prometheus::Registry;

/// Collectors the services define (saga outcomes, retries, recoveries). They
/// are process-wide; every server's registry exposes them.
type MakeCollector = Box<dyn Fn() -> Box<dyn Collector> + Send>;
static EXTRA: OnceLock<std::sync::Mutex<Vec<MakeCollector>>> = OnceLock::new();

/// Adds a collector to every `/metrics` built after this call.
pub fn register(make: impl Fn() -> Box<dyn Collector> + Send + 'static) {
    EXTRA.get_or_init(Default::default).lock().expect("metrics registry lock").push(Box::new(make));
}

/// The middleware that counts requests and serves `GET /metrics`.
pub fn middleware() -> PrometheusMetrics {
    let registry = Registry::new();
    if let Some(extra) = EXTRA.get() {
        for make in extra.lock().expect("metrics registry lock").iter() {
            if let Err(e) = registry.register(make()) {
                log::warn!("metric not registered: {e}");
            }
        }
    }
    PrometheusMetricsBuilder::new("arch")
        .registry(registry)
        .endpoint("/metrics")
        .mask_unmatched_patterns("UNMATCHED")
        .exclude_regex("^/docs/")
        .buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        .build()
        .expect("metric names are valid")
}
