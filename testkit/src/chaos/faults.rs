//! The fault task (a seeded [`FaultSchedule`] played against a
//! [`Cluster`]) and what its record explains: a 5xx is acceptable only while
//! a service it depends on was down or frozen.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chaos::driver::Exchange;
use crate::chaos::schedule::{FaultKind, FaultSchedule, FaultStep};
use crate::cluster::{Cluster, ReplicaId, ServiceKind, Termination};
use crate::invariants::Violation;

/// One fault as it happened: from the signal until the replica was ready
/// again.
#[derive(Debug, Clone)]
pub struct Disturbance {
    pub step: FaultStep,
    pub from: Instant,
    pub until: Instant,
    /// SIGTERM's outcome.
    pub termination: Option<Termination>,
    /// From the restart to ready.
    pub restart: Option<Duration>,
    /// What went wrong in the harness's own steps (a restart that failed).
    pub error: Option<String>,
}

/// Plays `schedule` against `cluster` until `deadline`; every fault is
/// carried through (the replica is back) before the next one is drawn.
pub async fn play(
    cluster: Arc<Cluster>,
    mut schedule: FaultSchedule,
    deadline: Instant,
    sigterm_limit: Duration,
) -> Vec<Disturbance> {
    let mut done = Vec::new();
    loop {
        let step = schedule.next().expect("the schedule is endless");
        if Instant::now() + step.gap >= deadline {
            break;
        }
        tokio::time::sleep(step.gap).await;
        let disturbance = strike(&cluster, step, sigterm_limit).await;
        let failed = disturbance.error.is_some();
        done.push(disturbance);
        if failed {
            // A replica that cannot be brought back ends the faults; the
            // checks afterwards say what that cost.
            break;
        }
    }
    done
}

async fn strike(cluster: &Cluster, step: FaultStep, sigterm_limit: Duration) -> Disturbance {
    let id = step.target;
    let from = Instant::now();
    let mut termination = None;
    let mut restart = None;
    let result: Result<(), String> = async {
        match step.kind {
            FaultKind::Pause => {
                cluster.pause(id).map_err(|e| e.to_string())?;
                tokio::time::sleep(step.hold).await;
                cluster.resume(id).map_err(|e| e.to_string())?;
            }
            FaultKind::Kill | FaultKind::Terminate => {
                if step.kind == FaultKind::Kill {
                    cluster.kill(id).map_err(|e| e.to_string())?;
                } else {
                    termination = Some(cluster.terminate(id, sigterm_limit).await.map_err(|e| e.to_string())?);
                }
                tokio::time::sleep(step.hold).await;
                restart = Some(cluster.start(id).await.map_err(|e| e.to_string())?);
            }
        }
        Ok(())
    }
    .await;
    Disturbance { step, from, until: Instant::now(), termination, restart, error: result.err() }
}

/// Brings every replica back (started if down, resumed if frozen) and
/// waited for until ready.
pub async fn restore(cluster: &Cluster) -> Result<(), String> {
    for id in cluster.replica_ids() {
        if !cluster.is_running(id) {
            cluster.start(id).await.map_err(|e| e.to_string())?;
        } else if cluster.is_paused(id) {
            cluster.resume(id).map_err(|e| e.to_string())?;
        }
        cluster.wait_ready(id, cluster.config().ready_limit).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What a gateway may answer while its backend is down; the services
/// themselves answer 503 when a peer is.
const GATEWAY_STATUSES: [u16; 3] = [502, 503, 504];

/// How the 5xx answers of a run are judged.
#[derive(Debug, Clone, Copy)]
pub struct ServerErrorRules {
    /// A 5xx counts as explained when a disturbance ended at most this long
    /// before the request was sent (pooled connections to a restarted peer
    /// fail once, then the caller retries).
    pub margin: Duration,
    /// The clients go through a load balancer: 502/503/504 are fine while
    /// the answering service itself, or a peer, is disturbed.
    pub through_gateway: bool,
}

/// 5xx answers that a disturbance explains, counted by (the service that
/// answered, the status, the service that was down or frozen: a peer, or
/// the service itself when it was frozen during the request), and the ones
/// nothing explains, as violations.
#[derive(Debug, Default)]
pub struct ServerErrors {
    pub explained: BTreeMap<(ServiceKind, u16, ServiceKind), usize>,
    pub violations: Vec<Violation>,
}

pub fn judge_server_errors(
    exchanges: &[Exchange],
    disturbances: &[Disturbance],
    rules: ServerErrorRules,
    origin: Instant,
) -> ServerErrors {
    let mut judged = ServerErrors::default();
    for x in exchanges {
        let Some(status) = x.status.filter(|s| *s >= 500) else { continue };
        let at = x.sent.saturating_duration_since(origin).as_secs_f64();
        let what = format!("{status} from {} ({} at +{at:.2}s, {:?} phase)", x.service, x.kind.name(), x.phase);
        if status == 500 {
            judged.violations.push(Violation { invariant: "no-500", detail: what });
            continue;
        }
        let allowed = if rules.through_gateway { GATEWAY_STATUSES.contains(&status) } else { status == 503 };
        if !allowed {
            judged.violations.push(Violation { invariant: "5xx-only-503", detail: what });
            continue;
        }
        let answered = x.sent + x.took;
        let cause = disturbances.iter().find(|d| {
            let service = d.step.target.service;
            // A service frozen in the middle of a request finds its budget
            // spent when it wakes up, and says so with a 503.
            let itself = service == x.service && (d.step.kind == FaultKind::Pause || rules.through_gateway);
            let related = x.service.peers().contains(&service) || itself;
            related && d.from <= answered && d.until + rules.margin >= x.sent
        });
        match cause {
            Some(d) => *judged.explained.entry((x.service, status, d.step.target.service)).or_default() += 1,
            None => judged.violations.push(Violation {
                invariant: "503-only-while-a-peer-is-down",
                detail: format!(
                    "{what}, while it was not frozen and none of its peers {:?} was down",
                    names(x.service.peers())
                ),
            }),
        }
    }
    judged
}

fn names(kinds: &[ServiceKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.binary()).collect()
}

/// Every fault the harness could not carry through (a replica that did not
/// come back), as violations.
pub fn failed_restarts(disturbances: &[Disturbance]) -> Vec<Violation> {
    disturbances
        .iter()
        .filter_map(|d| d.error.as_ref().map(|e| (d, e)))
        .map(|(d, e)| Violation {
            invariant: "restarts",
            detail: format!("{} {} failed: {e}", d.step.target, d.step.kind.name()),
        })
        .collect()
}

/// SIGTERM must end a service with exit code 0, by itself.
pub fn judge_terminations(disturbances: &[Disturbance], shutdown: &[(ReplicaId, Termination)]) -> Vec<Violation> {
    let during = disturbances.iter().filter_map(|d| d.termination.map(|t| (d.step.target, t, "under load")));
    let at_end = shutdown.iter().map(|(id, t)| (*id, *t, "at the end"));
    during
        .chain(at_end)
        .filter(|(_, t, _)| !t.clean())
        .map(|(id, t, when)| Violation { invariant: "sigterm-exits-0", detail: format!("{id} SIGTERM {when}: {t}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::driver::{OpKind, Phase};

    fn at(origin: Instant, ms: u64) -> Instant {
        origin + Duration::from_millis(ms)
    }

    fn exchange(origin: Instant, service: ServiceKind, sent_ms: u64, status: u16) -> Exchange {
        Exchange {
            service,
            kind: OpKind::Order,
            phase: Phase::Load,
            sent: at(origin, sent_ms),
            took: Duration::from_millis(100),
            status: Some(status),
            indefinite: None,
        }
    }

    fn down(origin: Instant, service: ServiceKind, from_ms: u64, until_ms: u64) -> Disturbance {
        Disturbance {
            step: FaultStep {
                gap: Duration::ZERO,
                target: ReplicaId { service, index: 0 },
                kind: FaultKind::Kill,
                hold: Duration::ZERO,
            },
            from: at(origin, from_ms),
            until: at(origin, until_ms),
            termination: None,
            restart: None,
            error: None,
        }
    }

    const RULES: ServerErrorRules = ServerErrorRules { margin: Duration::from_millis(500), through_gateway: false };

    #[test]
    fn a_503_while_a_peer_is_down_is_explained_and_counted() {
        let o = Instant::now();
        let judged = judge_server_errors(
            &[exchange(o, ServiceKind::Order, 1_000, 503), exchange(o, ServiceKind::Order, 2_300, 503)],
            &[down(o, ServiceKind::User, 900, 2_000)],
            RULES,
            o,
        );
        assert!(judged.violations.is_empty(), "{:?}", judged.violations);
        assert_eq!(judged.explained[&(ServiceKind::Order, 503, ServiceKind::User)], 2);
    }

    #[test]
    fn a_503_with_no_peer_down_or_from_a_service_without_peers_is_a_violation() {
        let o = Instant::now();
        let judged = judge_server_errors(
            &[
                exchange(o, ServiceKind::Order, 5_000, 503),   // long after the outage
                exchange(o, ServiceKind::Billing, 1_000, 503), // billing calls nobody
                exchange(o, ServiceKind::User, 1_000, 503),    // its peer is billing, not notification
            ],
            &[down(o, ServiceKind::Notification, 900, 2_000)],
            RULES,
            o,
        );
        assert_eq!(judged.violations.len(), 3, "{:?}", judged.violations);
        assert!(judged.explained.is_empty());
    }

    #[test]
    fn a_503_from_a_service_frozen_during_the_request_is_explained_a_killed_one_is_not() {
        let o = Instant::now();
        let mut frozen = down(o, ServiceKind::User, 1_050, 4_000);
        frozen.step.kind = FaultKind::Pause;
        let judged = judge_server_errors(&[exchange(o, ServiceKind::User, 1_000, 503)], &[frozen], RULES, o);
        assert!(judged.violations.is_empty(), "{:?}", judged.violations);
        assert_eq!(judged.explained[&(ServiceKind::User, 503, ServiceKind::User)], 1);
        let killed = down(o, ServiceKind::User, 1_050, 4_000);
        let judged = judge_server_errors(&[exchange(o, ServiceKind::User, 1_000, 503)], &[killed], RULES, o);
        assert_eq!(judged.violations.len(), 1);
    }

    #[test]
    fn a_500_and_a_502_are_never_explained() {
        let o = Instant::now();
        let outage = [down(o, ServiceKind::Billing, 0, 10_000)];
        let judged = judge_server_errors(
            &[exchange(o, ServiceKind::Order, 1_000, 500), exchange(o, ServiceKind::Order, 1_000, 502)],
            &outage,
            RULES,
            o,
        );
        let names: Vec<&str> = judged.violations.iter().map(|v| v.invariant).collect();
        assert_eq!(names, ["no-500", "5xx-only-503"]);
        // Behind a gateway a 502 for a replica that is down is its answer.
        let gateway = ServerErrorRules { through_gateway: true, ..RULES };
        let judged = judge_server_errors(&[exchange(o, ServiceKind::Billing, 1_000, 502)], &outage, gateway, o);
        assert!(judged.violations.is_empty());
    }

    #[test]
    fn a_sigterm_that_does_not_end_in_exit_0_is_a_violation() {
        let o = Instant::now();
        let mut d = down(o, ServiceKind::Billing, 0, 10);
        d.termination =
            Some(Termination { exit_code: None, signal: Some(9), took: Duration::from_secs(40), forced: true });
        let clean = Termination { exit_code: Some(0), signal: None, took: Duration::from_millis(30), forced: false };
        let id = ReplicaId { service: ServiceKind::User, index: 0 };
        assert_eq!(judge_terminations(&[d], &[(id, clean)]).len(), 1);
        let failed = Termination { exit_code: Some(1), ..clean };
        assert_eq!(judge_terminations(&[], &[(id, failed)]).len(), 1);
    }
}
