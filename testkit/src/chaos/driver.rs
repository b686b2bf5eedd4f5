//! The clients' side of a soak: the requests (each with its
//! `Idempotency-Key` or `reference`, so it can be repeated), their sorting
//! into definite and indefinite answers, and a log of every exchange.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::RequestBuilder;
use serde_json::{Value, json};

use service_kit::problem::chain;

use crate::cluster::ServiceKind;
use crate::invariants::Answer;

/// Where the clients send each service's requests.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub users: String,
    pub billing: String,
    pub orders: String,
}

/// A user as a client acts for it: every request on its behalf carries the
/// token its sign-in gave ([`Session::authorize`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub user_id: i64,
    pub bearer: Option<String>,
}

impl Session {
    pub fn anonymous(user_id: i64) -> Session {
        Session { user_id, bearer: None }
    }

    pub fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Every user's password (the soak is about money and letters, not about
/// guessing).
pub const PASSWORD: &str = "chaos soak password";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    Deposit,
    Order,
    Register,
    Cancel,
    /// `GET /orders`: how a client finds the order it cancels (never
    /// repeated, not an [`Intent`]).
    List,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [OpKind::Deposit, OpKind::Order, OpKind::Register, OpKind::Cancel, OpKind::List];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Deposit => "deposit",
            OpKind::Order => "order",
            OpKind::Register => "register",
            OpKind::Cancel => "cancel",
            OpKind::List => "list",
        }
    }
}

/// A request that can be sent again as it was (same key, same reference,
/// same body): what makes retrying an indefinite answer safe. A cancel
/// needs none: cancelling a cancelled order changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Deposit { session: Session, reference: String, amount: i64 },
    Order { session: Session, key: String, price: i64 },
    Register { key: String, username: String },
    Cancel { session: Session, order_id: i64 },
}

impl Request {
    pub fn kind(&self) -> OpKind {
        match self {
            Request::Deposit { .. } => OpKind::Deposit,
            Request::Order { .. } => OpKind::Order,
            Request::Register { .. } => OpKind::Register,
            Request::Cancel { .. } => OpKind::Cancel,
        }
    }

    /// The service that answers it.
    pub fn service(&self) -> ServiceKind {
        match self {
            Request::Deposit { .. } => ServiceKind::Billing,
            Request::Order { .. } | Request::Cancel { .. } => ServiceKind::Order,
            Request::Register { .. } => ServiceKind::User,
        }
    }

    fn build(&self, http: &reqwest::Client, at: &Endpoints) -> RequestBuilder {
        match self {
            Request::Deposit { session, reference, amount } => session.authorize(
                http.post(format!("{}/billing/accounts/{}/deposit", at.billing, session.user_id))
                    .json(&json!({ "amount": amount, "reference": reference })),
            ),
            Request::Order { session, key, price } => session.authorize(
                http.post(format!("{}/orders", at.orders))
                    .header("Idempotency-Key", key)
                    .json(&json!({ "user_id": session.user_id, "price": price })),
            ),
            Request::Register { key, username } => {
                http.post(format!("{}/users", at.users)).header("Idempotency-Key", key).json(
                    &json!({ "username": username, "email": format!("{username}@example.com"), "password": PASSWORD }),
                )
            }
            Request::Cancel { session, order_id } => {
                session.authorize(http.post(format!("{}/orders/{order_id}/cancel", at.orders)))
            }
        }
    }
}

/// Why an answer says nothing about whether the request took effect.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Indefinite {
    /// The client's timeout ran out.
    Timeout,
    /// No answer: refused, reset, closed.
    Transport,
    /// A 5xx.
    ServerError(u16),
    /// 409 `request-in-progress`: the first request with the key is not over.
    InProgress,
}

impl Indefinite {
    pub fn name(&self) -> String {
        match self {
            Indefinite::Timeout => "timeout".into(),
            Indefinite::Transport => "transport error".into(),
            Indefinite::ServerError(status) => format!("{status}"),
            Indefinite::InProgress => "409 request-in-progress".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Definite(u16, Value),
    Indefinite(Indefinite, String),
}

impl Outcome {
    pub fn is_definite(&self) -> bool {
        matches!(self, Outcome::Definite(..))
    }

    /// As the invariants take it.
    pub fn answer(&self) -> Answer {
        match self {
            Outcome::Definite(status, body) => Answer::Definite(*status, body.clone()),
            Outcome::Indefinite(why, detail) => Answer::Unsettled(format!("{} ({detail})", why.name())),
        }
    }
}

/// When a request was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Creating the users and their first deposits, before any fault.
    Setup,
    /// Under faults.
    Load,
    /// Repeating indefinite requests after the faults.
    Retry,
}

/// One request and what came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub service: ServiceKind,
    pub kind: OpKind,
    pub phase: Phase,
    pub sent: Instant,
    pub took: Duration,
    /// The HTTP status, or `None` when nothing came back.
    pub status: Option<u16>,
    pub indefinite: Option<Indefinite>,
}

/// A request with the first and the latest answer it got.
#[derive(Debug, Clone)]
pub struct Intent {
    pub request: Request,
    pub first: Outcome,
    pub outcome: Outcome,
    pub attempts: u32,
}

/// The HTTP client every soak client shares, and the exchange log.
pub struct Driver {
    http: reqwest::Client,
    pub endpoints: Endpoints,
    exchanges: Mutex<Vec<Exchange>>,
}

impl Driver {
    /// `timeout` bounds every request: the slowest a definite answer may be
    /// (above the services' own budgets, so a timeout means a stalled peer).
    pub fn new(endpoints: Endpoints, timeout: Duration) -> Driver {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(1))
            // Below the servers' keep-alive: an idle connection is dropped by
            // the client before the server may close it.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client always builds");
        Driver { http, endpoints, exchanges: Mutex::new(Vec::new()) }
    }

    /// Sends the request once and sorts the answer.
    /// A token for `username` (`POST /users/tokens`).
    pub async fn sign_in(&self, username: &str, password: &str) -> Result<String, String> {
        let res = self
            .http
            .post(format!("{}/users/tokens", self.endpoints.users))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status();
        let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => Err(format!("{status}: {body}")),
        }
    }

    pub async fn send(&self, request: &Request, phase: Phase) -> Outcome {
        let built = request.build(&self.http, &self.endpoints);
        self.exchange(built, request.service(), request.kind(), phase).await
    }

    /// The user's orders, newest first, as `(id, status)` (`GET /orders`);
    /// `None` unless that is answered 200 with a list.
    pub async fn orders_of(&self, session: &Session, phase: Phase) -> Option<Vec<(i64, String)>> {
        let built =
            session.authorize(self.http.get(format!("{}/orders?user_id={}", self.endpoints.orders, session.user_id)));
        let Outcome::Definite(200, Value::Array(orders)) =
            self.exchange(built, ServiceKind::Order, OpKind::List, phase).await
        else {
            return None;
        };
        orders.iter().map(|o| Some((o["id"].as_i64()?, o["status"].as_str()?.to_owned()))).collect()
    }

    /// Sends a request once, sorts the answer and logs the exchange.
    async fn exchange(&self, request: RequestBuilder, service: ServiceKind, kind: OpKind, phase: Phase) -> Outcome {
        let sent = Instant::now();
        let result = request.send().await;
        let outcome = match result {
            Err(e) => {
                let why = if e.is_timeout() { Indefinite::Timeout } else { Indefinite::Transport };
                Outcome::Indefinite(why, chain(&e))
            }
            Ok(res) => {
                let status = res.status().as_u16();
                match res.text().await {
                    Err(e) => {
                        let why = if e.is_timeout() { Indefinite::Timeout } else { Indefinite::Transport };
                        Outcome::Indefinite(why, format!("{status}, then the body failed: {}", chain(&e)))
                    }
                    Ok(text) => sort(status, &text),
                }
            }
        };
        let status = match &outcome {
            Outcome::Definite(status, _) => Some(*status),
            Outcome::Indefinite(Indefinite::ServerError(status), _) => Some(*status),
            Outcome::Indefinite(Indefinite::InProgress, _) => Some(409),
            Outcome::Indefinite(..) => None,
        };
        let indefinite = match &outcome {
            Outcome::Indefinite(why, _) => Some(why.clone()),
            Outcome::Definite(..) => None,
        };
        self.exchanges.lock().expect("exchange log").push(Exchange {
            service,
            kind,
            phase,
            sent,
            took: sent.elapsed(),
            status,
            indefinite,
        });
        outcome
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("exchange log").clone()
    }
}

/// Sorts an HTTP answer: a 5xx and a 409 `request-in-progress` say nothing
/// final; everything else does.
pub fn sort(status: u16, text: &str) -> Outcome {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let short = || text.chars().take(200).collect::<String>();
    if status >= 500 {
        return Outcome::Indefinite(Indefinite::ServerError(status), short());
    }
    if status == 409 && crate::invariants::problem_slug(&body) == "request-in-progress" {
        return Outcome::Indefinite(Indefinite::InProgress, short());
    }
    Outcome::Definite(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_into_definite_and_not() {
        assert!(matches!(sort(201, r#"{"id":1}"#), Outcome::Definite(201, _)));
        assert!(matches!(sort(409, r#"{"type":"https://x/problems/insufficient-funds"}"#), Outcome::Definite(409, _)));
        assert!(matches!(
            sort(409, r#"{"type":"https://x/problems/request-in-progress"}"#),
            Outcome::Indefinite(Indefinite::InProgress, _)
        ));
        assert!(matches!(sort(503, "{}"), Outcome::Indefinite(Indefinite::ServerError(503), _)));
        assert!(matches!(sort(500, ""), Outcome::Indefinite(Indefinite::ServerError(500), _)));
        assert!(matches!(sort(422, "not json"), Outcome::Definite(422, Value::Null)));
    }

    #[test]
    fn a_session_adds_its_token_when_it_has_one() {
        let http = reqwest::Client::new();
        let bare = Session::anonymous(7).authorize(http.get("http://127.0.0.1:9/")).build().unwrap();
        assert!(bare.headers().get("authorization").is_none());
        let signed = Session { user_id: 7, bearer: Some("t0k".into()) }
            .authorize(http.get("http://127.0.0.1:9/"))
            .build()
            .unwrap();
        assert_eq!(signed.headers()["authorization"], "Bearer t0k");
    }
}
