//! The seeded chaos soak (see `testkit::chaos`): the four service binaries
//! on PostgreSQL under a random mix of orders, deposits, sign-ups and cancels while
//! random services are killed, frozen and terminated; then every invariant.
//!
//! Environment (all optional):
//!   CHAOS_SEED      the seed (decimal or 0x-hex); a random one by default,
//!                   printed first, so a failure can be replayed
//!   CHAOS_SECONDS   how long the load and the faults run (60)
//!   CHAOS_USERS     users the money moves between (30)
//!   CHAOS_CLIENTS   concurrent clients (8)
//!   CHAOS_FAULTS    0: the same load without faults (1)
//!   CHAOS_LOG_DIR   where the services' logs go (a fresh directory under $TMPDIR)
//!   CHAOS_BIN_DIR   where the service binaries are (beside this binary)
//!   CHAOS_RUST_LOG  the services' RUST_LOG (info)
//!   CHAOS_POOL_SIZE each service's DATABASE_POOL_SIZE (8)
//!   TEST_PG_URL     PostgreSQL as superuser (postgres://postgres@127.0.0.1:5432)
//!
//! Exit status: 0 no violation; 1 violations (the seed and the command that
//! replays it are printed); 2 the soak itself could not run; 130 interrupted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use testkit::chaos::{self, SoakConfig};
use testkit::cli::{self, number, var};
use testkit::cluster::ClusterConfig;

fn seed() -> Result<u64, String> {
    let Some(text) = var("CHAOS_SEED") else { return Ok(fastrand::u64(..)) };
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("CHAOS_SEED={text:?} is not a 64-bit number"))
}

fn config() -> Result<SoakConfig, String> {
    let seed = seed()?;
    let exe = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let bin_dir = var("CHAOS_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| exe.parent().expect("a directory").into());
    let log_dir = var("CHAOS_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("chaos-{seed}-{}", std::process::id())));
    let mut cluster = ClusterConfig::new(bin_dir, log_dir);
    if let Some(level) = var("CHAOS_RUST_LOG") {
        cluster.rust_log = level;
    }
    // Enough connections that a resumed billing-service runs the requests
    // that queued up while it was frozen side by side, as a deployed one
    // (10 by default) would; below that default, as the server is shared.
    cluster.pool_size = number("CHAOS_POOL_SIZE", 8)?;
    let mut soak = SoakConfig::new(seed, cluster);
    soak.duration = Duration::from_secs(number("CHAOS_SECONDS", 60)?);
    soak.users = number("CHAOS_USERS", soak.users)?;
    soak.clients = number("CHAOS_CLIENTS", soak.clients)?;
    soak.faults = number::<u8>("CHAOS_FAULTS", 1)? != 0;
    if soak.users == 0 || soak.clients == 0 {
        return Err("CHAOS_USERS and CHAOS_CLIENTS must be at least 1".into());
    }
    Ok(soak)
}

/// The command that runs this soak again with the same seed and shape.
fn replay_command(c: &SoakConfig) -> String {
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "chaos".into());
    format!(
        "CHAOS_SEED={} CHAOS_SECONDS={} CHAOS_USERS={} CHAOS_CLIENTS={} CHAOS_POOL_SIZE={}{} {exe}",
        c.seed,
        c.duration.as_secs(),
        c.users,
        c.clients,
        c.cluster.pool_size,
        if c.faults { "" } else { " CHAOS_FAULTS=0" }
    )
}

// One thread: the soak waits on the network, and the services need the CPU.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match cli::configured("chaos", config()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let replay = replay_command(&config);
    println!(
        "chaos soak: seed {} ({}s, {} users, {} clients); replay: {replay}",
        config.seed,
        config.duration.as_secs(),
        config.users,
        config.clients
    );
    let name = format!("chaos (seed {})", config.seed);
    cli::run_to_exit(&name, chaos::run(config.clone()), |report| {
        print!("{report}");
        println!("{}", report.figures_line());
        if !report.violations.is_empty() {
            println!("FAILED: {} violation(s) with seed {}; replay: {replay}", report.violations.len(), config.seed);
        }
        report.violations.is_empty()
    })
    .await
}
