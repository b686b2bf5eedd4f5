//! Calls to other services: one shared `reqwest::Client` per process, a
//! timeout on every call, the request id forwarded, and retries with
//! jittered exponential backoff only where repeating is safe.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::auth::ServiceCredential;
use crate::config::BaseUrl;
use crate::problem::Problem;
use crate::{metrics, request_id};

/// The process's one HTTP client. Plain HTTP inside the cluster; keep-alive
/// pools per peer.
pub fn client(call_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(call_timeout.min(Duration::from_secs(2)))
        .timeout(call_timeout)
        // Below the servers' keep-alive (75 s), so an idle connection is never
        // reused at the moment the server closes it.
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(128)
        .tcp_nodelay(true)
        .build()
        .expect("a plain HTTP client always builds")
}

/// Another service, as seen from this one.
#[derive(Clone, Debug)]
pub struct Peer {
    pub name: &'static str,
    base: BaseUrl,
    client: reqwest::Client,
    /// Sent as the bearer token of every call (the service credential).
    credential: Option<ServiceCredential>,
}

/// A peer's final answer: a success, or a refusal that is a business answer
/// (404, 409, 422) and must not be retried.
#[derive(Debug)]
pub enum Answer<T> {
    Success(StatusCode, T),
    Refused(Problem),
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{peer} is unreachable: {reason}")]
    Unreachable { peer: &'static str, reason: String },
    #[error("{peer} failed with {status}")]
    ServerError { peer: &'static str, status: StatusCode },
    #[error("{peer} sent an answer we cannot read: {reason}")]
    BadAnswer { peer: &'static str, reason: String },
    #[error("{peer} did not answer within the request's budget")]
    BudgetExhausted { peer: &'static str },
    /// A 4xx that is not a business answer (400, 401, 403, 405, 413, 415,
    /// 429, ...): this service's request or credentials are wrong, which
    /// repeating at once does not fix, but a fix of the deployment may.
    #[error("{peer} refused the call: {problem}")]
    Rejected { peer: &'static str, problem: Problem },
}

impl CallError {
    /// Transport errors, timeouts and 5xx may succeed next time.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Unreachable { .. } | CallError::ServerError { .. })
    }
}

impl Peer {
    pub fn new(name: &'static str, base: BaseUrl, client: reqwest::Client) -> Self {
        Peer { name, base, client, credential: None }
    }

    /// Calls carry the service credential from now on.
    pub fn with_credential(mut self, credential: ServiceCredential) -> Self {
        self.credential = Some(credential);
        self
    }

    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// A request to `path` carrying this task's request id and the service
    /// credential.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.request_without_credential(method, path);
        match &self.credential {
            Some(credential) => request.bearer_auth(credential.expose()),
            None => request,
        }
    }

    /// A request to an open route (the key set): the credential stays home.
    pub fn request_without_credential(&self, method: Method, path: &str) -> RequestBuilder {
        let id = request_id::current().unwrap_or_else(request_id::generate);
        self.client.request(method, self.base.join(path)).header(request_id::HEADER.as_str(), id)
    }

    /// Sends once and sorts the outcome into an answer or an error; the
    /// call's latency is recorded by outcome.
    pub async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<Answer<T>, CallError> {
        let started = std::time::Instant::now();
        let result = self.send(req).await;
        let outcome = match &result {
            Ok(Answer::Success(..)) => "success",
            Ok(Answer::Refused(_)) => "refused",
            Err(CallError::Rejected { .. }) => "rejected",
            Err(CallError::ServerError { .. }) => "server_error",
            Err(CallError::BadAnswer { .. }) => "unreadable",
            Err(CallError::Unreachable { .. } | CallError::BudgetExhausted { .. }) => "unreachable",
        };
        metrics::peer_call(self.name, outcome, started.elapsed());
        result
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<Answer<T>, CallError> {
        let peer = self.name;
        let res = req.send().await.map_err(|e| CallError::Unreachable { peer, reason: crate::problem::chain(&e) })?;
        let status = res.status();
        if status.is_server_error() {
            return Err(CallError::ServerError { peer, status });
        }
        let bytes =
            res.bytes().await.map_err(|e| CallError::Unreachable { peer, reason: crate::problem::chain(&e) })?;
        let unreadable = |e: serde_json::Error| CallError::BadAnswer { peer, reason: format!("{status}: {e}") };
        if status.is_success() {
            return Ok(Answer::Success(status, serde_json::from_slice(&bytes).map_err(unreadable)?));
        }
        let problem: Problem = serde_json::from_slice(&bytes).map_err(unreadable)?;
        if is_business_answer(status) {
            Ok(Answer::Refused(problem))
        } else {
            Err(CallError::Rejected { peer, problem })
        }
    }
}

/// The refusals that are a peer's answer to what was asked (SPEC: "a
/// business answer (404, 409, 422) is final").
fn is_business_answer(status: StatusCode) -> bool {
    matches!(status, StatusCode::NOT_FOUND | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY)
}

/// How hard to try one call before giving up for this request.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// All attempts and waits together stay within this.
    pub budget: Duration,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub max_retries: usize,
}

impl RetryPolicy {
    pub fn within(budget: Duration) -> Self {
        RetryPolicy { budget, min_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1), max_retries: 8 }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the budget is spent;
/// each retry is logged and counted (`arch_peer_retries_total`).
pub async fn with_retries<T, Fut>(
    policy: RetryPolicy,
    peer: &'static str,
    attempt: impl FnMut() -> Fut,
) -> Result<T, CallError>
where
    Fut: Future<Output = Result<T, CallError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_total_delay(Some(policy.budget));
    let retried = attempt.retry(backoff).sleep(tokio::time::sleep).when(CallError::is_retryable).notify(|e, wait| {
        log::warn!("{e}; retrying in {}ms", wait.as_millis());
        metrics::peer_retry(peer);
    });
    tokio::time::timeout(policy.budget, retried).await.unwrap_or(Err(CallError::BudgetExhausted { peer }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            budget: Duration::from_millis(500),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retries: 3,
        }
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let calls = AtomicUsize::new(0);
        let out = with_retries(quick(), "billing", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(CallError::ServerError { peer: "billing", status: StatusCode::BAD_GATEWAY })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn never_retries_an_unreadable_answer() {
        let calls = AtomicUsize::new(0);
        let out: Result<(), _> = with_retries(quick(), "billing", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CallError::BadAnswer { peer: "billing", reason: "x".into() })
        })
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_when_the_budget_is_spent() {
        let policy = RetryPolicy { budget: Duration::from_millis(50), ..quick() };
        let out: Result<(), _> = with_retries(policy, "billing", || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        })
        .await;
        assert!(matches!(out, Err(CallError::BudgetExhausted { .. })));
    }
}
