//! The order saga: store `pending` → pay through billing (reference
//! `order-{id}`) → `paid` | `rejected` → read the user's e-mail → post the
//! letter (once per `(order_id, kind)`) → mark notified.
//!
//! The order row is the saga's state. Every step can be repeated without
//! harm, so whatever a request leaves unfinished (an outage, a timeout, a
//! crash) the recovery loop finishes the same way.

use std::time::{Duration, Instant};

use actix_web::HttpResponse;
use service_kit::db::{self, DbPool, WriteTransaction};
use service_kit::idempotency::{Claim, IdempotencyKey, IdempotencyStore, StoredResponse};
use service_kit::money::Amount;
use service_kit::{time, with_backend};

use crate::book::{Decision, Order, OrderBook};
use crate::error::OrderError;
use crate::metrics;
use crate::peers::{Deadline, Peers};
use crate::routes::OrderBody;

#[derive(Clone)]
pub struct OrderSaga {
    pub pool: DbPool,
    pub peers: Peers,
    /// How long one request may work on its order before answering 202.
    pub budget: Duration,
    /// How long a worker holds an order; past it, recovery may take over.
    pub lease: Duration,
}

/// How many unfinished orders one recovery round leases.
const RECOVERY_BATCH: i64 = 20;

/// A key and the request it came with.
pub type Keyed = Option<(IdempotencyKey, String)>;

enum Opened {
    Answered(Claim),
    Order(Order),
}

/// 201 once decided, 202 while the payment is still open.
pub fn answer_for(order: &Order) -> StoredResponse {
    StoredResponse {
        status: if order.is_pending() { 202 } else { 201 },
        body: serde_json::to_string(&OrderBody::from(order.clone())).expect("an order always serializes"),
        location: Some(format!("/orders/{}", order.id)),
    }
}

fn later(d: Duration) -> chrono::NaiveDateTime {
    time::now() + chrono::Duration::from_std(d).unwrap_or_default()
}

impl OrderSaga {
    pub async fn place(&self, user_id: i64, price: Amount, keyed: Keyed) -> Result<HttpResponse, OrderError> {
        let deadline = Deadline(Instant::now() + self.budget);
        if let Some((key, request)) = keyed.clone() {
            // A replay is answered from the key alone, without asking anyone.
            let claim = db::run(
                &self.pool,
                move |conn| with_backend!(conn, c => Ok::<_, OrderError>(c.check_key(&key, &request)?)),
            )
            .await?;
            if let Some(answer) = claim.into_answer() {
                return Ok(answer);
            }
        }
        let user = match self.peers.user(user_id, deadline).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(OrderError::UnknownUser(user_id)),
            Err(e) => return Err(OrderError::Unavailable(e.to_string())),
        };
        let key = keyed.as_ref().map(|(k, _)| k.clone());
        let order = match self.open(user_id, price.minor_units(), keyed).await? {
            Opened::Answered(claim) => return Ok(claim.into_answer().expect("not fresh")),
            Opened::Order(order) => order,
        };
        let order = self.drive(order, Some(user.email), deadline).await;
        metrics::outcome(if order.is_pending() { "pending" } else { &order.status });
        let answer = answer_for(&order);
        if let Some(key) = key {
            let stored = answer.clone();
            db::run(
                &self.pool,
                move |conn| with_backend!(conn, c => Ok::<_, OrderError>(c.complete_key(key.as_str(), &stored)?)),
            )
            .await?;
        }
        Ok(answer.to_response())
    }

    async fn open(&self, user_id: i64, price: i64, keyed: Keyed) -> Result<Opened, OrderError> {
        let lease_until = later(self.lease);
        let Some((key, request)) = keyed else {
            // Without a key the INSERT is the whole step: no transaction
            // around it (two round trips fewer per order).
            return db::run(&self.pool, move |conn| {
                with_backend!(conn, c => Ok::<_, OrderError>(Opened::Order(c.open_order(user_id, price, lease_until, time::now())?)))
            })
            .await;
        };
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => c.write_transaction(|c| {
                let claim = c.claim_key(&key, &request, time::now())?;
                if claim != Claim::Fresh {
                    return Ok(Opened::Answered(claim));
                }
                let order = c.open_order(user_id, price, lease_until, time::now())?;
                c.attach_resource(&key, order.id)?;
                Ok::<_, OrderError>(Opened::Order(order))
            }))
        })
        .await
    }

    /// Takes the order as far as it can before the deadline. It never fails:
    /// what is left undone is logged and left to the recovery loop.
    pub async fn drive(&self, mut order: Order, email: Option<String>, deadline: Deadline) -> Order {
        let id = order.id;
        if order.is_pending() {
            let decided = match self.peers.pay(&order, deadline).await {
                Ok(decision) => self.decide(id, decision).await,
                Err(e) => Err(OrderError::Unavailable(e.to_string())),
            };
            match decided {
                Ok(o) => order = o,
                Err(e) => {
                    log::warn!("order {id} stays pending: {e}");
                    self.release(id).await;
                    return order;
                }
            }
        }
        if !order.is_finished() {
            match self.notify(&order, email, deadline).await {
                Ok(o) => order = o,
                Err(e) => {
                    log::warn!("order {id} is {} but its letter is not sent yet: {e}", order.status);
                    self.release(id).await;
                }
            }
        }
        order
    }

    async fn notify(&self, order: &Order, email: Option<String>, deadline: Deadline) -> Result<Order, OrderError> {
        let email = match email {
            Some(email) => email,
            None => match self.peers.user(order.user_id, deadline).await {
                Ok(Some(user)) => user.email,
                Ok(None) => return Err(OrderError::UnknownUser(order.user_id)),
                Err(e) => return Err(OrderError::Unavailable(e.to_string())),
            },
        };
        self.peers.notify(order, &email, deadline).await.map_err(|e| OrderError::Unavailable(e.to_string()))?;
        let id = order.id;
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok(c.mark_notified(id, time::now())?))).await
    }

    async fn decide(&self, id: i64, decision: Decision) -> Result<Order, OrderError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok(c.decide(id, decision, time::now())?))).await
    }

    async fn release(&self, id: i64) {
        let released =
            db::run(&self.pool, move |conn| with_backend!(conn, c => Ok::<_, OrderError>(c.release(id)?))).await;
        if let Err(e) = released {
            log::warn!("order {id} keeps its lease until it runs out: {e}");
        }
    }

    pub async fn find(&self, id: i64) -> Result<Order, OrderError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok::<_, OrderError>(c.order(id)?)))
            .await?
            .ok_or(OrderError::NotFound(id))
    }

    pub async fn orders_of(&self, user_id: i64) -> Result<Vec<Order>, OrderError> {
        db::run(&self.pool, move |conn| with_backend!(conn, c => Ok(c.orders_of(user_id)?))).await
    }

    /// One round of recovery: leases unfinished orders nobody drives and
    /// finishes them. Safe with several replicas: a lease is taken by one.
    pub async fn recover(&self) -> Result<usize, OrderError> {
        let (now, until) = (time::now(), later(self.lease));
        let orders = db::run(
            &self.pool,
            move |conn| with_backend!(conn, c => Ok::<_, OrderError>(c.lease_unfinished(now, until, RECOVERY_BATCH)?)),
        )
        .await?;
        let mut finished = 0;
        let mut orders = orders.into_iter();
        for order in orders.by_ref() {
            let was_pending = order.is_pending();
            let id = order.id;
            log::info!("recovering order {id} ({})", order.status);
            let order = self.drive(order, None, Deadline(Instant::now() + self.budget)).await;
            if was_pending && !order.is_pending() {
                metrics::recovered("decided");
            }
            if !order.is_finished() {
                // A peer is still out: the rest would wait on it too.
                break;
            }
            metrics::recovered("notified");
            finished += 1;
            let answer = answer_for(&order);
            db::run(
                &self.pool,
                move |conn| with_backend!(conn, c => Ok::<_, OrderError>(c.complete_key_of_resource(id, &answer)?)),
            )
            .await?;
        }
        for left in orders {
            self.release(left.id).await;
        }
        Ok(finished)
    }
}
