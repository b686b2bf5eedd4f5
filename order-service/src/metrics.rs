//! Saga counters, exposed on `/metrics` beside the request metrics.

use std::sync::LazyLock;

use prometheus::IntCounterVec;

static ORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    service_kit::metrics::counter("orders_total", "Orders placed, by the status the request left them in", &["outcome"])
});

static RECOVERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    service_kit::metrics::counter(
        "orders_recovered_total",
        "Unfinished orders the recovery loop moved on, by what it completed (decided, finished)",
        &["step"],
    )
});

/// Adds the counters to every `/metrics` this process serves.
pub fn register() {
    LazyLock::force(&ORDERS);
    LazyLock::force(&RECOVERED);
}

/// The status a request left its order in (`paid`, `rejected`, `pending`).
pub fn outcome(outcome: &str) {
    ORDERS.with_label_values(&[outcome]).inc();
}

/// `decided` or `finished`.
pub fn recovered(step: &str) {
    RECOVERED.with_label_values(&[step]).inc();
}
