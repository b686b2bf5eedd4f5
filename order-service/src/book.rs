//! The orders table. The row is the saga's state; one worker at a time (a
//! request or a recovery round, on any replica) holds an order's lease, and
//! every write of the saga's next step is conditional on that lease's token,
//! so a worker that lost its lease can never overwrite its successor's work.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::db::KeepPrepared;

use crate::schema::orders;

service_kit::stored_enum! {
    /// Where an order is in its life.
    pub enum OrderStatus("order status") {
        /// The payment's outcome is not known yet.
        Pending => "pending",
        Paid => "paid",
        Rejected => "rejected",
        /// A cancellation is being settled with billing.
        Cancelling => "cancelling",
        Cancelled => "cancelled",
    }
}

service_kit::stored_enum! {
    /// Why an order was rejected.
    pub enum FailureReason("failure reason") {
        /// The balance was below the price.
        InsufficientFunds => "insufficient_funds",
        /// billing-service refused the payment for good (no account for the
        /// user, or the payment's reference already used otherwise).
        PaymentRefused => "payment_refused",
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, PartialEq)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub price: i64,
    pub status: OrderStatus,
    pub failure_reason: Option<FailureReason>,
    /// When the saga ended: the letter stored (or refused for good).
    pub notified_at: Option<NaiveDateTime>,
    /// Failed attempts since the last progress; the recovery loop waits
    /// longer after each.
    pub attempts: i32,
    /// Why the letter could not be stored, when it was refused for good.
    pub letter_refusal: Option<String>,
    /// The token of the worker holding the order, if one does.
    pub lease_token: Option<i64>,
    /// What the cancellation gave back; `None` unless cancelled.
    pub refunded: Option<i64>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Order {
    pub fn is_pending(&self) -> bool {
        self.status == OrderStatus::Pending
    }

    pub fn is_finished(&self) -> bool {
        self.notified_at.is_some()
    }
}

/// billing-service's answer for an order's payment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Paid,
    Rejected(FailureReason),
}

/// A worker's hold on an order until `until`. Only the holder of the token
/// writes the order's next step or gives the lease back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lease {
    pub token: i64,
    pub until: NaiveDateTime,
}

impl Lease {
    pub fn new(until: NaiveDateTime) -> Lease {
        Lease { token: fastrand::i64(..), until }
    }
}

pub trait OrderBook {
    /// Stores a new pending order, leased to its creator.
    fn open_order(&mut self, user_id: i64, price: i64, lease: Lease, now: NaiveDateTime) -> QueryResult<Order>;
    fn order(&mut self, id: i64) -> QueryResult<Option<Order>>;
    /// Newest first.
    fn orders_of(&mut self, user_id: i64) -> QueryResult<Vec<Order>>;
    /// Unfinished orders nobody holds (no lease, or one that ran out),
    /// oldest first.
    fn unfinished(&mut self, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<i64>>;
    /// Takes the order's lease if it is unfinished and nobody holds it;
    /// `None` when another worker does or the order is finished.
    fn take_lease(&mut self, id: i64, lease: Lease, now: NaiveDateTime) -> QueryResult<Option<Order>>;
    /// Records the decision of a pending order held under `lease`; `None`
    /// when the lease is no longer this worker's.
    fn decide(&mut self, id: i64, decision: Decision, lease: Lease, now: NaiveDateTime) -> QueryResult<Option<Order>>;
    /// Ends the saga of an order held under `lease` (the letter for
    /// `status` stored, or refused for good with `refusal`) and frees it;
    /// `None` when the lease is no longer this worker's or the status has
    /// changed meanwhile (a cancel).
    fn finish(
        &mut self,
        id: i64,
        lease: Lease,
        status: OrderStatus,
        refusal: Option<&str>,
        now: NaiveDateTime,
    ) -> QueryResult<Option<Order>>;
    /// Starts cancelling a `pending` or `paid` order, whoever holds it: it
    /// becomes `cancelling` and unfinished (recovery finishes it like any
    /// other). `None` when it is in another state.
    fn begin_cancel(&mut self, id: i64, now: NaiveDateTime) -> QueryResult<Option<Order>>;
    /// Records a settled cancellation of an order held under `lease`:
    /// `cancelled`, with what was `refunded`; `None` as for `decide`.
    fn cancelled(&mut self, id: i64, lease: Lease, refunded: i64, now: NaiveDateTime) -> QueryResult<Option<Order>>;
    /// Gives the lease back after a failed attempt: nobody takes the order
    /// before `retry_at`. False when the lease was not this worker's.
    fn give_back(&mut self, id: i64, lease: Lease, retry_at: NaiveDateTime) -> QueryResult<bool>;
    /// Decided orders whose Idempotency-Key still has no answer (the
    /// request that held it died before storing it), oldest first.
    fn decided_with_unanswered_keys(&mut self, limit: i64) -> QueryResult<Vec<Order>>;
}

macro_rules! order_book {
    ($conn:ty) => {
        impl OrderBook for $conn {
            fn open_order(&mut self, user_id: i64, price: i64, lease: Lease, now: NaiveDateTime) -> QueryResult<Order> {
                diesel::insert_into(orders::table)
                    .values((
                        orders::user_id.eq(user_id),
                        orders::price.eq(price),
                        orders::status.eq(OrderStatus::Pending),
                        orders::lease_until.eq(lease.until),
                        orders::lease_token.eq(lease.token),
                        orders::created_at.eq(now),
                        orders::updated_at.eq(now),
                    ))
                    .returning(Order::as_returning())
                    .get_result(self)
            }

            fn order(&mut self, id: i64) -> QueryResult<Option<Order>> {
                orders::table.find(id).select(Order::as_select()).first(self).optional()
            }

            fn orders_of(&mut self, user_id: i64) -> QueryResult<Vec<Order>> {
                orders::table
                    .filter(orders::user_id.eq(user_id))
                    .order(orders::id.desc())
                    .select(Order::as_select())
                    .load(self)
            }

            fn unfinished(&mut self, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<i64>> {
                orders::table
                    .filter(orders::notified_at.is_null())
                    .filter(orders::lease_until.is_null().or(orders::lease_until.lt(now)))
                    .order(orders::id)
                    .limit(limit)
                    .select(orders::id)
                    .load(self)
            }

            fn take_lease(&mut self, id: i64, lease: Lease, now: NaiveDateTime) -> QueryResult<Option<Order>> {
                // The condition is checked by the UPDATE itself: on PostgreSQL
                // a replica that waited for the row lock re-reads the row and
                // finds it leased.
                diesel::update(
                    orders::table
                        .find(id)
                        .filter(orders::notified_at.is_null())
                        .filter(orders::lease_until.is_null().or(orders::lease_until.lt(now))),
                )
                .set((orders::lease_until.eq(lease.until), orders::lease_token.eq(lease.token)))
                .returning(Order::as_returning())
                .get_result(self)
                .optional()
            }

            fn decide(
                &mut self,
                id: i64,
                decision: Decision,
                lease: Lease,
                now: NaiveDateTime,
            ) -> QueryResult<Option<Order>> {
                let (status, reason) = match decision {
                    Decision::Paid => (OrderStatus::Paid, None),
                    Decision::Rejected(reason) => (OrderStatus::Rejected, Some(reason)),
                };
                diesel::update(
                    orders::table
                        .find(id)
                        .filter(orders::status.eq(OrderStatus::Pending))
                        .filter(orders::lease_token.eq(lease.token)),
                )
                .set((
                    orders::status.eq(status),
                    orders::failure_reason.eq(reason),
                    orders::attempts.eq(0),
                    orders::updated_at.eq(now),
                ))
                .returning(Order::as_returning())
                .prepared()
                .get_result(self)
                .optional()
            }

            fn finish(
                &mut self,
                id: i64,
                lease: Lease,
                status: OrderStatus,
                refusal: Option<&str>,
                now: NaiveDateTime,
            ) -> QueryResult<Option<Order>> {
                diesel::update(
                    orders::table
                        .find(id)
                        .filter(orders::notified_at.is_null())
                        .filter(orders::status.eq(status))
                        .filter(orders::lease_token.eq(lease.token)),
                )
                .set((
                    orders::notified_at.eq(now),
                    orders::letter_refusal.eq(refusal),
                    orders::lease_until.eq(None::<NaiveDateTime>),
                    orders::lease_token.eq(None::<i64>),
                ))
                .returning(Order::as_returning())
                .prepared()
                .get_result(self)
                .optional()
            }

            fn begin_cancel(&mut self, id: i64, now: NaiveDateTime) -> QueryResult<Option<Order>> {
                diesel::update(
                    orders::table
                        .find(id)
                        .filter(orders::status.eq_any([OrderStatus::Pending, OrderStatus::Paid])),
                )
                .set((
                    orders::status.eq(OrderStatus::Cancelling),
                    orders::failure_reason.eq(None::<FailureReason>),
                    orders::notified_at.eq(None::<NaiveDateTime>),
                    orders::letter_refusal.eq(None::<String>),
                    orders::attempts.eq(0),
                    orders::updated_at.eq(now),
                ))
                .returning(Order::as_returning())
                .get_result(self)
                .optional()
            }

            fn cancelled(
                &mut self,
                id: i64,
                lease: Lease,
                refunded: i64,
                now: NaiveDateTime,
            ) -> QueryResult<Option<Order>> {
                diesel::update(
                    orders::table
                        .find(id)
                        .filter(orders::status.eq(OrderStatus::Cancelling))
                        .filter(orders::lease_token.eq(lease.token)),
                )
                .set((
                    orders::status.eq(OrderStatus::Cancelled),
                    orders::refunded.eq(refunded),
                    orders::attempts.eq(0),
                    orders::updated_at.eq(now),
                ))
                .returning(Order::as_returning())
                .get_result(self)
                .optional()
            }

            fn give_back(&mut self, id: i64, lease: Lease, retry_at: NaiveDateTime) -> QueryResult<bool> {
                let given = diesel::update(orders::table.find(id).filter(orders::lease_token.eq(lease.token)))
                    .set((
                        orders::lease_until.eq(retry_at),
                        orders::lease_token.eq(None::<i64>),
                        orders::attempts.eq(orders::attempts + 1),
                    ))
                    .execute(self)?;
                Ok(given == 1)
            }

            fn decided_with_unanswered_keys(&mut self, limit: i64) -> QueryResult<Vec<Order>> {
                // The keys table is service-kit's: diesel lets two tables
                // meet in one query only where both are declared, so this
                // (rare) query is written out.
                diesel::sql_query(format!(
                    "SELECT * FROM orders WHERE status <> 'pending' AND id IN \
                     (SELECT resource_id FROM idempotency_keys WHERE status_code IS NULL) ORDER BY id LIMIT {limit}"
                ))
                .load(self)
            }
        }
    };
}

order_book!(diesel::PgConnection);
order_book!(diesel::SqliteConnection);
