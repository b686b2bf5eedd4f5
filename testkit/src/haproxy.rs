//! HAProxy (Debian's `haproxy`) as the Kubernetes Services in front of a
//! [`Cluster`]'s replicas: one listener per service, round robin over its
//! replicas, each checked with `GET /health/ready` every 500 ms, out of
//! rotation after one failed check and back after two good ones, with
//! `retries 0` and no redispatch: kube-proxy follows readiness and never
//! retries, and with HAProxy's default retries a restart's refused
//! connections would be retried away instead of measured. It runs as a
//! child process with a config written here (`haproxy -f FILE -db`); its
//! stats page says which replica is in rotation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ReplicaId, ServiceKind, free_port};

/// One Service: where it listens and the replicas behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    pub servers: Vec<(String, SocketAddr)>,
}

impl Listener {
    /// A listener per service of `cluster`, each at its address in `fronts`,
    /// named after the service, its servers after the replicas
    /// ([`server_name`]).
    pub fn for_cluster(cluster: &Cluster, fronts: &BTreeMap<ServiceKind, SocketAddr>) -> Vec<Listener> {
        ServiceKind::START_ORDER
            .iter()
            .map(|&service| Listener {
                name: service.binary().to_owned(),
                bind: fronts[&service],
                servers: cluster
                    .replica_ids()
                    .into_iter()
                    .filter(|id| id.service == service)
                    .map(|id| (server_name(id), cluster.replica_addr(id)))
                    .collect(),
            })
            .collect()
    }
}

/// The HAProxy server that stands for a replica.
pub fn server_name(id: ReplicaId) -> String {
    format!("{}-{}", id.service.label(), id.index)
}

/// The configuration: the listeners and a stats page at `stats`.
pub fn config(listeners: &[Listener], stats: SocketAddr) -> String {
    let mut out = String::from(
        "# Written by testkit::haproxy: the Services in front of the replicas.\n\
         global\n  log stdout format raw local0 info\n\
         defaults\n  mode http\n  log global\n  option httplog\n\
         \x20 timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 # kube-proxy does not retry and sends nothing elsewhere: neither does this.\n  retries 0\n",
    );
    // Polled every 20 ms while a replica comes and goes: not worth a log line each.
    let _ = write!(out, "listen stats\n  bind {stats}\n  no log\n  stats enable\n  stats uri /\n");
    for listener in listeners {
        let _ = write!(
            out,
            "listen {}\n  bind {}\n  balance roundrobin\n  option httpchk GET /health/ready\n",
            listener.name, listener.bind
        );
        for (name, addr) in &listener.servers {
            let _ = writeln!(out, "  server {name} {addr} check inter 500ms fall 1 rise 2");
        }
    }
    out
}

/// A server as the stats page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerState {
    pub listener: String,
    pub server: String,
    /// `UP`, `DOWN`, `DOWN 1/2` (one good check of the two it needs), ...
    pub status: String,
}

impl ServerState {
    /// Requests are sent to it (`UP`, or `UP 1/2` on its way down but not
    /// down yet).
    pub fn in_rotation(&self) -> bool {
        self.status.starts_with("UP")
    }
}

/// The servers in the stats page's CSV (`<stats>/;csv`); the columns are
/// found by the header's names.
pub fn parse_stats(csv: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = csv.lines();
    let header: Vec<&str> =
        lines.next().and_then(|h| h.strip_prefix("# ")).ok_or("stats CSV without its header")?.split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("stats CSV without {name}"));
    let (px, sv, status) = (column("pxname")?, column("svname")?, column("status")?);
    let mut servers = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().ok_or(format!("short stats line: {line}"));
        if matches!(field(sv)?, "FRONTEND" | "BACKEND") {
            continue;
        }
        servers.push(ServerState {
            listener: field(px)?.to_owned(),
            server: field(sv)?.to_owned(),
            status: field(status)?.to_owned(),
        });
    }
    Ok(servers)
}

/// A running HAProxy; dropping it stops the process.
pub struct Haproxy {
    child: Mutex<Child>,
    stats_url: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Haproxy {
    /// Writes `<dir>/haproxy.cfg`, has HAProxy check it, starts it (its log:
    /// `<dir>/haproxy.log`) and waits until its stats page answers.
    pub async fn start(listeners: &[Listener], dir: &Path) -> Result<Haproxy, String> {
        let stats = free_port().map_err(|e| format!("no free port for HAProxy's stats: {e}"))?;
        let config_path = dir.join("haproxy.cfg");
        std::fs::write(&config_path, config(listeners, stats))
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&config_path)
            .output()
            .map_err(|e| format!("haproxy cannot be run (apt-get install haproxy): {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "haproxy -c refuses {}: {}",
                config_path.display(),
                String::from_utf8_lossy(&check.stderr).trim()
            ));
        }
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&config_path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("haproxy did not start: {e}"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| format!("an HTTP client for the stats page: {e}"))?;
        let haproxy = Haproxy { child: Mutex::new(child), stats_url: format!("http://{stats}/;csv"), http, log };
        let began = Instant::now();
        while let Err(e) = haproxy.servers().await {
            if began.elapsed() > Duration::from_secs(10) || haproxy.exited() {
                return Err(format!(
                    "HAProxy's stats page does not answer ({e}); its log ends:\n{}",
                    haproxy.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(haproxy)
    }

    fn exited(&self) -> bool {
        self.child.lock().expect("haproxy child").try_wait().ok().flatten().is_some()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Every server's state now.
    pub async fn servers(&self) -> Result<Vec<ServerState>, String> {
        let res = self.http.get(&self.stats_url).send().await.map_err(|e| e.to_string())?;
        parse_stats(&res.text().await.map_err(|e| e.to_string())?)
    }

    /// Waits until `server` of `listener` is in rotation (`true`) or out of
    /// it (`false`); how long that took, polled every 20 ms.
    pub async fn wait_for(
        &self,
        listener: &str,
        server: &str,
        in_rotation: bool,
        limit: Duration,
    ) -> Result<Duration, String> {
        let began = Instant::now();
        loop {
            let servers = self.servers().await?;
            let state = servers
                .iter()
                .find(|s| s.listener == listener && s.server == server)
                .ok_or(format!("HAProxy has no server {server} in {listener}"))?;
            if state.in_rotation() == in_rotation {
                return Ok(began.elapsed());
            }
            if began.elapsed() >= limit {
                let want = if in_rotation { "back in rotation" } else { "out of rotation" };
                return Err(format!("{listener}/{server} not {want} after {limit:?} (status {})", state.status));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every server is in rotation.
    pub async fn wait_all_in_rotation(&self, limit: Duration) -> Result<(), String> {
        let began = Instant::now();
        loop {
            let servers = self.servers().await?;
            let out: Vec<String> = servers
                .iter()
                .filter(|s| !s.in_rotation() && s.listener != "stats")
                .map(|s| format!("{}/{} {}", s.listener, s.server, s.status))
                .collect();
            if out.is_empty() {
                return Ok(());
            }
            if began.elapsed() >= limit {
                return Err(format!("not in rotation after {limit:?}: {}", out.join(", ")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_checks_readiness_and_never_retries() {
        let listener = Listener {
            name: "order-service".into(),
            bind: "127.0.0.1:9000".parse().unwrap(),
            servers: vec![
                ("order-0".into(), "127.0.0.1:9001".parse().unwrap()),
                ("order-1".into(), "127.0.0.1:9002".parse().unwrap()),
            ],
        };
        let cfg = config(&[listener], "127.0.0.1:9100".parse().unwrap());
        assert!(cfg.contains("  retries 0\n"));
        assert!(!cfg.contains("redispatch"));
        assert!(cfg.contains("listen order-service\n  bind 127.0.0.1:9000\n  balance roundrobin\n"));
        assert!(cfg.contains("  option httpchk GET /health/ready\n"));
        assert!(cfg.contains("  server order-0 127.0.0.1:9001 check inter 500ms fall 1 rise 2\n"));
        assert!(cfg.contains("  server order-1 127.0.0.1:9002 check inter 500ms fall 1 rise 2\n"));
        assert!(cfg.contains("listen stats\n  bind 127.0.0.1:9100\n"));
    }

    #[test]
    fn the_stats_page_says_who_is_in_rotation() {
        let csv = "# pxname,svname,qcur,status,weight\n\
                   stats,FRONTEND,,OPEN,\n\
                   order-service,FRONTEND,,OPEN,\n\
                   order-service,order-0,0,UP,1\n\
                   order-service,order-1,0,DOWN 1/2,1\n\
                   billing-service,billing-0,0,UP 1/2,1\n\
                   order-service,BACKEND,0,UP,2\n";
        let servers = parse_stats(csv).unwrap();
        let seen: Vec<(&str, bool)> = servers.iter().map(|s| (s.server.as_str(), s.in_rotation())).collect();
        assert_eq!(seen, [("order-0", true), ("order-1", false), ("billing-0", true)]);
        assert!(parse_stats("pxname,svname\n").is_err());
        assert!(parse_stats("# pxname,svname\nx,y\n").is_err());
    }
}
