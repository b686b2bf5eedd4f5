//! One log format for every service: one line per record, `key=value`,
//! with the service and the request it belongs to:
//!
//! ```text
//! ts=2026-12-02T07:44:51.123Z level=INFO service=order-service request_id=5f0c… target=order_service::saga msg="order 7 is paid"
//! ```
//!
//! env_logger does the filtering (`RUST_LOG`, default `info`).

use std::io::Write;

/// Installs the format. `process` names the records of code that belongs
/// to no one service (the server, the shared crate); a record from a
/// service's own crate names that service, which tells the four apart in
/// the all-in-one process.
pub fn init(process: &'static str) {
    let env = env_logger::Env::default().default_filter_or("info,actix_web_prom=error");
    let _ = env_logger::Builder::from_env(env)
        .format(move |buf, record| {
            let ts = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            writeln!(buf, "{}", line(&ts.to_string(), record, process))
        })
        .try_init();
}

fn line(ts: &str, record: &log::Record<'_>, process: &str) -> String {
    let target = record.target();
    let request = crate::request_id::current().unwrap_or_else(|| "-".into());
    format!(
        "ts={ts} level={} service={} request_id={request} target={target} msg=\"{}\"",
        record.level(),
        service_of(target, process),
        escape(&record.args().to_string())
    )
}

/// `order_service::saga` → `order-service`; anything else → the process.
fn service_of(target: &str, process: &str) -> String {
    let krate = target.split("::").next().unwrap_or(target);
    if krate.ends_with("_service") { krate.replace('_', "-") } else { process.to_owned() }
}

/// Quotes and line breaks escaped, so one record stays one line.
fn escape(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for c in msg.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_line(target: &str, msg: &str, process: &str) -> String {
        line(
            "T",
            &log::Record::builder().args(format_args!("{msg}")).level(log::Level::Warn).target(target).build(),
            process,
        )
    }

    #[test]
    fn one_line_of_key_values_naming_the_service() {
        assert_eq!(
            record_line("order_service::saga", "order 7 \"is\"\npaid", "order-system"),
            "ts=T level=WARN service=order-service request_id=- target=order_service::saga msg=\"order 7 \\\"is\\\"\\npaid\""
        );
        assert!(record_line("service_kit::server", "x", "billing-service").contains(" service=billing-service "));
        assert!(record_line("actix_server::builder", "x", "order-system").contains(" service=order-system "));
    }

    #[test]
    fn records_written_for_a_request_carry_its_id() {
        let line = crate::request_id::on_blocking_thread(Some("req-9".into()), || record_line("x", "y", "p"));
        assert!(line.contains(" request_id=req-9 "), "{line}");
    }
}
