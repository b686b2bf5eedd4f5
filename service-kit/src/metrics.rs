//! Prometheus, every name under one prefix (`arch_`): request counts and
//! latency histograms by route template (actix-web-prom; probes and
//! `/metrics` itself are not counted, unmatched paths share one label), the
//! process (CPU, memory, file descriptors), each database pool, each call
//! to a peer service, and the counters a service registers itself.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::db::DbPool;

/// The namespace of every metric the services expose.
pub const PREFIX: &str = "arch";

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Collectors the services define (saga outcomes, recoveries). They are
/// process-wide; every server's registry exposes them.
type MakeCollector = Box<dyn Fn() -> Box<dyn Collector> + Send>;
static EXTRA: OnceLock<std::sync::Mutex<Vec<MakeCollector>>> = OnceLock::new();

/// Adds a collector to every `/metrics` built after this call.
pub fn register(make: impl Fn() -> Box<dyn Collector> + Send + 'static) {
    EXTRA.get_or_init(Default::default).lock().expect("metrics registry lock").push(Box::new(make));
}

/// `arch_{name}` counters by `labels`, registered with every `/metrics`.
pub fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help).namespace(PREFIX), labels).expect("valid metric");
    let registered = counter.clone();
    register(move || Box::new(registered.clone()));
    counter
}

static PEER_CALLS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "peer_request_duration_seconds",
        "Calls to another service, by peer and outcome (success, refused, rejected, server_error, unreachable, unreadable)",
    )
    .namespace(PREFIX)
    .buckets(LATENCY_BUCKETS.to_vec());
    HistogramVec::new(opts, &["peer", "outcome"]).expect("valid metric")
});

static PEER_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("peer_retries_total", "Calls to a peer repeated after a transient failure").namespace(PREFIX),
        &["peer"],
    )
    .expect("valid metric")
});

/// Records one call to `peer`.
pub fn peer_call(peer: &str, outcome: &str, took: Duration) {
    PEER_CALLS.with_label_values(&[peer, outcome]).observe(took.as_secs_f64());
}

pub fn peer_retry(peer: &str) {
    PEER_RETRIES.with_label_values(&[peer]).inc();
}

/// The pools' connections, read when `/metrics` is scraped.
struct Pools {
    pools: Vec<(&'static str, DbPool)>,
    connections: IntGaugeVec,
}

impl Pools {
    fn new(pools: Vec<(&'static str, DbPool)>) -> Pools {
        let opts = Opts::new(
            "db_pool_connections",
            "Database connections of each service's pool, by state (idle, in_use, max)",
        )
        .namespace(PREFIX);
        Pools { pools, connections: IntGaugeVec::new(opts, &["service", "state"]).expect("valid metric") }
    }
}

impl Collector for Pools {
    fn desc(&self) -> Vec<&Desc> {
        self.connections.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for (service, pool) in &self.pools {
            let state = pool.state();
            let gauge = |s: &str, v: u32| self.connections.with_label_values(&[service, s]).set(i64::from(v));
            gauge("idle", state.idle_connections);
            gauge("in_use", state.connections - state.idle_connections);
            gauge("max", pool.max_size());
        }
        self.connections.collect()
    }
}

/// The middleware that counts requests and serves `GET /metrics`, for a
/// server with these databases.
pub fn middleware(pools: Vec<(&'static str, DbPool)>) -> PrometheusMetrics {
    let registry = Registry::new();
    let mut collectors: Vec<Box<dyn Collector>> = vec![
        Box::new(prometheus::process_collector::ProcessCollector::new(std::process::id() as i32, PREFIX)),
        Box::new(Pools::new(pools)),
        Box::new(PEER_CALLS.clone()),
        Box::new(PEER_RETRIES.clone()),
    ];
    if let Some(extra) = EXTRA.get() {
        collectors.extend(extra.lock().expect("metrics registry lock").iter().map(|make| make()));
    }
    for collector in collectors {
        if let Err(e) = registry.register(collector) {
            log::warn!("metric not registered: {e}");
        }
    }
    PrometheusMetricsBuilder::new(PREFIX)
        .registry(registry)
        .endpoint("/metrics")
        .mask_unmatched_patterns("UNMATCHED")
        .exclude_regex("^/docs/")
        .exclude("/metrics")
        .exclude("/health/live")
        .exclude("/health/ready")
        .buckets(LATENCY_BUCKETS)
        .build()
        .expect("metric names are valid")
}
