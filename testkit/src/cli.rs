//! What the test binaries (`chaos`, `rolling`) share around their runs:
//! settings from the environment, the signal that interrupts them and
//! their exit status.

use std::process::ExitCode;

/// The variable's value, `None` when unset or blank.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The variable as a number, `default` when unset.
pub fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| format!("{name}={v:?} is not a number")),
    }
}

/// Resolves on SIGTERM or SIGINT, so a run can drop what it started (its
/// processes, its databases) before it exits.
pub async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The configuration, or exit status 2 with the reason on stderr.
pub fn configured<C>(name: &str, config: Result<C, String>) -> Result<C, ExitCode> {
    config.map_err(|e| {
        eprintln!("{name}: {e}");
        ExitCode::from(2)
    })
}

/// Runs `work` to its end and has `judge` tell (printing what it found)
/// whether it passed: exit status 0, else 1; 2 when the work itself could
/// not go on; 130 when SIGTERM or SIGINT came first. The interrupted work is
/// dropped before the exit, and with it its cluster: the processes are
/// killed and the databases dropped.
pub async fn run_to_exit<R>(
    name: &str,
    work: impl Future<Output = Result<R, String>>,
    judge: impl FnOnce(R) -> bool,
) -> ExitCode {
    let outcome = tokio::select! {
        outcome = work => outcome,
        _ = interrupted() => {
            eprintln!("{name}: interrupted; stopping the services and dropping the databases");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Err(e) => {
            eprintln!("{name}: the run could not go on: {e}");
            ExitCode::from(2)
        }
        Ok(found) => match judge(found) {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(1),
        },
    }
}
