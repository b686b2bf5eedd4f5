//! Saga counters, exposed on `/metrics` beside the request metrics.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};

static ORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(Opts::new("orders_total", "Orders by the outcome the saga reached"), &["outcome"])
        .expect("valid metric")
});

static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(Opts::new("saga_retries_total", "Calls to a peer repeated after a transient failure"), &["peer"])
        .expect("valid metric")
});

static RECOVERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("orders_recovered_total", "Unfinished orders the recovery loop finished, by what it completed"),
        &["step"],
    )
    .expect("valid metric")
});

/// Adds the counters to every `/metrics` this process serves.
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        service_kit::metrics::register(|| Box::new(ORDERS.clone()));
        service_kit::metrics::register(|| Box::new(RETRIES.clone()));
        service_kit::metrics::register(|| Box::new(RECOVERED.clone()));
    });
}

/// `paid`, `rejected`, `pending` (answered 202), `unnotified`.
pub fn outcome(outcome: &str) {
    ORDERS.with_label_values(&[outcome]).inc();
}

pub fn retried(peer: &str) {
    RETRIES.with_label_values(&[peer]).inc();
}

/// `decided` or `notified`.
pub fn recovered(step: &str) {
    RECOVERED.with_label_values(&[step]).inc();
}
