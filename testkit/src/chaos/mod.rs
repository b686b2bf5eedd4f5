//! The seeded chaos soak: the four services on PostgreSQL ([`Cluster`]),
//! clients placing orders and deposits, registering users and cancelling
//! orders, and a fault
//! task killing, freezing and terminating random services meanwhile — all
//! drawn from one printed seed. Afterwards everything is let settle, every
//! request that got no definite answer is repeated with its key or
//! reference until it gets one, and every invariant is checked.
//!
//! `testkit/src/bin/chaos.rs` runs it; [`run`] is the whole soak.

pub mod driver;
pub mod faults;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ClusterConfig, ReplicaId, ServiceKind, Termination};
use crate::invariants::{self, DatabaseUrls, Expectations, Snapshot, Unfinished, Violation};
use driver::{Driver, Endpoints, Exchange, Intent, OpKind, Outcome, Phase, Request, Session};
use faults::{Disturbance, ServerErrorRules};
use schedule::{ClientPlan, FaultKind, FaultRanges, FaultSchedule, Operation, OperationMix};

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub seed: u64,
    /// How long the clients and the faults run.
    pub duration: Duration,
    /// Users the money moves between (created before the faults start).
    pub users: usize,
    /// Concurrent clients.
    pub clients: usize,
    pub mix: OperationMix,
    pub fault_ranges: FaultRanges,
    /// False: the same load without faults (a baseline).
    pub faults: bool,
    /// Every request's timeout.
    pub client_timeout: Duration,
    /// How long the recovery loops get to finish what is unfinished.
    pub settle_limit: Duration,
    /// How long indefinite requests are repeated.
    pub retry_limit: Duration,
    /// How long a SIGTERMed service may take to exit.
    pub sigterm_limit: Duration,
    pub cluster: ClusterConfig,
}

impl SoakConfig {
    pub fn new(seed: u64, cluster: ClusterConfig) -> SoakConfig {
        SoakConfig {
            seed,
            duration: Duration::from_secs(60),
            users: 30,
            clients: 8,
            mix: OperationMix::default(),
            fault_ranges: FaultRanges::default(),
            faults: true,
            client_timeout: Duration::from_secs(6),
            // Past user-service's 30 s before it takes over a pending user.
            settle_limit: Duration::from_secs(90),
            retry_limit: Duration::from_secs(90),
            sigterm_limit: Duration::from_secs(40),
            cluster,
        }
    }
}

/// Attempts and results of the repeat phase.
#[derive(Debug, Clone, Default)]
pub struct RetryFigures {
    pub requests: usize,
    pub attempts: usize,
    pub settled: usize,
    pub rounds: usize,
}

/// Everything a soak found out.
#[derive(Debug)]
pub struct SoakReport {
    pub seed: u64,
    pub users: usize,
    pub clients: usize,
    /// When the load began: the times in the report count from here.
    pub origin: Instant,
    pub load_time: Duration,
    pub disturbances: Vec<Disturbance>,
    pub shutdown: Vec<(ReplicaId, Termination)>,
    pub exchanges: Vec<Exchange>,
    pub intents: Vec<Intent>,
    /// Cancels sent for an order listed as `pending`: racing its payment.
    pub cancels_of_pending: usize,
    /// Requests still indefinite when the load ended, by kind.
    pub indefinite_after_load: BTreeMap<OpKind, usize>,
    pub retry: RetryFigures,
    /// How long each settling took, and what was left when it gave up.
    pub settling: Vec<(Duration, Unfinished)>,
    pub explained_5xx: BTreeMap<(ServiceKind, u16, ServiceKind), usize>,
    pub stored: Stored,
    pub violations: Vec<Violation>,
    pub log_dir: std::path::PathBuf,
}

/// Counts of what the services stored.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    pub users: usize,
    pub orders: usize,
    pub paid: usize,
    pub rejected: usize,
    pub cancelled: usize,
    pub ledger_entries: usize,
    pub letters: usize,
}

impl Stored {
    pub fn of(snapshot: &Snapshot) -> Stored {
        Stored {
            users: snapshot.users.len(),
            orders: snapshot.orders.len(),
            paid: snapshot.orders.iter().filter(|o| o.status == invariants::PAID).count(),
            rejected: snapshot.orders.iter().filter(|o| o.status == invariants::REJECTED).count(),
            cancelled: snapshot.orders.iter().filter(|o| o.status == invariants::CANCELLED).count(),
            ledger_entries: snapshot.ledger.len(),
            letters: snapshot.letters.len(),
        }
    }
}

impl Stored {
    /// `orders=… paid=… rejected=… cancelled=…`, for a line of figures.
    pub fn figures(&self) -> String {
        format!("orders={} paid={} rejected={} cancelled={}", self.orders, self.paid, self.rejected, self.cancelled)
    }
}

impl fmt::Display for Stored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users, {} orders ({} paid, {} rejected, {} cancelled), {} ledger entries, {} letters",
            self.users, self.orders, self.paid, self.rejected, self.cancelled, self.ledger_entries, self.letters
        )
    }
}

impl SoakReport {
    pub fn faults_by_kind(&self) -> BTreeMap<FaultKind, usize> {
        let mut n = BTreeMap::new();
        for d in &self.disturbances {
            *n.entry(d.step.kind).or_default() += 1;
        }
        n
    }

    pub fn load_requests(&self) -> usize {
        self.exchanges.iter().filter(|x| x.phase == Phase::Load).count()
    }

    pub fn indefinite_in_load(&self) -> usize {
        self.indefinite_after_load.values().sum()
    }

    /// One line of figures for tables (bench/chaos.sh reads it).
    pub fn figures_line(&self) -> String {
        let by = self.faults_by_kind();
        let count = |k| by.get(&k).copied().unwrap_or(0);
        format!(
            "chaos-figures seed={} seconds={:.0} faults={} kill={} pause={} terminate={} requests={} \
             indefinite={} retried_ok={} {} cancel_races={} violations={}",
            self.seed,
            self.load_time.as_secs_f64(),
            self.disturbances.len(),
            count(FaultKind::Kill),
            count(FaultKind::Pause),
            count(FaultKind::Terminate),
            self.load_requests(),
            self.indefinite_in_load(),
            self.retry.settled,
            self.stored.figures(),
            self.cancels_of_pending,
            self.violations.len()
        )
    }
}

/// The whole soak. `Err` only when the harness itself cannot go on (no
/// PostgreSQL, a service that does not start before any fault); everything
/// the services get wrong is in the report's violations.
pub async fn run(config: SoakConfig) -> Result<SoakReport, String> {
    let cluster = Arc::new(Cluster::prepare_afresh(config.cluster.clone())?);
    cluster.start_all().await.map_err(|e| e.to_string())?;
    let endpoints = Endpoints {
        users: cluster.front_url(ServiceKind::User).to_owned(),
        billing: cluster.front_url(ServiceKind::Billing).to_owned(),
        orders: cluster.front_url(ServiceKind::Order).to_owned(),
    };
    let urls = cluster.database_urls();
    let driver = Arc::new(Driver::new(endpoints, config.client_timeout));
    let (sessions, mut intents) = set_up_users(&driver, config.seed, config.users).await?;
    let sessions = Arc::new(sessions);

    // The load, with the faults beside it.
    let origin = Instant::now();
    let deadline = origin + config.duration;
    let fault_task = config.faults.then(|| {
        let schedule = FaultSchedule::new(config.seed, cluster.replica_ids(), config.fault_ranges.clone());
        tokio::spawn(faults::play(cluster.clone(), schedule, deadline, config.sigterm_limit))
    });
    let clients: Vec<_> = (0..config.clients)
        .map(|c| {
            let plan = ClientPlan::new(config.seed, c as u64, sessions.len(), config.mix.clone());
            tokio::spawn(client_loop(driver.clone(), sessions.clone(), plan, c, deadline))
        })
        .collect();
    let mut cancels_of_pending = 0;
    for client in clients {
        let (theirs, pending) = client.await.map_err(|e| format!("a client task failed: {e}"))?;
        intents.extend(theirs);
        cancels_of_pending += pending;
    }
    let disturbances = match fault_task {
        Some(task) => task.await.map_err(|e| format!("the fault task failed: {e}"))?,
        None => Vec::new(),
    };
    let load_time = origin.elapsed();
    let mut violations = faults::failed_restarts(&disturbances);
    if let Err(e) = faults::restore(&cluster).await {
        violations.push(Violation { invariant: "restarts", detail: format!("after the faults: {e}") });
    }

    let mut indefinite_after_load = BTreeMap::new();
    for intent in intents.iter().filter(|i| !i.outcome.is_definite()) {
        *indefinite_after_load.entry(intent.request.kind()).or_default() += 1;
    }
    // Settle, repeat what is open, settle what the repeats started.
    let mut settling = vec![settle(&urls, config.settle_limit).await?];
    let retry = retry_indefinite(&driver, &mut intents, config.retry_limit, config.clients).await;
    settling.push(settle(&urls, config.settle_limit).await?);

    let snapshot = {
        let urls = urls.clone();
        tokio::task::spawn_blocking(move || Snapshot::read(&urls))
            .await
            .map_err(|e| format!("reading the databases failed: {e}"))??
    };
    let expectations = expectations_of(&intents);
    violations.extend(invariants::check(&snapshot, &expectations));
    let exchanges = driver.exchanges();
    let rules = ServerErrorRules { margin: Duration::from_millis(1500), through_gateway: false };
    let judged = faults::judge_server_errors(&exchanges, &disturbances, rules, origin);
    violations.extend(judged.violations);

    let shutdown = cluster.shutdown(config.sigterm_limit).await;
    violations.extend(faults::judge_terminations(&disturbances, &shutdown));
    violations.sort();

    let stored = Stored::of(&snapshot);
    Ok(SoakReport {
        seed: config.seed,
        users: config.users,
        clients: config.clients,
        origin,
        load_time,
        disturbances,
        shutdown,
        exchanges,
        intents,
        cancels_of_pending,
        indefinite_after_load,
        retry,
        settling,
        explained_5xx: judged.explained,
        stored,
        violations,
        log_dir: config.cluster.log_dir.clone(),
    })
}

/// The users money moves between, signed up and signed in, each with a
/// first deposit (the seed's amounts). Nothing is failing yet, so each must
/// succeed (repeated only on a stray indefinite answer). The intents are
/// the sign-ups and deposits, for the invariants.
pub async fn set_up_users(driver: &Driver, seed: u64, users: usize) -> Result<(Vec<Session>, Vec<Intent>), String> {
    let mut sessions = Vec::new();
    let mut intents = Vec::new();
    let amounts = schedule::initial_deposits(seed, users);
    for (i, amount) in amounts.into_iter().enumerate() {
        let register = Request::Register { key: format!("setup-{i}"), username: format!("user{i}") };
        let outcome = until_definite(driver, &register).await;
        let Outcome::Definite(201, body) = &outcome else {
            return Err(format!("creating user{i} before any fault: {outcome:?}"));
        };
        let user_id = body["id"].as_i64().ok_or("a created user without an id")?;
        let session = sign_in(driver, user_id, &format!("user{i}")).await?;
        intents.push(Intent { request: register, first: outcome.clone(), outcome, attempts: 1 });
        let deposit = Request::Deposit { session: session.clone(), reference: format!("init-{i}"), amount };
        let outcome = until_definite(driver, &deposit).await;
        if !matches!(outcome, Outcome::Definite(200, _)) {
            return Err(format!("the first deposit of user{i}, before any fault: {outcome:?}"));
        }
        intents.push(Intent { request: deposit, first: outcome.clone(), outcome, attempts: 1 });
        sessions.push(session);
    }
    Ok((sessions, intents))
}

/// Signs `username` in (before any fault, repeated on a stray failure);
/// the session carries the token from then on.
async fn sign_in(driver: &Driver, user_id: i64, username: &str) -> Result<Session, String> {
    let mut last = String::new();
    for _ in 0..20 {
        match driver.sign_in(username, driver::PASSWORD).await {
            Ok(token) => return Ok(Session { user_id, bearer: Some(token) }),
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    Err(format!("signing {username} in before any fault: {last}"))
}

async fn until_definite(driver: &Driver, request: &Request) -> Outcome {
    let mut outcome = driver.send(request, Phase::Setup).await;
    for _ in 0..20 {
        if outcome.is_definite() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        outcome = driver.send(request, Phase::Setup).await;
    }
    outcome
}

/// The `n`th request of `client` for `operation`, with a key or reference
/// of its own. `None` for a cancel: which order it cancels is looked up
/// ([`order_to_cancel`]).
pub fn request_for(operation: Operation, sessions: &[Session], client: usize, n: usize) -> Option<Request> {
    Some(match operation {
        Operation::Deposit { user, amount } => {
            Request::Deposit { session: sessions[user].clone(), reference: format!("dep-{client}-{n}"), amount }
        }
        Operation::Order { user, price } => {
            Request::Order { session: sessions[user].clone(), key: format!("ord-{client}-{n}"), price }
        }
        Operation::Register => {
            Request::Register { key: format!("reg-{client}-{n}"), username: format!("c{client}n{n}") }
        }
        Operation::Cancel { .. } => return None,
    })
}

/// Which of a user's orders (newest first, `(id, status)`) a cancel goes
/// to: the newest `pending` one, else the `recent`-th newest (fewer: the
/// oldest); and whether it was pending.
pub fn order_to_cancel(orders: &[(i64, String)], recent: usize) -> Option<(i64, bool)> {
    if let Some((id, _)) = orders.iter().find(|(_, status)| status == "pending") {
        return Some((*id, true));
    }
    orders.get(recent).or(orders.last()).map(|(id, _)| (*id, false))
}

/// The cancel `operation` calls for, after listing the user's orders;
/// `None` when there is none to cancel or the list gets no answer. The
/// flag: the order was pending when it was listed.
async fn cancel_for(driver: &Driver, operation: Operation, sessions: &[Session]) -> Option<(Request, bool)> {
    let Operation::Cancel { user, recent } = operation else { return None };
    let session = &sessions[user];
    let orders = driver.orders_of(session, Phase::Load).await?;
    let (order_id, pending) = order_to_cancel(&orders, recent)?;
    Some((Request::Cancel { session: session.clone(), order_id }, pending))
}

/// One client: its seeded operations, one after another, until `deadline`;
/// what it asked and was answered, and how many of its cancels went to a
/// pending order.
async fn client_loop(
    driver: Arc<Driver>,
    sessions: Arc<Vec<Session>>,
    mut plan: ClientPlan,
    client: usize,
    deadline: Instant,
) -> (Vec<Intent>, usize) {
    let mut intents = Vec::new();
    let mut cancels_of_pending = 0;
    let mut n = 0;
    while Instant::now() < deadline {
        let operation = plan.next_operation();
        let request = match request_for(operation, &sessions, client, n) {
            Some(request) => request,
            None => match cancel_for(&driver, operation, &sessions).await {
                Some((request, pending)) => {
                    cancels_of_pending += usize::from(pending);
                    request
                }
                None => {
                    tokio::time::sleep(plan.pause()).await;
                    continue;
                }
            },
        };
        n += 1;
        let outcome = driver.send(&request, Phase::Load).await;
        // Drawn whatever the answer, so the plan does not depend on timing.
        let (pause, backoff) = (plan.pause(), plan.backoff());
        // A client that got no answer waits a little before its next
        // request, as a real one would, instead of hammering a dead port.
        let wait = if outcome.is_definite() { pause } else { pause + backoff };
        intents.push(Intent { request, first: outcome.clone(), outcome, attempts: 1 });
        tokio::time::sleep(wait).await;
    }
    (intents, cancels_of_pending)
}

/// Waits (bounded) until the recovery loops have nothing left to do;
/// returns how long that took and what was left.
pub async fn settle(urls: &DatabaseUrls, limit: Duration) -> Result<(Duration, Unfinished), String> {
    let began = Instant::now();
    loop {
        let read = urls.clone();
        let left = tokio::task::spawn_blocking(move || Unfinished::read(&read))
            .await
            .map_err(|e| format!("reading what is unfinished failed: {e}"))??;
        if left.is_settled() || began.elapsed() >= limit {
            return Ok((began.elapsed(), left));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Repeats every request that got no definite answer, with its key or
/// reference, in rounds (`workers` at a time) until each has one or
/// `limit` passes.
async fn retry_indefinite(
    driver: &Arc<Driver>,
    intents: &mut [Intent],
    limit: Duration,
    workers: usize,
) -> RetryFigures {
    let deadline = Instant::now() + limit;
    let mut figures = RetryFigures {
        requests: intents.iter().filter(|i| !i.outcome.is_definite()).count(),
        ..RetryFigures::default()
    };
    loop {
        let open: Vec<usize> = (0..intents.len()).filter(|&i| !intents[i].outcome.is_definite()).collect();
        if open.is_empty() || Instant::now() >= deadline {
            break;
        }
        figures.rounds += 1;
        for chunk in open.chunks(workers.max(1)) {
            if Instant::now() >= deadline {
                break;
            }
            let sent: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let (driver, request) = (driver.clone(), intents[i].request.clone());
                    (i, tokio::spawn(async move { driver.send(&request, Phase::Retry).await }))
                })
                .collect();
            for (i, task) in sent {
                if let Ok(outcome) = task.await {
                    figures.attempts += 1;
                    intents[i].attempts += 1;
                    if outcome.is_definite() {
                        figures.settled += 1;
                    }
                    intents[i].outcome = outcome;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    figures
}

/// What the invariants expect of the store, from every request the
/// clients made (all of them: the expectations are complete).
pub fn expectations_of(intents: &[Intent]) -> Expectations {
    let mut e = Expectations { complete: true, ..Expectations::default() };
    for intent in intents {
        let answer = intent.outcome.answer();
        match &intent.request {
            Request::Deposit { session, reference, amount } => e.deposits.push(invariants::DepositMade {
                user_id: session.user_id,
                reference: reference.clone(),
                amount: *amount,
                answer,
            }),
            Request::Order { session, key, price } => e.orders.push(invariants::OrderPlaced {
                user_id: session.user_id,
                key: key.clone(),
                price: *price,
                answer,
            }),
            Request::Register { key, username } => e.registrations.push(invariants::UserRegistered {
                key: key.clone(),
                username: username.clone(),
                answer,
            }),
            Request::Cancel { session, order_id } => {
                e.cancels.push(invariants::CancelAsked { user_id: session.user_id, order_id: *order_id, answer })
            }
        }
    }
    e
}

/// How an exchange ended, for the summary.
fn outcome_label(x: &Exchange) -> String {
    match (&x.indefinite, x.status) {
        (Some(why), _) => why.name(),
        (None, Some(status)) => format!("{status}"),
        (None, None) => "?".into(),
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos soak, seed {}: {:.1}s of load, {} users, {} clients",
            self.seed,
            self.load_time.as_secs_f64(),
            self.users,
            self.clients
        )?;
        let by_kind = self.faults_by_kind();
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
        let mut by_service: BTreeMap<ServiceKind, usize> = BTreeMap::new();
        for d in &self.disturbances {
            *by_service.entry(d.step.target.service).or_default() += 1;
        }
        let services: Vec<String> = by_service.iter().map(|(s, n)| format!("{} {n}", s.label())).collect();
        writeln!(
            f,
            "  faults: {} ({}); by service: {}",
            self.disturbances.len(),
            kinds.join(", "),
            services.join(", ")
        )?;
        let terms: Vec<&Termination> = self.disturbances.iter().filter_map(|d| d.termination.as_ref()).collect();
        if let Some(slowest) = terms.iter().map(|t| t.took).max() {
            let clean = terms.iter().filter(|t| t.clean()).count();
            writeln!(
                f,
                "  SIGTERM under load: {} exited 0 of {}, slowest {:.2}s",
                clean,
                terms.len(),
                slowest.as_secs_f64()
            )?;
        }
        if let Some(slowest) = self.disturbances.iter().filter_map(|d| d.restart).max() {
            writeln!(f, "  restarts: slowest to ready {:.2}s", slowest.as_secs_f64())?;
        }
        for d in &self.disturbances {
            let at = |i: Instant| i.saturating_duration_since(self.origin).as_secs_f64();
            let mut line = format!(
                "    +{:.1}s {} {} (hold {:.2}s)",
                at(d.from),
                d.step.target,
                d.step.kind.name(),
                d.step.hold.as_secs_f64()
            );
            if let Some(t) = d.termination {
                line.push_str(&format!(", {t}"));
            }
            if let Some(r) = d.restart {
                line.push_str(&format!(", ready {:.2}s after the restart", r.as_secs_f64()));
            }
            line.push_str(&format!(", back at +{:.1}s", at(d.until)));
            if let Some(e) = &d.error {
                line.push_str(&format!(", FAILED: {e}"));
            }
            writeln!(f, "{line}")?;
        }
        for phase in [Phase::Load, Phase::Retry] {
            let mut by: BTreeMap<(OpKind, String), usize> = BTreeMap::new();
            for x in self.exchanges.iter().filter(|x| x.phase == phase) {
                *by.entry((x.kind, outcome_label(x))).or_default() += 1;
            }
            let total: usize = by.values().sum();
            writeln!(f, "  requests ({phase:?} phase): {total}")?;
            for kind in OpKind::ALL {
                let parts: Vec<String> =
                    by.iter().filter(|((k, _), _)| *k == kind).map(|((_, label), n)| format!("{label}: {n}")).collect();
                if !parts.is_empty() {
                    writeln!(f, "    {:<8} {}", kind.name(), parts.join(", "))?;
                }
            }
        }
        let open: Vec<String> = self.indefinite_after_load.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
        writeln!(
            f,
            "  indefinite after the load: {} ({}); repeated in {} round(s), {} attempt(s): {} got a definite answer",
            self.indefinite_in_load(),
            if open.is_empty() { "none".into() } else { open.join(", ") },
            self.retry.rounds,
            self.retry.attempts,
            self.retry.settled
        )?;
        for (i, (took, left)) in self.settling.iter().enumerate() {
            let when = if i == 0 { "after the load" } else { "after the repeats" };
            writeln!(
                f,
                "  settled {when} in {:.1}s{}",
                took.as_secs_f64(),
                if left.is_settled() { String::new() } else { format!(" — gave up with {left}") }
            )?;
        }
        if !self.explained_5xx.is_empty() {
            let parts: Vec<String> = self
                .explained_5xx
                .iter()
                .map(|((answered, status, down), n)| match answered == down {
                    true => format!("{n}× {status} from {} while it was frozen", answered.label()),
                    false => format!("{n}× {status} from {} while {} was down", answered.label(), down.label()),
                })
                .collect();
            writeln!(f, "  5xx explained by a fault: {}", parts.join("; "))?;
        }
        writeln!(f, "  cancels sent for an order listed as pending (racing its payment): {}", self.cancels_of_pending)?;
        writeln!(f, "  stored: {}", self.stored)?;
        writeln!(f, "  service logs: {}", self.log_dir.display())?;
        write!(f, "{}", invariants::Grouped(&self.violations))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_goes_to_the_newest_pending_order_else_the_drawn_one() {
        let listed = |s: &[(i64, &str)]| s.iter().map(|(id, st)| (*id, st.to_string())).collect::<Vec<_>>();
        let orders = listed(&[(9, "paid"), (8, "pending"), (7, "pending"), (6, "rejected")]);
        assert_eq!(order_to_cancel(&orders, 3), Some((8, true)));
        let orders = listed(&[(9, "paid"), (8, "cancelled"), (7, "rejected")]);
        assert_eq!(order_to_cancel(&orders, 1), Some((8, false)));
        assert_eq!(order_to_cancel(&orders, 3), Some((7, false)));
        assert_eq!(order_to_cancel(&[], 0), None);
    }
}
