//! The order saga: store `pending` → pay through billing (reference
//! `order-{id}`) → `paid` | `rejected` → read the user's e-mail → post the
//! letter (once per `(order_id, kind)`) → finished.
//!
//! The order row is the saga's state and every step can be repeated without
//! harm, so whatever a request leaves unfinished (an outage, a timeout, a
//! crash) the recovery loop finishes the same way. A worker holds the
//! order's lease while it drives it, and writes only under that lease.
//!
//! A peer's final refusal ends the saga in a defined state instead of
//! blocking it: billing refusing the payment (no account, the reference used
//! otherwise) → `rejected` with `payment_refused`, nothing charged; the
//! letter refused (notification-service says it is invalid, or user-service
//! no longer knows the user) → the order keeps its decision and is finished
//! without a letter, the refusal kept in `letter_refusal`. An outage is not
//! final: the order is given back with a growing wait before its next try.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use service_kit::db::{self, DbPool, StorageError, WriteTransaction};
use service_kit::idempotency::{Claim, IdempotencyStore, KeyedRequest, StoredResponse};
use service_kit::money::Amount;
use service_kit::server::Shutdown;
use service_kit::{time, with_backend};

use crate::book::{Decision, FailureReason, Lease, Order, OrderBook, OrderStatus};
use crate::error::OrderError;
use crate::metrics;
use crate::peers::{Deadline, PeerError, Peers};

/// How the answer a key keeps for an order is written (the route layer
/// decides: status, body, `Location`).
pub type AnswerFor = fn(&Order) -> StoredResponse;

#[derive(Clone)]
pub struct OrderSaga {
    pub pool: DbPool,
    pub peers: Peers,
    /// How long one request may work on its order before answering 202.
    pub budget: Duration,
    /// How long a worker holds an order: past its budget, with room for its
    /// last writes; past it, another worker may take over.
    pub lease: Duration,
    /// The recovery loop's period; the wait after a failed attempt starts
    /// at one period and doubles up to eight.
    pub recovery_interval: Duration,
    pub answer_for: AnswerFor,
}

/// How many unfinished orders one recovery round looks at.
const RECOVERY_BATCH: i64 = 20;

/// What `place` came to.
#[derive(Debug)]
pub enum Placement {
    /// The order, decided (`paid`, `rejected`) or still `pending`.
    New(Order),
    /// The answer an earlier request with this key got.
    Replayed(StoredResponse),
}

/// What a cancel came to.
#[derive(Debug)]
pub enum Cancellation {
    /// `cancelled`: the money is back (or was never taken).
    Done(Order),
    /// `cancelling`: billing could not be reached in time, or another
    /// worker is still settling it; it is finished later.
    InProgress(Order),
}

/// Who drives an order, which decides when its key's answer is stored.
#[derive(Clone, Copy, PartialEq)]
enum Driver {
    /// The request that placed it; `keyed` if it came with a key.
    Request { keyed: bool },
    /// The recovery loop: the key (if any) is answered once the order is
    /// decided, never with `pending` (that request never answered).
    Recovery,
    /// A cancel request that took the order: as the recovery loop.
    Cancel,
}

/// Why a drive stopped short of the end.
enum Stall {
    /// A peer or the database is out: try again later.
    Outage,
    /// Another worker holds the order now.
    LeaseLost,
}

fn later(d: Duration) -> NaiveDateTime {
    time::now() + chrono::Duration::from_std(d).unwrap_or_default()
}

impl OrderSaga {
    pub async fn place(
        &self,
        user_id: i64,
        price: Amount,
        keyed: Option<KeyedRequest>,
    ) -> Result<Placement, OrderError> {
        let deadline = Deadline(Instant::now() + self.budget);
        if let Some(keyed) = keyed.clone() {
            // A replay is answered from the key alone, without asking anyone.
            let claim = self.db(move |c| with_backend!(c, c => c.check_key(&keyed.key, &keyed.fingerprint))).await?;
            if let Some(answer) = claim.settle()? {
                return Ok(Placement::Replayed(answer));
            }
        }
        let user = match self.peers.user(user_id, deadline).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err(OrderError::UnknownUser(user_id)),
            Err(e) => return Err(OrderError::Unavailable(Box::new(e))),
        };
        let driver = Driver::Request { keyed: keyed.is_some() };
        let keyed_for_answer = keyed.clone();
        let lease = Lease::new(later(self.lease));
        let order = match self.open(user_id, price.minor_units(), lease, keyed).await? {
            Ok(order) => order,
            Err(answer) => return Ok(Placement::Replayed(answer)),
        };
        let order = self.drive(order, lease, Some(user.email), deadline, driver).await;
        metrics::outcome(order.status.as_str());
        if let Some(keyed) = keyed_for_answer.filter(|_| !order.is_pending()) {
            // Usually the decision stored the key's answer already; a cancel
            // that overtook the decision left it to this request.
            let answer = (self.answer_for)(&order);
            self.db(move |c| with_backend!(c, c => c.complete_key(keyed.key.as_str(), &answer))).await?;
        }
        Ok(Placement::New(order))
    }

    /// Stores the order (and claims the key in the same transaction).
    /// `Err(answer)`: the key was claimed meanwhile by a request that has
    /// answered since.
    async fn open(
        &self,
        user_id: i64,
        price: i64,
        lease: Lease,
        keyed: Option<KeyedRequest>,
    ) -> Result<Result<Order, StoredResponse>, OrderError> {
        let Some(keyed) = keyed else {
            // Without a key the INSERT is the whole step: no transaction
            // around it (two round trips fewer per order).
            return Ok(Ok(self
                .db(move |c| with_backend!(c, c => c.open_order(user_id, price, lease, time::now())))
                .await?));
        };
        db::run(&self.pool, move |conn| {
            with_backend!(conn, c => c.write_transaction(|c| {
                let claim = c.claim_key(&keyed.key, &keyed.fingerprint, time::now())?;
                if claim != Claim::Fresh {
                    return Ok(Err(claim.settle()?.expect("not fresh")));
                }
                let order = c.open_order(user_id, price, lease, time::now())?;
                c.attach_resource(&keyed.key, order.id)?;
                Ok::<_, OrderError>(Ok(order))
            }))
        })
        .await
    }

    /// Takes the order as far as it can before the deadline, under `lease`.
    /// It never fails: what is left undone is given back with a wait before
    /// the next try (or left to whoever took the lease over).
    async fn drive(
        &self,
        order: Order,
        lease: Lease,
        email: Option<String>,
        deadline: Deadline,
        driver: Driver,
    ) -> Order {
        let id = order.id;
        let (order, stall) = self.steps(order, lease, email, deadline, driver).await;
        match stall {
            None => {}
            Some(Stall::LeaseLost) => log::warn!("order {id}: another worker holds it now; leaving it"),
            Some(Stall::Outage) => {
                let retry_at = later(self.backoff(order.attempts + 1));
                // A request that answers 202 keeps that answer for its key,
                // stored before anyone else can take the order.
                let answer = (driver == Driver::Request { keyed: true } && order.is_pending())
                    .then(|| (self.answer_for)(&order));
                let given = self
                    .db(move |c| {
                        with_backend!(c, c => c.write_transaction(|c| {
                            let given = c.give_back(id, lease, retry_at)?;
                            if let (true, Some(answer)) = (given, &answer) {
                                c.complete_key_of_resource(id, answer)?;
                            }
                            Ok(given)
                        }))
                    })
                    .await;
                if let Err(e) = given {
                    log::warn!("order {id} keeps its lease until it runs out: {e}");
                }
            }
        }
        order
    }

    /// The saga's remaining steps for the order's status, under `lease`.
    /// A step whose write does not apply because another request changed
    /// the status meanwhile (a cancel, which needs no lease to begin) is
    /// followed by the steps of the new status, as long as the lease is
    /// still this worker's.
    async fn steps(
        &self,
        mut order: Order,
        lease: Lease,
        email: Option<String>,
        deadline: Deadline,
        driver: Driver,
    ) -> (Order, Option<Stall>) {
        let id = order.id;
        // pending → (cancelling →) decided or cancelled → finished: a few
        // turns at most, even if a cancel comes in between.
        for _ in 0..4 {
            let step = match order.status {
                OrderStatus::Pending => {
                    let decision = match self.peers.pay(&order, deadline).await {
                        Ok(decision) => decision,
                        Err(PeerError::Refused { peer, problem }) => {
                            log::error!("order {id}: {peer} refused the payment for good ({problem}); rejecting it");
                            Decision::Rejected(FailureReason::PaymentRefused)
                        }
                        Err(PeerError::Call(e)) => {
                            log::warn!("order {id} stays pending: {e}");
                            return (order, Some(Stall::Outage));
                        }
                    };
                    self.decide(&order, decision, lease, driver).await
                }
                OrderStatus::Cancelling => {
                    let refunded = match self.peers.cancel_payment(&order, deadline).await {
                        Ok(refunded) => refunded,
                        // No account, or a reference used otherwise:
                        // nothing was withdrawn under it to give back.
                        Err(PeerError::Refused { peer, problem }) => {
                            log::error!(
                                "order {id}: {peer} refused to settle its payment ({problem}); nothing to refund"
                            );
                            0
                        }
                        Err(PeerError::Call(e)) => {
                            log::warn!("order {id} stays cancelling: {e}");
                            return (order, Some(Stall::Outage));
                        }
                    };
                    self.db(move |c| with_backend!(c, c => c.cancelled(id, lease, refunded, time::now()))).await
                }
                OrderStatus::Paid | OrderStatus::Rejected | OrderStatus::Cancelled if order.is_finished() => {
                    return (order, None);
                }
                OrderStatus::Paid | OrderStatus::Rejected | OrderStatus::Cancelled => {
                    match self.letter(&order, email.clone(), deadline).await {
                        Ok(refusal) => {
                            let status = order.status;
                            self.db(move |c| {
                                with_backend!(c, c => c.finish(id, lease, status, refusal.as_deref(), time::now()))
                            })
                            .await
                        }
                        Err(stall) => return (order, Some(stall)),
                    }
                }
            };
            order = match step {
                Ok(Some(next)) => next,
                // The write did not apply: the status changed under this
                // worker's lease, or the lease is gone.
                Ok(None) => match self.db(move |c| with_backend!(c, c => c.order(id))).await {
                    Ok(Some(now)) if now.lease_token == Some(lease.token) && now.status != order.status => now,
                    Ok(_) => return (order, Some(Stall::LeaseLost)),
                    Err(e) => {
                        log::warn!("order {id}: {e}");
                        return (order, Some(Stall::Outage));
                    }
                },
                Err(e) => {
                    log::warn!("order {id} is {}; its next step is not recorded: {e}", order.status);
                    return (order, Some(Stall::Outage));
                }
            };
        }
        (order, None)
    }

    /// Stores the letter for the order's status; `Ok(Some(reason))` when it
    /// was refused for good.
    async fn letter(&self, order: &Order, email: Option<String>, deadline: Deadline) -> Result<Option<String>, Stall> {
        let id = order.id;
        match self.notify(order, email, deadline).await {
            Ok(()) => Ok(None),
            Err(PeerError::Refused { peer, problem }) => {
                log::error!("order {id} is {} but {peer} refused its letter for good: {problem}", order.status);
                Ok(Some(format!("{peer}: {}", problem.detail).chars().take(255).collect::<String>()))
            }
            Err(PeerError::Call(e)) => {
                log::warn!("order {id} is {} but its letter is not stored yet: {e}", order.status);
                Err(Stall::Outage)
            }
        }
    }

    /// Records the decision; the key's answer (if the order has a key) is
    /// written in the same transaction, so a decided order never leaves its
    /// key "in progress".
    async fn decide(
        &self,
        order: &Order,
        decision: Decision,
        lease: Lease,
        driver: Driver,
    ) -> Result<Option<Order>, StorageError> {
        let id = order.id;
        if driver == (Driver::Request { keyed: false }) {
            return self.db(move |c| with_backend!(c, c => c.decide(id, decision, lease, time::now()))).await;
        }
        let answer_for = self.answer_for;
        self.db(move |c| {
            with_backend!(c, c => c.write_transaction(|c| {
                let decided = c.decide(id, decision, lease, time::now())?;
                if let Some(order) = &decided {
                    c.complete_key_of_resource(id, &answer_for(order))?;
                }
                Ok(decided)
            }))
        })
        .await
    }

    async fn notify(&self, order: &Order, email: Option<String>, deadline: Deadline) -> Result<(), PeerError> {
        let email = match email {
            Some(email) => email,
            None => match self.peers.user(order.user_id, deadline).await? {
                Some(user) => user.email,
                None => {
                    let detail = format!("user {} not found", order.user_id);
                    let problem = service_kit::Problem::not_found(detail);
                    return Err(PeerError::Refused { peer: self.peers.users.name, problem });
                }
            },
        };
        self.peers.notify(order, &email, deadline).await
    }

    /// The wait before the next try after `attempts` failed ones.
    fn backoff(&self, attempts: i32) -> Duration {
        self.recovery_interval * 2u32.pow(attempts.clamp(1, 4) as u32 - 1)
    }

    /// Cancels `owner`'s order `id` (SPEC: "Cancelling an order"): a
    /// `pending` or `paid` order becomes `cancelling` at once, whoever holds
    /// it; then whoever holds its lease (this request if it can take it,
    /// else the request or the recovery round already driving it) settles
    /// the payment with billing, records `cancelled` and sends the letter.
    /// This waits for that within the request's budget. A payment and a
    /// cancel meet at billing under one reference and the account's lock:
    /// whichever comes first, the other finds it there.
    pub async fn cancel(&self, id: i64, owner: i64) -> Result<Cancellation, OrderError> {
        let deadline = Instant::now() + self.budget;
        let mut order = self.find(id, owner).await?;
        if matches!(order.status, OrderStatus::Pending | OrderStatus::Paid) {
            let begun = self.db(move |c| with_backend!(c, c => c.begin_cancel(id, time::now()))).await?;
            order = match begun {
                Some(cancelling) => cancelling,
                // Decided or cancelled meanwhile: judged as it is now.
                None => self.find(id, owner).await?,
            };
        }
        match order.status {
            OrderStatus::Rejected => return Err(OrderError::NotCancellable(id)),
            OrderStatus::Cancelled => return Ok(Cancellation::Done(order)),
            OrderStatus::Pending | OrderStatus::Paid => return Ok(Cancellation::InProgress(order)),
            OrderStatus::Cancelling => {}
        }
        let lease = Lease::new(later(self.lease));
        if let Some(leased) = self.db(move |c| with_backend!(c, c => c.take_lease(id, lease, time::now()))).await? {
            let order = self.drive(leased, lease, None, Deadline(deadline), Driver::Cancel).await;
            if order.status == OrderStatus::Cancelled {
                return Ok(Cancellation::Done(order));
            }
        }
        // Another worker holds it, perhaps with the payment still on its way
        // to billing: settling the payment now (it is idempotent, and final)
        // makes a payment that arrives later move nothing, and that worker
        // records the outcome; this request waits for it.
        if let Err(e) = self.peers.cancel_payment(&order, Deadline(deadline)).await {
            log::info!("order {id}: its payment is left to the worker that holds it: {e}");
        }
        loop {
            let order = self.find(id, owner).await?;
            if order.status == OrderStatus::Cancelled {
                return Ok(Cancellation::Done(order));
            }
            if Instant::now() >= deadline {
                return Ok(Cancellation::InProgress(order));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The order, if it is `owner`'s: another user's order is as unknown
    /// as one that does not exist.
    pub async fn find(&self, id: i64, owner: i64) -> Result<Order, OrderError> {
        let order = self.db(move |c| with_backend!(c, c => c.order(id))).await?;
        order.filter(|o| o.user_id == owner).ok_or(OrderError::NotFound(id))
    }

    pub async fn orders_of(&self, user_id: i64) -> Result<Vec<Order>, OrderError> {
        Ok(self.db(move |c| with_backend!(c, c => c.orders_of(user_id))).await?)
    }

    /// One round of recovery: finishes unfinished orders nobody holds, one
    /// lease at a time (so no lease outlives the drive it covers), on any
    /// replica. A final refusal ends an order and the round goes on; an
    /// outage gives the order back with a wait and ends the round (the next
    /// order would meet the same dead peer).
    /// Once `shutdown` has begun, no further lease is taken: the order in
    /// hand is finished or given back, the rest stay free for the other
    /// replicas.
    pub async fn recover(&self, shutdown: &Shutdown) -> Result<usize, OrderError> {
        self.answer_keys_of_decided_orders().await?;
        let ids = self.db(|c| with_backend!(c, c => c.unfinished(time::now(), RECOVERY_BATCH))).await?;
        let mut finished = 0;
        for id in ids {
            if shutdown.is_begun() {
                break;
            }
            let lease = Lease::new(later(self.lease));
            let Some(order) = self.db(move |c| with_backend!(c, c => c.take_lease(id, lease, time::now()))).await?
            else {
                continue;
            };
            let was_pending = order.is_pending();
            log::info!("recovering order {id} ({})", order.status);
            let deadline = Deadline(Instant::now() + self.budget);
            let order = self.drive(order, lease, None, deadline, Driver::Recovery).await;
            if was_pending && !order.is_pending() {
                metrics::recovered("decided");
            }
            if !order.is_finished() {
                // Given back with a wait, or taken over: either way the
                // rest would meet what stopped this one.
                break;
            }
            metrics::recovered("finished");
            finished += 1;
        }
        Ok(finished)
    }

    /// Answers the keys of decided orders whose request died before it
    /// stored the answer (a crash between the two writes of an older
    /// version left such keys "in progress" for good).
    async fn answer_keys_of_decided_orders(&self) -> Result<(), OrderError> {
        let answer_for = self.answer_for;
        self.db(move |c| {
            with_backend!(c, c => {
                for order in c.decided_with_unanswered_keys(RECOVERY_BATCH)? {
                    log::info!("answering the key of order {}", order.id);
                    c.complete_key_of_resource(order.id, &answer_for(&order))?;
                }
                Ok(())
            })
        })
        .await
        .map_err(OrderError::from)
    }

    async fn db<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut db::AnyConnection) -> Result<T, diesel::result::Error> + Send + 'static,
        T: Send + 'static,
    {
        db::run(&self.pool, move |conn| work(conn).map_err(StorageError::from)).await
    }
}
