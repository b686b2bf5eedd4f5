//! The orders table: every change of an order's state is a conditional
//! update, so two workers can never decide one order twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::db::{KeepPrepared, WriteTransaction};

use crate::schema::orders;

#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub price: i64,
    pub status: String,
    pub failure_reason: Option<String>,
    pub notified_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub const PENDING: &str = "pending";
pub const PAID: &str = "paid";
pub const REJECTED: &str = "rejected";
pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";

impl Order {
    pub fn is_pending(&self) -> bool {
        self.status == PENDING
    }

    pub fn is_finished(&self) -> bool {
        self.notified_at.is_some()
    }
}

/// billing-service's answer for an order's payment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Paid,
    Rejected,
}

pub trait OrderBook {
    fn open_order(
        &mut self,
        user_id: i64,
        price: i64,
        lease_until: NaiveDateTime,
        now: NaiveDateTime,
    ) -> QueryResult<Order>;
    fn order(&mut self, id: i64) -> QueryResult<Option<Order>>;
    /// Newest first.
    fn orders_of(&mut self, user_id: i64) -> QueryResult<Vec<Order>>;
    /// Records the decision if the order is still pending; returns the order
    /// as it now is (possibly decided by another worker, the same way).
    fn decide(&mut self, id: i64, decision: Decision, now: NaiveDateTime) -> QueryResult<Order>;
    fn mark_notified(&mut self, id: i64, now: NaiveDateTime) -> QueryResult<Order>;
    /// Lets the recovery loop take the order at its next round.
    fn release(&mut self, id: i64) -> QueryResult<()>;
    /// Leases up to `limit` unfinished orders whose lease has run out.
    fn lease_unfinished(&mut self, now: NaiveDateTime, until: NaiveDateTime, limit: i64) -> QueryResult<Vec<Order>>;
}

macro_rules! order_book {
    ($conn:ty) => {
        impl OrderBook for $conn {
            fn open_order(
                &mut self,
                user_id: i64,
                price: i64,
                lease_until: NaiveDateTime,
                now: NaiveDateTime,
            ) -> QueryResult<Order> {
                diesel::insert_into(orders::table)
                    .values((
                        orders::user_id.eq(user_id),
                        orders::price.eq(price),
                        orders::status.eq(PENDING),
                        orders::lease_until.eq(lease_until),
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

            fn decide(&mut self, id: i64, decision: Decision, now: NaiveDateTime) -> QueryResult<Order> {
                let (status, reason) = match decision {
                    Decision::Paid => (PAID, None),
                    Decision::Rejected => (REJECTED, Some(INSUFFICIENT_FUNDS)),
                };
                let decided = diesel::update(orders::table.find(id).filter(orders::status.eq(PENDING)))
                    .set((orders::status.eq(status), orders::failure_reason.eq(reason), orders::updated_at.eq(now)))
                    .returning(Order::as_returning())
                    .prepared()
                    .get_result(self)
                    .optional()?;
                match decided {
                    Some(order) => Ok(order),
                    None => orders::table.find(id).select(Order::as_select()).first(self),
                }
            }

            fn mark_notified(&mut self, id: i64, now: NaiveDateTime) -> QueryResult<Order> {
                let marked = diesel::update(orders::table.find(id).filter(orders::notified_at.is_null()))
                    .set((orders::notified_at.eq(now), orders::lease_until.eq(None::<NaiveDateTime>)))
                    .returning(Order::as_returning())
                    .prepared()
                    .get_result(self)
                    .optional()?;
                match marked {
                    Some(order) => Ok(order),
                    None => orders::table.find(id).select(Order::as_select()).first(self),
                }
            }

            fn release(&mut self, id: i64) -> QueryResult<()> {
                diesel::update(orders::table.find(id))
                    .set(orders::lease_until.eq(None::<NaiveDateTime>))
                    .execute(self)
                    .map(drop)
            }

            fn lease_unfinished(
                &mut self,
                now: NaiveDateTime,
                until: NaiveDateTime,
                limit: i64,
            ) -> QueryResult<Vec<Order>> {
                self.write_transaction(|conn| {
                    let candidates: Vec<i64> = orders::table
                        .filter(orders::notified_at.is_null())
                        .filter(orders::lease_until.is_null().or(orders::lease_until.lt(now)))
                        .order(orders::id)
                        .limit(limit)
                        .select(orders::id)
                        .load(conn)?;
                    // The lease condition is checked again by the UPDATE: on
                    // PostgreSQL a replica that waited for the row lock
                    // re-reads the row and skips it if another replica has
                    // just leased it.
                    diesel::update(
                        orders::table
                            .filter(orders::id.eq_any(candidates))
                            .filter(orders::lease_until.is_null().or(orders::lease_until.lt(now))),
                    )
                    .set(orders::lease_until.eq(until))
                    .returning(Order::as_returning())
                    .get_results(conn)
                })
            }
        }
    };
}

order_book!(diesel::PgConnection);
order_book!(diesel::SqliteConnection);
