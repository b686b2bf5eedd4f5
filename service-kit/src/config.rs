//! Configuration from the environment. A bad value stops start-up with one
//! line naming the variable.

use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::{ServiceCredential, SigningKey};
use crate::db::DatabaseUrl;

#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn missing(name: &'static str) -> ConfigError {
        ConfigError { name, value: String::new(), reason: "must be set".into() }
    }
}

/// Reads `name`, or `default` when it is unset or empty.
pub fn var_or<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse(name, &v),
        _ => Ok(default),
    }
}

/// Reads `name`, which must be set.
pub fn required<T>(name: &'static str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse(name, &v),
        _ => Err(ConfigError::missing(name)),
    }
}

/// Reads `name` if set.
pub fn optional<T>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse(name, &v).map(Some),
        _ => Ok(None),
    }
}

fn parse<T>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value.trim().parse().map_err(|e: T::Err| ConfigError { name, value: value.to_owned(), reason: e.to_string() })
}

/// A duration written in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Millis(pub Duration);

impl FromStr for Millis {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Millis(Duration::from_millis(ms))),
            _ => Err("expected a positive number of milliseconds".into()),
        }
    }
}

/// A duration in milliseconds where 0 is meaningful ("not at all").
#[derive(Debug, Clone, Copy)]
pub struct MillisOrZero(pub Duration);

impl FromStr for MillisOrZero {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .map(|ms| MillisOrZero(Duration::from_millis(ms)))
            .map_err(|_| "expected a whole number of milliseconds, 0 or more".into())
    }
}

/// A peer's base URL: `http://host:port`, no trailing slash.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl FromStr for BaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Services talk plain HTTP inside the cluster; the client carries no
        // TLS backend, so an https:// peer would fail at the first call.
        if s.starts_with("https://") {
            return Err("https is not supported between services: use http://host:port".into());
        }
        let rest = s.strip_prefix("http://").ok_or("expected an http:// URL")?;
        if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
            return Err("expected http://host[:port]".into());
        }
        Ok(BaseUrl(s.trim_end_matches('/').to_owned()))
    }
}

/// What a process that runs all four services (the all-in-one) supplies
/// where the environment is silent: its own address for every peer, and the
/// credential and signing key it keeps under `./data/`. A service's own
/// binary has none: there the variables are required.
#[derive(Debug, Clone, Default)]
pub struct Fallbacks {
    pub peers: Option<BaseUrl>,
    pub credential: Option<ServiceCredential>,
    pub signing_key: Option<Arc<SigningKey>>,
}

impl Fallbacks {
    /// A peer's URL: `name`, else this process's own address, else required.
    pub fn peer(&self, name: &'static str) -> Result<BaseUrl, ConfigError> {
        match &self.peers {
            Some(url) => var_or(name, url.clone()),
            None => required(name),
        }
    }
}

/// What every service reads: where to listen, where its database is, how
/// big its pool is, how it stops, and the service credential.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub bind_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    /// `None`: the backend's default (see `DatabaseUrl::default_pool_size`).
    pub pool_size: Option<u32>,
    pub shutdown: ShutdownSettings,
    /// `INTERNAL_API_TOKEN`: sent on every call to another service, and the
    /// only key to this service's internal routes.
    pub credential: ServiceCredential,
}

impl CommonSettings {
    /// `default_sqlite` is used when `DATABASE_URL` is unset: the embedded default.
    pub fn from_env(default_sqlite: &str, fallbacks: &Fallbacks) -> Result<Self, ConfigError> {
        let credential = match (optional_secret("INTERNAL_API_TOKEN")?, &fallbacks.credential) {
            (Some(credential), _) => credential,
            (None, Some(credential)) => credential.clone(),
            (None, None) => return Err(ConfigError::missing("INTERNAL_API_TOKEN")),
        };
        Ok(CommonSettings {
            bind_addr: var_or("BIND_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            database_url: var_or("DATABASE_URL", default_sqlite.parse().expect("valid default"))?,
            pool_size: pool_size()?,
            shutdown: ShutdownSettings::from_env()?,
            credential,
        })
    }
}

/// Reads a secret: its value never appears in an error.
pub fn optional_secret<T>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|e: T::Err| ConfigError {
            name,
            value: "(hidden)".into(),
            reason: e.to_string(),
        }),
        _ => Ok(None),
    }
}

/// user-service's signing key, from the PEM file `name` names.
pub fn signing_key_file(name: &'static str) -> Result<Option<Arc<SigningKey>>, ConfigError> {
    let Some(path) = optional::<PathBuf>(name)? else {
        return Ok(None);
    };
    let fail = |reason: String| ConfigError { name, value: path.display().to_string(), reason };
    let pem = std::fs::read(&path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    SigningKey::from_pem(&pem).map(|key| Some(Arc::new(key))).map_err(|e| fail(crate::problem::chain(&e)))
}

/// What SIGTERM (or SIGINT) does: readiness turns 503 at once, the server
/// keeps serving for `drain` so that load balancers that poll readiness stop
/// sending before the listener closes, then it stops accepting and gives the
/// requests in flight (and background rounds) up to `timeout` to finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// `SHUTDOWN_DRAIN_MS`, default 0: a local run has no load balancer to wait for.
    pub drain: Duration,
    /// `SHUTDOWN_TIMEOUT_MS`, default 30000: the bound on finishing in-flight work.
    /// A request's own budget is 5 s by default, so 30 s only runs out on a hung peer.
    pub timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { drain: Duration::ZERO, timeout: Duration::from_secs(30) }
    }
}

impl ShutdownSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = ShutdownSettings::default();
        Ok(ShutdownSettings {
            drain: var_or("SHUTDOWN_DRAIN_MS", MillisOrZero(default.drain))?.0,
            timeout: var_or("SHUTDOWN_TIMEOUT_MS", Millis(default.timeout))?.0,
        })
    }
}

pub fn pool_size() -> Result<Option<u32>, ConfigError> {
    let size: Option<u32> = optional("DATABASE_POOL_SIZE")?;
    if size == Some(0) {
        return Err(ConfigError { name: "DATABASE_POOL_SIZE", value: "0".into(), reason: "must be at least 1".into() });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_the_trailing_slash() {
        let url: BaseUrl = "http://billing:8080/".parse().unwrap();
        assert_eq!(url.join("/x"), "http://billing:8080/x");
    }

    #[test]
    fn base_urls_need_a_scheme_and_a_host() {
        assert!("billing:8080".parse::<BaseUrl>().is_err());
        assert!("http://".parse::<BaseUrl>().is_err());
        assert!("ftp://x".parse::<BaseUrl>().is_err());
        assert!("https://billing".parse::<BaseUrl>().unwrap_err().contains("https is not supported"));
    }

    #[test]
    fn millis_are_positive() {
        assert!("0".parse::<Millis>().is_err());
        assert!("abc".parse::<Millis>().is_err());
        assert_eq!("250".parse::<Millis>().unwrap().0, Duration::from_millis(250));
    }

    #[test]
    fn a_drain_may_be_zero_but_not_negative_or_fractional() {
        assert_eq!("0".parse::<MillisOrZero>().unwrap().0, Duration::ZERO);
        assert_eq!("5000".parse::<MillisOrZero>().unwrap().0, Duration::from_secs(5));
        for bad in ["-1", "1.5", "5s", ""] {
            assert!(bad.parse::<MillisOrZero>().is_err(), "{bad}");
        }
    }
}
