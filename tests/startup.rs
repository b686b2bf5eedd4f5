//! Start-up of the real binary: a bad setting stops it with one line naming
//! the variable, and exit code 1.

use std::process::Command;

fn start_with(vars: &[(&str, &str)]) -> (i32, String) {
    let dir = std::env::temp_dir().join(testkit::unique("order-system-startup-"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-system"));
    cmd.current_dir(&dir).env("BIND_ADDR", "127.0.0.1:0");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn error_line(stderr: &str) -> &str {
    stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line in:\n{stderr}"))
}

/// Starts the binary with one bad variable; it must exit 1 with an error
/// line naming that variable. Returns the line.
fn refused_naming(name: &str, value: &str) -> String {
    let (code, stderr) = start_with(&[(name, value)]);
    assert_eq!(code, 1, "{stderr}");
    let line = error_line(&stderr);
    assert!(line.contains(name), "{stderr}");
    line.to_owned()
}

#[test]
fn an_unknown_database_scheme_is_named() {
    let line = refused_naming("BILLING_DATABASE_URL", "mysql://root@localhost/billing");
    assert!(line.contains("unknown scheme 'mysql'"), "{line}");
}

#[test]
fn a_bad_bind_address_is_named() {
    refused_naming("BIND_ADDR", "localhost:http");
}

#[test]
fn a_bad_peer_url_is_named() {
    refused_naming("BILLING_SERVICE_URL", "billing:8080");
}

#[test]
fn a_bad_duration_is_named() {
    refused_naming("ORDER_BUDGET_MS", "0");
}

#[test]
fn an_unreachable_postgres_is_reported_not_hung() {
    // Nothing listens on port 1: the error comes within the connect patience.
    let started = std::time::Instant::now();
    let (code, stderr) = start_with(&[("USER_DATABASE_URL", "postgres://nobody@127.0.0.1:1/users")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(error_line(&stderr).contains("postgres://nobody@127.0.0.1:1/users"), "{stderr}");
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn a_bad_drain_is_named() {
    refused_naming("SHUTDOWN_DRAIN_MS", "soon");
    refused_naming("SHUTDOWN_DRAIN_MS", "-1");
}

#[test]
fn a_zero_in_flight_bound_is_named() {
    refused_naming("SHUTDOWN_TIMEOUT_MS", "0");
}
