//! The four service binaries (`target/release/*-service`) as child
//! processes on fresh PostgreSQL databases, one per service, each replica on
//! its own loopback port: the cluster topology on one machine, with the
//! operations a fault test needs (SIGKILL, SIGSTOP/SIGCONT, SIGTERM, restart
//! on the same port and database).
//!
//! ```no_run
//! # async fn demo() -> Result<(), testkit::cluster::ClusterError> {
//! use testkit::cluster::{Cluster, ClusterConfig, ReplicaId, ServiceKind};
//! let cluster = Cluster::prepare(ClusterConfig::new("target/release", "tests/artifacts/demo"))?;
//! cluster.start_all().await?;
//! let billing = ReplicaId { service: ServiceKind::Billing, index: 0 };
//! cluster.pause(billing)?;
//! cluster.resume(billing)?;
//! let stopped = cluster.terminate(billing, std::time::Duration::from_secs(40)).await?;
//! assert_eq!(stopped.exit_code, Some(0));
//! cluster.start(billing).await?;
//! # Ok(()) }
//! ```
//!
//! Replicas: with `replicas > 1` every service runs that many processes on
//! one database, and the peers find each other through `Fronts::Given` (the
//! load balancer in front of each service, which the caller configures from
//! [`Cluster::replica_urls`] before [`Cluster::start_all`]).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use service_kit::auth::{ServiceCredential, SigningKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    User,
    Billing,
    Order,
    Notification,
}

impl ServiceKind {
    /// A service starts after the ones it calls.
    pub const START_ORDER: [ServiceKind; 4] =
        [ServiceKind::Notification, ServiceKind::Billing, ServiceKind::User, ServiceKind::Order];

    pub fn binary(self) -> &'static str {
        match self {
            ServiceKind::User => "user-service",
            ServiceKind::Billing => "billing-service",
            ServiceKind::Order => "order-service",
            ServiceKind::Notification => "notification-service",
        }
    }

    /// Short, for database names and log files.
    pub fn label(self) -> &'static str {
        match self {
            ServiceKind::User => "user",
            ServiceKind::Billing => "billing",
            ServiceKind::Order => "order",
            ServiceKind::Notification => "notification",
        }
    }

    /// The services this one calls.
    pub fn peers(self) -> &'static [ServiceKind] {
        match self {
            ServiceKind::User => &[ServiceKind::Billing],
            ServiceKind::Order => &[ServiceKind::User, ServiceKind::Billing, ServiceKind::Notification],
            ServiceKind::Billing | ServiceKind::Notification => &[],
        }
    }

    /// The variable a caller of this service reads its URL from.
    fn url_var(self) -> &'static str {
        match self {
            ServiceKind::User => "USER_SERVICE_URL",
            ServiceKind::Billing => "BILLING_SERVICE_URL",
            ServiceKind::Order => "ORDER_SERVICE_URL",
            ServiceKind::Notification => "NOTIFICATION_SERVICE_URL",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.binary())
    }
}

/// One process of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId {
    pub service: ServiceKind,
    pub index: usize,
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.service, self.index)
    }
}

/// The services' timing knobs (README's configuration table).
#[derive(Debug, Clone, Copy)]
pub struct ServiceTiming {
    /// `HTTP_TIMEOUT_MS`: per outgoing call.
    pub http_timeout: Duration,
    /// `ORDER_BUDGET_MS`: order-service answers 202 past it.
    pub order_budget: Duration,
    /// `REQUEST_BUDGET_MS`: user-service answers 503 past it.
    pub request_budget: Duration,
    /// `RECOVERY_INTERVAL_MS`: how often unfinished work is picked up.
    pub recovery_interval: Duration,
}

impl Default for ServiceTiming {
    fn default() -> Self {
        ServiceTiming {
            http_timeout: Duration::from_millis(500),
            order_budget: Duration::from_millis(3000),
            request_budget: Duration::from_millis(3000),
            recovery_interval: Duration::from_millis(500),
        }
    }
}

/// Where a service's callers send their requests.
#[derive(Debug, Clone)]
pub enum Fronts {
    /// Straight to the service's one replica.
    Direct,
    /// To these URLs (a load balancer per service, run by the caller).
    Given(BTreeMap<ServiceKind, String>),
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where the four service binaries are.
    pub bin_dir: PathBuf,
    /// Each replica's stdout and stderr go to `<log_dir>/<service>-<index>.log`.
    pub log_dir: PathBuf,
    /// Database names start with `<db_prefix>_<pid>_`, so stale ones of a
    /// run that died can be told apart and dropped.
    pub db_prefix: String,
    pub replicas: usize,
    pub fronts: Fronts,
    pub timing: ServiceTiming,
    /// `DATABASE_POOL_SIZE` of each replica (the server is shared: keep it small).
    pub pool_size: u32,
    pub rust_log: String,
    /// More variables for every replica.
    pub extra_env: Vec<(String, String)>,
    /// How long a replica may take to answer `GET /health/ready` with 200.
    pub ready_limit: Duration,
}

impl ClusterConfig {
    pub fn new(bin_dir: impl Into<PathBuf>, log_dir: impl Into<PathBuf>) -> ClusterConfig {
        ClusterConfig {
            bin_dir: bin_dir.into(),
            log_dir: log_dir.into(),
            db_prefix: "chaos".into(),
            replicas: 1,
            fronts: Fronts::Direct,
            timing: ServiceTiming::default(),
            pool_size: 4,
            rust_log: "info".into(),
            extra_env: Vec::new(),
            ready_limit: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
pub enum ClusterError {
    Config(String),
    Database(String),
    Spawn {
        replica: ReplicaId,
        reason: String,
    },
    /// The process ended before it became ready.
    Exited {
        replica: ReplicaId,
        status: String,
        log_tail: String,
    },
    NotReady {
        replica: ReplicaId,
        waited: Duration,
        log_tail: String,
    },
    Signal {
        replica: ReplicaId,
        signal: &'static str,
        reason: String,
    },
    NotRunning(ReplicaId),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Config(e) => write!(f, "cluster configuration: {e}"),
            ClusterError::Database(e) => write!(f, "database: {e}"),
            ClusterError::Spawn { replica, reason } => write!(f, "{replica} did not start: {reason}"),
            ClusterError::Exited { replica, status, log_tail } => {
                write!(f, "{replica} exited ({status}) before it was ready; its log ends:\n{log_tail}")
            }
            ClusterError::NotReady { replica, waited, log_tail } => {
                write!(f, "{replica} not ready after {waited:?}; its log ends:\n{log_tail}")
            }
            ClusterError::Signal { replica, signal, reason } => write!(f, "{signal} to {replica} failed: {reason}"),
            ClusterError::NotRunning(replica) => write!(f, "{replica} is not running"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// How a process ended after SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Termination {
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did (SIGKILL after the limit: 9).
    pub signal: Option<i32>,
    /// From SIGTERM to the exit.
    pub took: Duration,
    /// It did not exit within the limit and was SIGKILLed.
    pub forced: bool,
}

impl Termination {
    fn of(status: ExitStatus, took: Duration, forced: bool) -> Termination {
        Termination { exit_code: status.code(), signal: status.signal(), took, forced }
    }

    /// Exited 0 by itself, as SPEC.md wants of SIGTERM.
    pub fn clean(&self) -> bool {
        !self.forced && self.exit_code == Some(0)
    }
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.exit_code, self.signal) {
            (Some(code), _) => write!(f, "exit {code}")?,
            (None, Some(sig)) => write!(f, "killed by signal {sig}")?,
            (None, None) => write!(f, "unknown end")?,
        }
        write!(f, " after {:.2}s{}", self.took.as_secs_f64(), if self.forced { " (SIGKILL at the limit)" } else { "" })
    }
}

/// One process slot: its port and database stay, the process comes and goes.
struct Replica {
    addr: SocketAddr,
    state: Mutex<ReplicaState>,
}

#[derive(Default)]
struct ReplicaState {
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

/// The running system. Every operation takes `&self`, so a fault task and a
/// checker can share it (`Arc<Cluster>`). Dropping it SIGKILLs what still
/// runs and drops the databases.
pub struct Cluster {
    config: ClusterConfig,
    replicas: BTreeMap<ReplicaId, Replica>,
    fronts: BTreeMap<ServiceKind, String>,
    /// Declared after `replicas`: the processes die before their databases go.
    databases: Databases,
    probe: reqwest::Client,
    born: Instant,
    /// The run's service credential and user-service's signing key (a PEM
    /// file, 0600, in the log directory), as the chart's Secrets give them.
    credential: ServiceCredential,
    signing_key_file: PathBuf,
}

impl Cluster {
    /// Creates the databases and picks the ports; starts nothing.
    pub fn prepare(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        if config.replicas == 0 {
            return Err(ClusterError::Config("replicas must be at least 1".into()));
        }
        for kind in ServiceKind::START_ORDER {
            let bin = config.bin_dir.join(kind.binary());
            if !bin.is_file() {
                return Err(ClusterError::Config(format!("missing {} (cargo build --release)", bin.display())));
            }
        }
        std::fs::create_dir_all(&config.log_dir)
            .map_err(|e| ClusterError::Config(format!("log directory {}: {e}", config.log_dir.display())))?;
        let mut replicas = BTreeMap::new();
        for service in ServiceKind::START_ORDER {
            for index in 0..config.replicas {
                let addr = free_port().map_err(|e| ClusterError::Config(format!("no free port: {e}")))?;
                replicas.insert(ReplicaId { service, index }, Replica { addr, state: Mutex::default() });
            }
        }
        let fronts = match &config.fronts {
            Fronts::Direct if config.replicas > 1 => {
                return Err(ClusterError::Config("several replicas need Fronts::Given (one URL per service)".into()));
            }
            Fronts::Direct => replicas.iter().map(|(id, r)| (id.service, format!("http://{}", r.addr))).collect(),
            Fronts::Given(urls) => {
                for kind in ServiceKind::START_ORDER {
                    if !urls.contains_key(&kind) {
                        return Err(ClusterError::Config(format!("no front URL for {kind}")));
                    }
                }
                urls.clone()
            }
        };
        let databases = Databases::create(&config.db_prefix)?;
        let probe = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        let signing_key_file = config.log_dir.join("signing-key.pem");
        write_private(&signing_key_file, &SigningKey::generate().1)
            .map_err(|e| ClusterError::Config(format!("{}: {e}", signing_key_file.display())))?;
        let credential = ServiceCredential::generate();
        Ok(Cluster { config, replicas, fronts, databases, probe, born: Instant::now(), credential, signing_key_file })
    }

    /// [`Cluster::prepare`], after dropping the databases that runs with
    /// the same prefix left behind when they were killed (named on stderr).
    pub fn prepare_afresh(config: ClusterConfig) -> Result<Cluster, String> {
        let stale = drop_stale_databases(&config.db_prefix).map_err(|e| e.to_string())?;
        if !stale.is_empty() {
            eprintln!("dropped {} database(s) of runs that died: {}", stale.len(), stale.join(", "));
        }
        Cluster::prepare(config).map_err(|e| e.to_string())
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Every replica, services in start order.
    pub fn replica_ids(&self) -> Vec<ReplicaId> {
        let mut ids: Vec<ReplicaId> = self.replicas.keys().copied().collect();
        ids.sort_by_key(|id| (ServiceKind::START_ORDER.iter().position(|k| *k == id.service), id.index));
        ids
    }

    /// The replicas' own URLs (what a load balancer in front of them needs).
    pub fn replica_urls(&self, service: ServiceKind) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|(id, _)| id.service == service)
            .map(|(_, r)| format!("http://{}", r.addr))
            .collect()
    }

    pub fn replica_url(&self, id: ReplicaId) -> String {
        format!("http://{}", self.replica(id).addr)
    }

    /// The replica's own address (its port stays across restarts).
    pub fn replica_addr(&self, id: ReplicaId) -> SocketAddr {
        self.replica(id).addr
    }

    /// The URL clients and peers use for `service`.
    pub fn front_url(&self, service: ServiceKind) -> &str {
        &self.fronts[&service]
    }

    /// The service's database (for reading what it stored).
    pub fn database_url(&self, service: ServiceKind) -> &str {
        self.databases.url(service)
    }

    /// The four databases, as the invariants read them.
    pub fn database_urls(&self) -> crate::invariants::DatabaseUrls {
        crate::invariants::DatabaseUrls {
            users: self.database_url(ServiceKind::User).to_owned(),
            billing: self.database_url(ServiceKind::Billing).to_owned(),
            orders: self.database_url(ServiceKind::Order).to_owned(),
            notifications: self.database_url(ServiceKind::Notification).to_owned(),
        }
    }

    pub fn log_path(&self, id: ReplicaId) -> PathBuf {
        self.config.log_dir.join(format!("{}-{}.log", id.service.label(), id.index))
    }

    fn replica(&self, id: ReplicaId) -> &Replica {
        self.replicas.get(&id).unwrap_or_else(|| panic!("no replica {id}"))
    }

    /// Starts every replica, services in dependency order, each waited for
    /// until ready.
    pub async fn start_all(&self) -> Result<(), ClusterError> {
        for id in self.replica_ids() {
            self.start(id).await?;
        }
        Ok(())
    }

    /// Starts the replica's process (again) on its port and database and
    /// waits until it is ready; returns how long that took. A process that
    /// exits at once (its port not free yet) is tried again, three times.
    pub async fn start(&self, id: ReplicaId) -> Result<Duration, ClusterError> {
        let began = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.spawn(id)?;
            match self.wait_ready(id, self.config.ready_limit).await {
                Ok(_) => return Ok(began.elapsed()),
                Err(ClusterError::Exited { .. }) if attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(&self, id: ReplicaId) -> Result<(), ClusterError> {
        let replica = self.replica(id);
        let mut state = replica.state.lock().expect("replica state");
        if let Some(child) = state.child.as_mut()
            && child.try_wait().map(|s| s.is_none()).unwrap_or(false)
        {
            return Err(ClusterError::Spawn { replica: id, reason: "it is still running".into() });
        }
        state.starts += 1;
        let spawn_error = |e: std::io::Error| ClusterError::Spawn { replica: id, reason: e.to_string() };
        let mut log = OpenOptions::new().create(true).append(true).open(self.log_path(id)).map_err(spawn_error)?;
        writeln!(log, "==== {id} start #{} at +{:.1}s ====", state.starts, self.born.elapsed().as_secs_f64())
            .map_err(spawn_error)?;
        let err_log = log.try_clone().map_err(spawn_error)?;
        let child = Command::new(self.config.bin_dir.join(id.service.binary()))
            // Only what is set here: nothing leaks in from the caller's
            // environment (a stray *_SERVICE_URL, a DATABASE_URL).
            .env_clear()
            .envs(self.env_of(id))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(spawn_error)?;
        state.child = Some(child);
        state.paused = false;
        Ok(())
    }

    /// The environment a replica runs with (README's configuration table).
    pub fn env_of(&self, id: ReplicaId) -> Vec<(String, String)> {
        let ms = |d: Duration| d.as_millis().to_string();
        let t = &self.config.timing;
        let mut env = vec![
            ("BIND_ADDR".to_owned(), self.replica(id).addr.to_string()),
            ("DATABASE_URL".to_owned(), self.databases.url(id.service).to_owned()),
            ("DATABASE_POOL_SIZE".to_owned(), self.config.pool_size.to_string()),
            ("HTTP_TIMEOUT_MS".to_owned(), ms(t.http_timeout)),
            ("ORDER_BUDGET_MS".to_owned(), ms(t.order_budget)),
            ("REQUEST_BUDGET_MS".to_owned(), ms(t.request_budget)),
            ("RECOVERY_INTERVAL_MS".to_owned(), ms(t.recovery_interval)),
            ("RUST_LOG".to_owned(), self.config.rust_log.clone()),
        ];
        for peer in id.service.peers() {
            env.push((peer.url_var().to_owned(), self.fronts[peer].clone()));
        }
        env.push(("INTERNAL_API_TOKEN".to_owned(), self.credential.expose().to_owned()));
        match id.service {
            ServiceKind::User => {
                env.push(("AUTH_SIGNING_KEY_FILE".to_owned(), self.signing_key_file.display().to_string()));
            }
            // Where the keys that check tokens are published (fetched on
            // first use: no start-up order follows from it).
            ServiceKind::Billing | ServiceKind::Notification => {
                env.push((ServiceKind::User.url_var().to_owned(), self.fronts[&ServiceKind::User].clone()));
            }
            ServiceKind::Order => {}
        }
        env.extend(self.config.extra_env.iter().cloned());
        env
    }

    /// Waits until the replica answers `GET /health/ready` with 200; fails
    /// early when its process has exited.
    pub async fn wait_ready(&self, id: ReplicaId, limit: Duration) -> Result<Duration, ClusterError> {
        let began = Instant::now();
        let url = format!("{}/health/ready", self.replica_url(id));
        loop {
            if let Some(status) = self.exit_status(id) {
                return Err(ClusterError::Exited {
                    replica: id,
                    status: describe(status),
                    log_tail: self.log_tail(id, 15),
                });
            }
            if self.probe.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                return Ok(began.elapsed());
            }
            if began.elapsed() >= limit {
                return Err(ClusterError::NotReady { replica: id, waited: limit, log_tail: self.log_tail(id, 15) });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status once the process has ended (reaped), `None` while it
    /// runs or when it was never started.
    fn exit_status(&self, id: ReplicaId) -> Option<ExitStatus> {
        let mut state = self.replica(id).state.lock().expect("replica state");
        state.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Whether the replica's process is alive (paused counts as alive).
    pub fn is_running(&self, id: ReplicaId) -> bool {
        let mut state = self.replica(id).state.lock().expect("replica state");
        state.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn is_paused(&self, id: ReplicaId) -> bool {
        self.replica(id).state.lock().expect("replica state").paused
    }

    pub fn pid(&self, id: ReplicaId) -> Option<u32> {
        self.replica(id).state.lock().expect("replica state").child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process dies at once, whatever it was doing; reaped.
    pub fn kill(&self, id: ReplicaId) -> Result<(), ClusterError> {
        let mut state = self.replica(id).state.lock().expect("replica state");
        let child = state.child.as_mut().ok_or(ClusterError::NotRunning(id))?;
        let failed = |e: std::io::Error| ClusterError::Signal { replica: id, signal: "SIGKILL", reason: e.to_string() };
        child.kill().map_err(failed)?;
        child.wait().map_err(failed)?;
        state.paused = false;
        Ok(())
    }

    /// SIGSTOP: the process freezes with its sockets and database
    /// connections open (a hung process, a long GC pause, a node stall).
    pub fn pause(&self, id: ReplicaId) -> Result<(), ClusterError> {
        self.signal(id, "STOP")?;
        self.replica(id).state.lock().expect("replica state").paused = true;
        Ok(())
    }

    /// SIGCONT: the frozen process goes on.
    pub fn resume(&self, id: ReplicaId) -> Result<(), ClusterError> {
        self.signal(id, "CONT")?;
        self.replica(id).state.lock().expect("replica state").paused = false;
        Ok(())
    }

    /// SIGTERM, then waits up to `limit` for the exit (SIGKILL past it).
    pub async fn terminate(&self, id: ReplicaId, limit: Duration) -> Result<Termination, ClusterError> {
        let began = Instant::now();
        self.signal(id, "TERM")?;
        loop {
            if let Some(status) = self.exit_status(id) {
                return Ok(Termination::of(status, began.elapsed(), false));
            }
            if began.elapsed() >= limit {
                self.kill(id)?;
                let status = self.exit_status(id).ok_or(ClusterError::NotRunning(id))?;
                return Ok(Termination::of(status, began.elapsed(), true));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The standard library sends only SIGKILL; the others go through
    /// kill(1), which every base system has.
    fn signal(&self, id: ReplicaId, name: &'static str) -> Result<(), ClusterError> {
        let pid = self.pid(id).filter(|_| self.is_running(id)).ok_or(ClusterError::NotRunning(id))?;
        let signal = match name {
            "STOP" => "SIGSTOP",
            "CONT" => "SIGCONT",
            _ => "SIGTERM",
        };
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| ClusterError::Signal { replica: id, signal, reason: e.to_string() })?;
        if !status.status.success() {
            let reason = String::from_utf8_lossy(&status.stderr).trim().to_owned();
            return Err(ClusterError::Signal { replica: id, signal, reason });
        }
        Ok(())
    }

    /// SIGTERM to every running replica (resumed first if paused), callers
    /// before the services they call; each waited for up to `limit`.
    pub async fn shutdown(&self, limit: Duration) -> Vec<(ReplicaId, Termination)> {
        let mut ended = Vec::new();
        for id in self.replica_ids().into_iter().rev() {
            if !self.is_running(id) {
                continue;
            }
            if self.is_paused(id) {
                let _ = self.resume(id);
            }
            if let Ok(t) = self.terminate(id, limit).await {
                ended.push((id, t));
            }
        }
        ended
    }

    /// SIGTERM to every running replica at once (as a scale-down or an
    /// uninstall does), each waited for up to `limit` from the signal and
    /// SIGKILLed past it (or at once when the signal cannot be sent).
    pub async fn terminate_all(&self, limit: Duration) -> Vec<(ReplicaId, Termination)> {
        let began = Instant::now();
        let mut waiting: Vec<ReplicaId> = self.replica_ids().into_iter().filter(|id| self.is_running(*id)).collect();
        let mut unsignalled = Vec::new();
        for &id in &waiting {
            if self.is_paused(id) {
                let _ = self.resume(id);
            }
            if self.signal(id, "TERM").is_err() {
                unsignalled.push(id);
            }
        }
        let mut ended = Vec::new();
        while !waiting.is_empty() {
            let forced = began.elapsed() >= limit;
            waiting.retain(|&id| {
                let killed = (forced || unsignalled.contains(&id)) && self.exit_status(id).is_none();
                if killed {
                    let _ = self.kill(id);
                }
                let Some(status) = self.exit_status(id) else { return true };
                ended.push((id, Termination::of(status, began.elapsed(), killed)));
                false
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ended
    }

    /// The last `lines` lines of the replica's log.
    pub fn log_tail(&self, id: ReplicaId, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in self.replicas.values() {
            let mut state = replica.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(child) = state.child.as_mut()
                && let Ok(None) = child.try_wait()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown".into(),
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// One fresh PostgreSQL database per service, dropped with the cluster.
struct Databases {
    names: BTreeMap<ServiceKind, String>,
    urls: BTreeMap<ServiceKind, String>,
}

impl Databases {
    fn create(prefix: &str) -> Result<Databases, ClusterError> {
        valid_prefix(prefix)?;
        let mut admin = admin_connection()?;
        let run = format!("{prefix}_{}_{:08x}", std::process::id(), fastrand::u32(..));
        let mut dbs = Databases { names: BTreeMap::new(), urls: BTreeMap::new() };
        for kind in ServiceKind::START_ORDER {
            let name = format!("{run}_{}", kind.label());
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .map_err(|e| ClusterError::Database(format!("CREATE DATABASE {name}: {e}")))?;
            // No TLS on loopback: it would cost the services CPU the machine
            // is short of, and the cluster's PostgreSQL offers none either.
            dbs.urls.insert(kind, format!("{}/{name}?sslmode=disable", crate::pg_base()));
            dbs.names.insert(kind, name);
        }
        Ok(dbs)
    }

    fn url(&self, kind: ServiceKind) -> &str {
        &self.urls[&kind]
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        if let Ok(mut admin) = admin_connection() {
            for name in self.names.values() {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin);
            }
        }
    }
}

fn admin_connection() -> Result<PgConnection, ClusterError> {
    PgConnection::establish(&format!("{}/postgres", crate::pg_base()))
        .map_err(|e| ClusterError::Database(format!("cannot reach PostgreSQL at {}: {e}", crate::pg_base())))
}

fn valid_prefix(prefix: &str) -> Result<(), ClusterError> {
    let ok = !prefix.is_empty()
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && prefix.starts_with(|c: char| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Config(format!("database prefix {prefix:?}: lower-case letters, digits and _ only")))
    }
}

/// Drops the databases of earlier runs with this prefix whose process is
/// gone (killed before it could clean up); returns their names. A database
/// is ours only when its name is `<prefix>_<pid>_<8 hex>_<service>`.
pub fn drop_stale_databases(prefix: &str) -> Result<Vec<String>, ClusterError> {
    valid_prefix(prefix)?;
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut admin = admin_connection()?;
    let names: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database")
        .load(&mut admin)
        .map_err(|e| ClusterError::Database(e.to_string()))?;
    let mut dropped = Vec::new();
    for Name { datname } in names {
        let Some(pid) = owner_pid(prefix, &datname) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)"))
            .execute(&mut admin)
            .map_err(|e| ClusterError::Database(format!("DROP DATABASE {datname}: {e}")))?;
        dropped.push(datname);
    }
    Ok(dropped)
}

/// The pid in a database name made by [`Databases::create`].
fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('_')?;
    let mut parts = rest.splitn(3, '_');
    let pid = parts.next()?.parse().ok()?;
    let run = parts.next()?;
    let service = parts.next()?;
    let ours = run.len() == 8
        && run.chars().all(|c| c.is_ascii_hexdigit())
        && ServiceKind::START_ORDER.iter().any(|k| k.label() == service);
    ours.then_some(pid)
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_our_pattern_are_stale_candidates() {
        assert_eq!(owner_pid("chaos", "chaos_1234_0badf00d_billing"), Some(1234));
        assert_eq!(owner_pid("chaos", "chaos_1234_0badf00d_notification"), Some(1234));
        assert_eq!(owner_pid("chaos", "chaos_x_0badf00d_billing"), None);
        assert_eq!(owner_pid("chaos", "chaos_1234_0badf00d_ledger"), None);
        assert_eq!(owner_pid("chaos", "chaos_1234_short_billing"), None);
        assert_eq!(owner_pid("chaos", "chaosy_1234_0badf00d_billing"), None);
        assert_eq!(owner_pid("chaos", "t_billing_0123456789abcdef"), None);
    }

    #[test]
    fn a_prefix_must_be_a_plain_identifier() {
        assert!(valid_prefix("chaos").is_ok());
        assert!(valid_prefix("load_2").is_ok());
        assert!(valid_prefix("").is_err());
        assert!(valid_prefix("x; DROP DATABASE postgres").is_err());
        assert!(valid_prefix("Chaos").is_err());
    }

    #[test]
    fn peers_are_reached_through_their_fronts() {
        assert_eq!(ServiceKind::Order.peers().len(), 3);
        assert_eq!(ServiceKind::User.peers(), &[ServiceKind::Billing]);
        // Each service starts after the ones it calls.
        for (i, kind) in ServiceKind::START_ORDER.iter().enumerate() {
            for peer in kind.peers() {
                assert!(ServiceKind::START_ORDER[..i].contains(peer), "{kind} starts before {peer}");
            }
        }
    }
}
