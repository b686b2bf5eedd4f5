//! Rolling restarts under load behind HAProxy (see `testkit::rolling`): two
//! replicas of every service binary on PostgreSQL, `POST /orders` with
//! Idempotency-Keys for at least a minute while every replica is restarted
//! with SIGTERM in turn, then one order-service and one billing-service
//! replica SIGKILLed; the failures per stretch, every exit code and the
//! invariants.
//!
//! Environment (all optional):
//!   ROLLING_MODE          after: SHUTDOWN_DRAIN_MS as the chart sets it (the
//!                         default); before: SHUTDOWN_DRAIN_MS=0, the
//!                         behaviour before the drain, reported, not judged
//!   ROLLING_CHART_VALUES  the chart's values the drain is computed from
//!                         (helm/values.yaml)
//!   ROLLING_SECONDS       the load runs at least this long (60)
//!   ROLLING_USERS         signed-in users placing orders (20)
//!   ROLLING_CLIENTS       concurrent clients (6)
//!   ROLLING_SEED          draws the requests (random, printed)
//!   ROLLING_POOL_SIZE     each replica's DATABASE_POOL_SIZE (4: eight
//!                         processes share PostgreSQL's 100 connections)
//!   ROLLING_LOG_DIR       the services' and HAProxy's logs and config
//!   ROLLING_BIN_DIR       the service binaries (beside this binary)
//!   ROLLING_RUST_LOG      the services' RUST_LOG (info)
//!   TEST_PG_URL           PostgreSQL as superuser (postgres://postgres@127.0.0.1:5432)
//!
//! Exit status: 0 passed (before: no broken invariant); 1 a failed request
//! outside the SIGKILLs (after), a SIGTERM that did not exit 0, a replica
//! not back in rotation, or a broken invariant; 2 the run itself could not
//! go on; 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use testkit::cli::{self, number, var};
use testkit::cluster::ClusterConfig;
use testkit::rolling::{self, Mode, RollingConfig};

fn config() -> Result<RollingConfig, String> {
    let mode = match var("ROLLING_MODE").as_deref().unwrap_or("after") {
        "after" => {
            let path = var("ROLLING_CHART_VALUES").unwrap_or_else(|| "helm/values.yaml".into());
            let values = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            Mode::Drain(rolling::chart_drain(&values).map_err(|e| format!("{path}: {e}"))?)
        }
        "before" => Mode::NoDrain,
        other => return Err(format!("ROLLING_MODE={other:?}: after or before")),
    };
    let seed = number("ROLLING_SEED", fastrand::u64(..))?;
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let bin_dir =
        var("ROLLING_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| exe.parent().expect("a directory").into());
    let log_dir = var("ROLLING_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("rolling-{}", std::process::id())));
    let mut cluster = ClusterConfig::new(bin_dir, log_dir);
    cluster.pool_size = number("ROLLING_POOL_SIZE", 4)?;
    if let Some(level) = var("ROLLING_RUST_LOG") {
        cluster.rust_log = level;
    }
    let mut config = RollingConfig::new(mode, seed, cluster);
    config.min_load = Duration::from_secs(number("ROLLING_SECONDS", 60)?);
    config.users = number("ROLLING_USERS", config.users)?;
    config.clients = number("ROLLING_CLIENTS", config.clients)?;
    if config.users == 0 || config.clients == 0 {
        return Err("ROLLING_USERS and ROLLING_CLIENTS must be at least 1".into());
    }
    Ok(config)
}

// One thread: the clients wait on the network, and the services need the CPU.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match cli::configured("rolling", config()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!(
        "rolling restarts: SHUTDOWN_DRAIN_MS={}, seed {}, at least {}s of load; logs in {}",
        config.mode.drain().as_millis(),
        config.seed,
        config.min_load.as_secs(),
        config.cluster.log_dir.display()
    );
    cli::run_to_exit("rolling", rolling::run(config), |report| {
        print!("{report}");
        println!("{}", report.figures_line());
        if !report.passed() {
            println!(
                "FAILED: {} failed request attempt(s) before the SIGKILLs, {} violation(s)",
                report.restart_failures(),
                report.violations.len()
            );
        }
        report.passed()
    })
    .await
}
