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

#[test]
fn a_short_service_credential_is_named_but_never_shown() {
    let line = refused_naming("INTERNAL_API_TOKEN", "s3cret-but-short");
    assert!(!line.contains("s3cret-but-short"), "the value is not printed: {line}");
    assert!(line.contains("at least 32"), "{line}");
}

#[test]
fn a_signing_key_that_is_not_a_key_is_named() {
    let file = std::env::temp_dir().join(testkit::unique("not-a-key-")).with_extension("pem");
    std::fs::write(&file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let line = refused_naming("AUTH_SIGNING_KEY_FILE", file.to_str().unwrap());
    assert!(line.contains("Ed25519"), "{line}");
    let missing = refused_naming("AUTH_SIGNING_KEY_FILE", "/nonexistent/signing-key.pem");
    assert!(missing.contains("cannot read it"), "{missing}");
    let _ = std::fs::remove_file(file);
}

/// The binary of one service has no fallbacks: its secrets are required.
#[test]
fn a_service_binary_needs_its_secrets() {
    let run = |binary: &str, vars: &[(&str, &str)]| {
        let mut cmd = Command::new(binary);
        cmd.env_clear().env("BIND_ADDR", "127.0.0.1:0").env("DATABASE_URL", "sqlite:///nonexistent/never-opened.db");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("binary runs");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_order-system")).parent().unwrap().to_owned();
    let users = dir.join("user-service");
    assert!(
        users.exists(),
        "{} is built by `cargo test --workspace` (user-service's own tests need it)",
        users.display()
    );
    let users = users.to_str().unwrap();
    let (code, stderr) = run(users, &[("BILLING_SERVICE_URL", "http://127.0.0.1:9")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(error_line(&stderr).contains("AUTH_SIGNING_KEY_FILE"), "{stderr}");
    let (code, stderr) = run(
        users,
        &[
            ("BILLING_SERVICE_URL", "http://127.0.0.1:9"),
            ("AUTH_SIGNING_KEY_FILE", testkit::signing_key_file().to_str().unwrap()),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(error_line(&stderr).contains("INTERNAL_API_TOKEN"), "{stderr}");
}
