//! Rolling restarts under load, on a real load balancer: two replicas of
//! every service on PostgreSQL ([`Cluster`]) behind HAProxy ([`Haproxy`],
//! one listener per service, the services calling each other through it as
//! through Kubernetes Services), a steady load of `POST /orders` with
//! `Idempotency-Key`s (and deposits, so some orders are paid and some
//! rejected) by users who signed up and signed in first, while every replica
//! is restarted in turn with SIGTERM; then one order-service and one
//! billing-service replica are SIGKILLed and started again.
//!
//! A request without a definite answer is repeated at once with its key or
//! reference until it gets one (bounded); every attempt without one is a
//! failure, counted in the stretch of the run its request began in. With
//! the drain (`SHUTDOWN_DRAIN_MS` as the chart sets it) the steady and
//! rolling stretches must see none; without it ([`Mode::NoDrain`], the
//! listener closes right after SIGTERM) the failures are only reported.
//! Afterwards the recovery loops settle and every invariant is checked.
//!
//! `testkit/src/bin/rolling.rs` runs it; [`run`] is the whole run.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::chaos::driver::{Driver, Endpoints, Indefinite, Intent, OpKind, Outcome, Phase, Session};
use crate::chaos::faults::{self, Disturbance};
use crate::chaos::schedule::{ClientPlan, FaultKind, FaultStep, Operation, OperationMix};
use crate::chaos::{Stored, expectations_of, request_for, set_up_users, settle};
use crate::cluster::{Cluster, ClusterConfig, Fronts, ReplicaId, ServiceKind, Termination};
use crate::haproxy::{Haproxy, Listener, server_name};
use crate::invariants::{self, Grouped, Snapshot, Unfinished, Violation};

/// What SIGTERM does in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Readiness 503 at once, everything served for this long
    /// (`SHUTDOWN_DRAIN_MS`), then the listener closes: a failed request
    /// during the restarts fails the run.
    Drain(Duration),
    /// `SHUTDOWN_DRAIN_MS=0`: the listener closes right after SIGTERM, as
    /// before the drain existed. The failures are the figure to compare
    /// with; they do not fail the run.
    NoDrain,
}

impl Mode {
    pub fn drain(self) -> Duration {
        match self {
            Mode::Drain(drain) => drain,
            Mode::NoDrain => Duration::ZERO,
        }
    }
}

/// `SHUTDOWN_DRAIN_MS` as the chart (helm/values.yaml) sets it: `shutdown.drainMs`
/// when given (it must outlast the readiness probe's notice), else the
/// readiness probe's `periodSeconds × failureThreshold` plus
/// `shutdown.endpointPropagationSeconds` (helm/templates/_helpers.tpl,
/// `order-system.drainMs`).
pub fn chart_drain(values_yaml: &str) -> Result<Duration, String> {
    let values: serde_json::Value =
        yaml_serde::from_str(values_yaml).map_err(|e| format!("the chart's values do not parse: {e}"))?;
    let number = |v: &serde_json::Value, default: u64, name: &str| -> Result<u64, String> {
        match v {
            serde_json::Value::Null => Ok(default),
            v => v.as_u64().ok_or(format!("{name} is not a whole number: {v}")),
        }
    };
    let readiness = &values["probes"]["readiness"];
    // The template's defaults when a value is missing.
    let notice_ms = number(&readiness["periodSeconds"], 10, "probes.readiness.periodSeconds")?
        * number(&readiness["failureThreshold"], 3, "probes.readiness.failureThreshold")?
        * 1000;
    let shutdown = &values["shutdown"];
    let drain_ms = match &shutdown["drainMs"] {
        serde_json::Value::Null => {
            notice_ms
                + 1000 * number(&shutdown["endpointPropagationSeconds"], 0, "shutdown.endpointPropagationSeconds")?
        }
        given => {
            let given = number(given, 0, "shutdown.drainMs")?;
            if given <= notice_ms {
                return Err(format!(
                    "shutdown.drainMs={given} is not longer than the readiness notice ({notice_ms} ms)"
                ));
            }
            given
        }
    };
    Ok(Duration::from_millis(drain_ms))
}

#[derive(Debug, Clone)]
pub struct RollingConfig {
    pub mode: Mode,
    /// Draws the clients' requests and the first deposits.
    pub seed: u64,
    pub users: usize,
    pub clients: usize,
    pub mix: OperationMix,
    /// The load runs at least this long, and past the last fault by `quiet`.
    pub min_load: Duration,
    /// Load without faults before the restarts, between the stretches and
    /// after the last restart.
    pub quiet: Duration,
    /// How long a SIGKILLed replica stays down before it starts again.
    pub kill_downtime: Duration,
    /// Every request's timeout.
    pub client_timeout: Duration,
    /// How long one request is repeated for a definite answer, and the pause
    /// between two attempts.
    pub repeat_limit: Duration,
    pub repeat_pause: Duration,
    /// How long a replica may take to leave or rejoin HAProxy's rotation.
    pub rotation_limit: Duration,
    /// How long a SIGTERMed replica may take to exit (the chart's grace
    /// period: the drain, the in-flight bound and 5 s).
    pub sigterm_limit: Duration,
    pub settle_limit: Duration,
    pub cluster: ClusterConfig,
}

impl RollingConfig {
    pub fn new(mode: Mode, seed: u64, mut cluster: ClusterConfig) -> RollingConfig {
        cluster.replicas = 2;
        cluster.db_prefix = "rolling".into();
        cluster.extra_env.push(("SHUTDOWN_DRAIN_MS".into(), mode.drain().as_millis().to_string()));
        RollingConfig {
            mode,
            seed,
            users: 20,
            clients: 6,
            mix: OperationMix {
                weights: [30, 70, 0, 0],
                deposit: 1_000..=40_000,
                price: 100..=30_000,
                pause_ms: 10..=40,
                backoff_ms: 0..=0,
            },
            min_load: Duration::from_secs(60),
            quiet: Duration::from_secs(4),
            kill_downtime: Duration::from_secs(1),
            client_timeout: Duration::from_secs(6),
            repeat_limit: Duration::from_secs(45),
            repeat_pause: Duration::from_millis(200),
            rotation_limit: Duration::from_secs(15),
            // SHUTDOWN_TIMEOUT_MS is 30 s by default, as in the chart.
            sigterm_limit: mode.drain() + Duration::from_secs(35),
            settle_limit: Duration::from_secs(60),
            cluster,
        }
    }
}

/// One replica stopped (SIGTERM or SIGKILL) and started again, as a fault
/// of the chaos soak is recorded, with what HAProxy made of it.
#[derive(Debug, Clone)]
pub struct Restart {
    /// The signal, its outcome (SIGTERM: exit code, time to the exit), the
    /// time from the start to ready, and whatever went wrong.
    pub disturbance: Disturbance,
    /// From the signal until HAProxy took the replica out of rotation.
    pub left_rotation: Option<Duration>,
    /// From the start until HAProxy had it in rotation again.
    pub back_in_rotation: Option<Duration>,
}

/// The stretches of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stretch {
    /// Load before the first SIGTERM.
    Steady,
    /// From the first SIGTERM until the first SIGKILL.
    Rolling,
    /// From the first SIGKILL to the end of the load.
    Kills,
}

impl Stretch {
    fn name(self) -> &'static str {
        match self {
            Stretch::Steady => "steady",
            Stretch::Rolling => "rolling restarts (SIGTERM)",
            Stretch::Kills => "SIGKILLs",
        }
    }
}

/// When the load and its stretches began and ended.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    pub origin: Instant,
    pub rolling_from: Instant,
    pub kills_from: Instant,
    pub end: Instant,
}

impl Timeline {
    pub fn stretch_of(&self, t: Instant) -> Stretch {
        if t >= self.kills_from {
            Stretch::Kills
        } else if t >= self.rolling_from {
            Stretch::Rolling
        } else {
            Stretch::Steady
        }
    }

    fn bounds(&self, stretch: Stretch) -> (Instant, Instant) {
        match stretch {
            Stretch::Steady => (self.origin, self.rolling_from),
            Stretch::Rolling => (self.rolling_from, self.kills_from),
            Stretch::Kills => (self.kills_from, self.end),
        }
    }

    /// Seconds since the load began.
    fn at(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64()
    }
}

/// One request of the load, with every attempt's failure.
#[derive(Debug, Clone)]
pub struct Placed {
    pub began: Instant,
    pub intent: Intent,
    /// When each attempt without a definite answer ended, and why it had
    /// none.
    pub failures: Vec<(Instant, Indefinite)>,
}

/// The figures of one stretch: the requests that began in it, and the
/// failed attempts that ended in it (a request in flight when a replica is
/// SIGKILLed fails after the signal: the kill's doing, not the drain's).
#[derive(Debug, Clone, Default)]
pub struct StretchFigures {
    pub orders: usize,
    pub deposits: usize,
    pub attempts: usize,
    /// Failed attempts by what went wrong.
    pub failures: BTreeMap<String, usize>,
    /// Requests whose first failed attempt ended in the stretch, and how
    /// many of those got a definite answer in the end.
    pub troubled: usize,
    pub recovered: usize,
}

impl StretchFigures {
    pub fn failed_attempts(&self) -> usize {
        self.failures.values().sum()
    }

    /// Counts the requests by stretch.
    pub fn of(placed: &[Placed], timeline: &Timeline) -> BTreeMap<Stretch, StretchFigures> {
        let mut stretches: BTreeMap<Stretch, StretchFigures> = BTreeMap::new();
        for p in placed {
            let figures = stretches.entry(timeline.stretch_of(p.began)).or_default();
            match p.intent.request.kind() {
                OpKind::Order => figures.orders += 1,
                OpKind::Deposit => figures.deposits += 1,
                OpKind::Register | OpKind::Cancel | OpKind::List => {} // this load sends none of these
            }
            figures.attempts += p.intent.attempts as usize;
            for (at, why) in &p.failures {
                *stretches.entry(timeline.stretch_of(*at)).or_default().failures.entry(why.name()).or_default() += 1;
            }
            if let Some((first, _)) = p.failures.first() {
                let figures = stretches.entry(timeline.stretch_of(*first)).or_default();
                figures.troubled += 1;
                figures.recovered += usize::from(p.intent.outcome.is_definite());
            }
        }
        stretches
    }
}

#[derive(Debug)]
pub struct RollingReport {
    pub config: RollingConfig,
    pub timeline: Timeline,
    pub restarts: Vec<Restart>,
    pub placed: Vec<Placed>,
    pub stretches: BTreeMap<Stretch, StretchFigures>,
    /// Settling after the load: how long it took, what was left.
    pub settled: (Duration, Unfinished),
    pub stored: Stored,
    /// SIGTERM to every replica at once after the checks.
    pub shutdown: Vec<(ReplicaId, Termination)>,
    pub violations: Vec<Violation>,
}

impl RollingReport {
    /// The figures of `stretch` (empty when nothing began in it).
    pub fn figures(&self, stretch: Stretch) -> StretchFigures {
        self.stretches.get(&stretch).cloned().unwrap_or_default()
    }

    /// Failed attempts where the drain must leave none: before and during
    /// the rolling restarts.
    pub fn restart_failures(&self) -> usize {
        self.figures(Stretch::Steady).failed_attempts() + self.figures(Stretch::Rolling).failed_attempts()
    }

    /// The run proves what it should: no violation, and with the drain no
    /// failure outside the SIGKILLs.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && (self.config.mode == Mode::NoDrain || self.restart_failures() == 0)
    }

    /// The final answers to the orders: (HTTP status, order status) → count.
    pub fn order_answers(&self) -> BTreeMap<(u16, String), usize> {
        let mut answers = BTreeMap::new();
        for p in self.placed.iter().filter(|p| p.intent.request.kind() == OpKind::Order) {
            if let Outcome::Definite(status, body) = &p.intent.outcome {
                *answers.entry((*status, body["status"].as_str().unwrap_or("?").to_owned())).or_default() += 1;
            }
        }
        answers
    }

    /// One line of figures, for tables and notes.
    pub fn figures_line(&self) -> String {
        let requests: usize = self.stretches.values().map(|s| s.orders + s.deposits).sum();
        let sigterm_exits: Vec<String> = self
            .restarts
            .iter()
            .filter_map(|r| r.disturbance.termination)
            .map(|t| t.exit_code.map_or("signal".into(), |c| c.to_string()))
            .collect();
        format!(
            "rolling-figures drain_ms={} seconds={:.0} requests={requests} steady_failures={} rolling_failures={} \
             kill_failures={} sigterm_exits={} {} violations={}",
            self.config.mode.drain().as_millis(),
            (self.timeline.end - self.timeline.origin).as_secs_f64(),
            self.figures(Stretch::Steady).failed_attempts(),
            self.figures(Stretch::Rolling).failed_attempts(),
            self.figures(Stretch::Kills).failed_attempts(),
            sigterm_exits.join(","),
            self.stored.figures(),
            self.violations.len()
        )
    }
}

/// The whole run. `Err` only when the harness itself cannot go on (no
/// PostgreSQL or HAProxy, a service that does not start before the load);
/// everything the services get wrong is in the report.
pub async fn run(config: RollingConfig) -> Result<RollingReport, String> {
    let mut fronts = BTreeMap::new();
    for service in ServiceKind::START_ORDER {
        fronts.insert(service, crate::cluster::free_port().map_err(|e| format!("no free port: {e}"))?);
    }
    let mut cluster_config = config.cluster.clone();
    cluster_config.fronts = Fronts::Given(fronts.iter().map(|(s, a)| (*s, format!("http://{a}"))).collect());
    let cluster = Cluster::prepare_afresh(cluster_config)?;
    // The Services exist before the pods: a replica's peers are reached
    // through them from its first request on.
    let haproxy = Haproxy::start(&Listener::for_cluster(&cluster, &fronts), &config.cluster.log_dir).await?;
    cluster.start_all().await.map_err(|e| e.to_string())?;
    haproxy.wait_all_in_rotation(config.rotation_limit).await?;

    let front = |s: ServiceKind| cluster.front_url(s).to_owned();
    let endpoints = Endpoints {
        users: front(ServiceKind::User),
        billing: front(ServiceKind::Billing),
        orders: front(ServiceKind::Order),
    };
    let driver = Arc::new(Driver::new(endpoints, config.client_timeout));
    let (sessions, setup) = set_up_users(&driver, config.seed, config.users).await?;
    let sessions = Arc::new(sessions);

    let origin = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let clients: Vec<_> = (0..config.clients)
        .map(|c| {
            let plan = ClientPlan::new(config.seed, c as u64, sessions.len(), config.mix.clone());
            let load = Load { driver: driver.clone(), sessions: sessions.clone(), stopped: stopped.clone() };
            tokio::spawn(load.client(plan, c, config.repeat_limit, config.repeat_pause))
        })
        .collect();
    let conducted = conduct(&cluster, &haproxy, &config).await;
    tokio::time::sleep_until((origin + config.min_load).max(Instant::now() + config.quiet).into()).await;
    let _ = stop.send(true);
    let mut placed = Vec::new();
    for client in clients {
        placed.extend(client.await.map_err(|e| format!("a client task failed: {e}"))?);
    }
    let timeline = Timeline {
        origin,
        rolling_from: conducted.rolling_from,
        kills_from: conducted.kills_from,
        end: Instant::now(),
    };

    let urls = cluster.database_urls();
    let settled = settle(&urls, config.settle_limit).await?;
    let snapshot = tokio::task::spawn_blocking(move || Snapshot::read(&urls))
        .await
        .map_err(|e| format!("reading the databases failed: {e}"))??;
    let intents: Vec<Intent> = setup.into_iter().chain(placed.iter().map(|p| p.intent.clone())).collect();
    let disturbances: Vec<Disturbance> = conducted.restarts.iter().map(|r| r.disturbance.clone()).collect();
    let mut violations = faults::failed_restarts(&disturbances);
    violations.extend(invariants::check(&snapshot, &expectations_of(&intents)));
    let shutdown = cluster.terminate_all(config.sigterm_limit).await;
    violations.extend(faults::judge_terminations(&disturbances, &shutdown));
    violations.sort();
    Ok(RollingReport {
        stretches: StretchFigures::of(&placed, &timeline),
        config,
        timeline,
        restarts: conducted.restarts,
        placed,
        settled,
        stored: Stored::of(&snapshot),
        shutdown,
        violations,
    })
}

/// What one client needs: the shared driver, the users, and the signal to
/// stop.
struct Load {
    driver: Arc<Driver>,
    sessions: Arc<Vec<Session>>,
    stopped: watch::Receiver<bool>,
}

impl Load {
    /// Orders and deposits, one after another, until told to stop; each
    /// repeated with its key or reference until it has a definite answer
    /// (or `repeat_limit` passes).
    async fn client(self, mut plan: ClientPlan, client: usize, repeat_limit: Duration, pause: Duration) -> Vec<Placed> {
        let mut placed = Vec::new();
        let mut n = 0;
        while !*self.stopped.borrow() {
            let operation = plan.next_operation();
            if operation == Operation::Register {
                continue;
            }
            // Nor cancels (their weight is 0).
            let Some(request) = request_for(operation, &self.sessions, client, n) else { continue };
            n += 1;
            let began = Instant::now();
            let first = self.driver.send(&request, Phase::Load).await;
            let (mut outcome, mut attempts, mut failures) = (first.clone(), 1, Vec::new());
            while let Outcome::Indefinite(why, _) = &outcome {
                failures.push((Instant::now(), why.clone()));
                if began.elapsed() >= repeat_limit {
                    break;
                }
                tokio::time::sleep(pause).await;
                outcome = self.driver.send(&request, Phase::Retry).await;
                attempts += 1;
            }
            placed.push(Placed { began, intent: Intent { request, first, outcome, attempts }, failures });
            tokio::time::sleep(plan.pause()).await;
        }
        placed
    }
}

struct Conducted {
    rolling_from: Instant,
    kills_from: Instant,
    restarts: Vec<Restart>,
}

/// The operations beside the load: every replica restarted in turn with
/// SIGTERM, then one order-service and one billing-service replica
/// SIGKILLed; each carried through (back in rotation) before the next. A
/// replica that cannot be brought back ends them.
async fn conduct(cluster: &Cluster, haproxy: &Haproxy, config: &RollingConfig) -> Conducted {
    let step = |target, kind, gap, hold| FaultStep { gap, target, kind, hold };
    let rolling =
        cluster.replica_ids().into_iter().map(|id| step(id, FaultKind::Terminate, Duration::ZERO, Duration::ZERO));
    let kills = [(ServiceKind::Order, 0), (ServiceKind::Billing, 1)].map(|(service, index)| {
        step(ReplicaId { service, index }, FaultKind::Kill, config.quiet, config.kill_downtime)
    });
    tokio::time::sleep(config.quiet).await;
    let rolling_from = Instant::now();
    let mut kills_from = None;
    let mut restarts = Vec::new();
    for step in rolling.chain(kills) {
        tokio::time::sleep(step.gap).await;
        if step.kind == FaultKind::Kill && kills_from.is_none() {
            kills_from = Some(Instant::now());
        }
        let restart = restart(cluster, haproxy, step, config).await;
        let failed = restart.disturbance.error.is_some();
        restarts.push(restart);
        if failed {
            break;
        }
    }
    Conducted { rolling_from, kills_from: kills_from.unwrap_or_else(Instant::now), restarts }
}

/// Stops the replica (waiting for its exit and for HAProxy to take it out
/// of rotation, as a replaced pod's endpoint goes), keeps it down for the
/// step's hold, starts it again on its port and waits until HAProxy has it
/// back in rotation.
async fn restart(cluster: &Cluster, haproxy: &Haproxy, step: FaultStep, config: &RollingConfig) -> Restart {
    let id = step.target;
    let (listener, server) = (id.service.binary(), server_name(id));
    let from = Instant::now();
    let (mut termination, mut ready, mut left_rotation, mut back_in_rotation) = (None, None, None, None);
    let leaving = haproxy.wait_for(listener, &server, false, config.sigterm_limit);
    let stopping = async {
        match step.kind {
            FaultKind::Terminate => cluster.terminate(id, config.sigterm_limit).await.map(Some),
            _ => cluster.kill(id).map(|()| None),
        }
    };
    let (left, stopped) = tokio::join!(leaving, stopping);
    let outcome: Result<(), String> = async {
        termination = stopped.map_err(|e| e.to_string())?;
        left_rotation = Some(left?);
        tokio::time::sleep(step.hold).await;
        let started = Instant::now();
        ready = Some(cluster.start(id).await.map_err(|e| e.to_string())?);
        haproxy.wait_for(listener, &server, true, config.rotation_limit).await?;
        back_in_rotation = Some(started.elapsed());
        Ok(())
    }
    .await;
    let disturbance =
        Disturbance { step, from, until: Instant::now(), termination, restart: ready, error: outcome.err() };
    Restart { disturbance, left_rotation, back_in_rotation }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.disturbance;
        let signal = if d.step.kind == FaultKind::Kill { "SIGKILL" } else { "SIGTERM" };
        write!(f, "{:<24} {signal}", d.step.target.to_string())?;
        if let Some(t) = d.termination {
            write!(f, ": {t}")?;
        }
        if let Some(left) = self.left_rotation {
            write!(f, "; out of rotation {} after the signal", secs(left))?;
        }
        if !d.step.hold.is_zero() {
            write!(f, "; down {}", secs(d.step.hold))?;
        }
        if let (Some(ready), Some(back)) = (d.restart, self.back_in_rotation) {
            write!(f, "; restarted: ready in {}, in rotation {} after the start", secs(ready), secs(back))?;
        }
        if let Some(e) = &d.error {
            write!(f, "; FAILED: {e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RollingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let drain = match c.mode {
            Mode::Drain(d) => format!("SHUTDOWN_DRAIN_MS={} (the chart's)", d.as_millis()),
            Mode::NoDrain => "SHUTDOWN_DRAIN_MS=0 (no drain: the listener closes right after SIGTERM)".into(),
        };
        let t = &self.timeline;
        writeln!(
            f,
            "rolling restarts behind HAProxy, 2 replicas per service, {drain}; seed {}, {} users, {} clients, \
             {:.1}s of load",
            c.seed,
            c.users,
            c.clients,
            t.at(t.end)
        )?;
        writeln!(f, "  restarts (signal at +seconds of load):")?;
        for r in &self.restarts {
            writeln!(f, "    +{:>5.1}s {r}", t.at(r.disturbance.from))?;
        }
        writeln!(
            f,
            "  requests by the stretch they began in; failures (attempts without a definite answer) by the \
             stretch they ended in:"
        )?;
        for stretch in [Stretch::Steady, Stretch::Rolling, Stretch::Kills] {
            let (from, to) = t.bounds(stretch);
            let s = self.figures(stretch);
            write!(
                f,
                "    {:<27} +{:.1}s..+{:.1}s: {} orders, {} deposits, {} attempts; failures: {}",
                stretch.name(),
                t.at(from),
                t.at(to),
                s.orders,
                s.deposits,
                s.attempts,
                s.failed_attempts()
            )?;
            let kinds: Vec<String> = s.failures.iter().map(|(why, n)| format!("{why}: {n}")).collect();
            if !kinds.is_empty() {
                write!(f, " ({})", kinds.join(", "))?;
            }
            if s.troubled > 0 {
                write!(
                    f,
                    " in {} request(s), {} of them answered in the end by repeating the same key",
                    s.troubled, s.recovered
                )?;
            }
            writeln!(f)?;
        }
        let repeated = self
            .placed
            .iter()
            .filter(|p| p.intent.request.kind() == OpKind::Order && !p.failures.is_empty())
            .collect::<Vec<_>>();
        let answered = repeated.iter().filter(|p| p.intent.outcome.is_definite()).count();
        let key_broken = self.violations.iter().any(|v| v.invariant == "one-resource-per-key");
        writeln!(
            f,
            "  orders repeated with their key after a failure: {}, {answered} answered; one order per key: {}",
            repeated.len(),
            if key_broken { "BROKEN (below)" } else { "holds" }
        )?;
        let answers: Vec<String> =
            self.order_answers().iter().map(|((status, told), n)| format!("{status} {told}: {n}")).collect();
        writeln!(f, "  orders answered: {}", answers.join(", "))?;
        let (took, left) = &self.settled;
        writeln!(
            f,
            "  settled in {:.1}s{}",
            took.as_secs_f64(),
            if left.is_settled() { String::new() } else { format!(" — gave up with {left}") }
        )?;
        writeln!(f, "  stored: {}", self.stored)?;
        let clean = self.shutdown.iter().filter(|(_, t)| t.clean()).count();
        let last = self.shutdown.iter().map(|(_, t)| t.took).max().unwrap_or_default();
        writeln!(
            f,
            "  SIGTERM to all at the end: {clean} of {} exited 0, the last after {}",
            self.shutdown.len(),
            secs(last)
        )?;
        writeln!(f, "  logs: {}", c.cluster.log_dir.display())?;
        writeln!(
            f,
            "  invariants checked: per user balance = ledger sum = deposits − paid orders; every order decided, \
             notified, one letter of its kind; nothing pending; one order per key, its answer stored; SIGTERM exits 0"
        )?;
        write!(f, "{}", Grouped(&self.violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drain_is_the_charts() {
        let values = "probes:\n  readiness:\n    periodSeconds: 2\n    failureThreshold: 2\n\
                      shutdown:\n  drainMs: null\n  endpointPropagationSeconds: 3\n";
        assert_eq!(chart_drain(values), Ok(Duration::from_millis(7000)));
        let given = values.replace("drainMs: null", "drainMs: 9000");
        assert_eq!(chart_drain(&given), Ok(Duration::from_millis(9000)));
        let too_short = values.replace("drainMs: null", "drainMs: 4000");
        assert!(chart_drain(&too_short).is_err());
        // The template's defaults: 10 s × 3.
        assert_eq!(chart_drain("shutdown:\n  drainMs: null\n"), Ok(Duration::from_millis(30_000)));
    }

    #[test]
    fn the_repository_chart_gives_a_drain_past_the_probe() {
        let values = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/values.yaml")).unwrap();
        let drain = chart_drain(&values).unwrap();
        // HAProxy's checks notice a draining replica within 500 ms.
        assert!(drain > Duration::from_millis(500), "{drain:?}");
    }

    #[test]
    fn no_drain_means_zero() {
        let config = RollingConfig::new(Mode::NoDrain, 1, ClusterConfig::new("bin", "logs"));
        assert!(config.cluster.extra_env.contains(&("SHUTDOWN_DRAIN_MS".into(), "0".into())));
        assert_eq!(config.cluster.replicas, 2);
        let config = RollingConfig::new(Mode::Drain(Duration::from_millis(7000)), 1, ClusterConfig::new("b", "l"));
        assert!(config.cluster.extra_env.contains(&("SHUTDOWN_DRAIN_MS".into(), "7000".into())));
    }
}
