//! user-service's view of billing-service: opening an account.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use service_kit::peer::{self, Answer, CallError, Peer, RetryPolicy};

#[derive(Clone, Debug)]
pub struct BillingClient {
    pub peer: Peer,
    pub policy: RetryPolicy,
}

#[derive(Debug, Deserialize)]
struct Opened {
    #[allow(dead_code)]
    user_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenAccountError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("billing-service refused to open the account: {0}")]
    Refused(service_kit::Problem),
}

impl BillingClient {
    /// Opens the user's account (idempotent on billing's side), retrying
    /// transient failures within the policy's budget.
    pub async fn open_account(&self, user_id: i64) -> Result<(), OpenAccountError> {
        self.open_with(self.policy, user_id).await
    }

    /// One attempt's worth of budget, for background recovery.
    pub async fn open_with(&self, policy: RetryPolicy, user_id: i64) -> Result<(), OpenAccountError> {
        let answer = peer::with_retries(policy, self.peer.name, || {
            let req =
                self.peer.request(Method::POST, "/internal/billing/accounts").json(&json!({ "user_id": user_id }));
            self.peer.call::<Opened>(req)
        })
        .await?;
        match answer {
            Answer::Success(..) => Ok(()),
            Answer::Refused(problem) => Err(OpenAccountError::Refused(problem)),
        }
    }
}
