//! The ledger: accounts and their entries. A balance changes only through
//! [`Ledger::apply`]: one conditional UPDATE and its ledger row, in one
//! transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::db::WriteTransaction;

use crate::domain::{EntryKind, Movement};
use crate::error::BillingError;
use crate::schema::{accounts, ledger_entries};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub user_id: i64,
    pub balance: i64,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ledger_entries)]
pub struct Entry {
    pub id: i64,
    pub user_id: i64,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub reference: Option<String>,
    pub created_at: NaiveDateTime,
}

/// The result of a movement: the balance right after it and its entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub user_id: i64,
    pub balance: i64,
    pub transaction_id: i64,
}

impl Entry {
    fn receipt(&self) -> Receipt {
        Receipt {
            user_id: self.user_id,
            balance: self.balance_after,
            transaction_id: self.id,
        }
    }

    /// A repeated reference is the same request only with the same kind and
    /// amount.
    fn replay(&self, movement: &Movement) -> Result<Receipt, BillingError> {
        if self.kind == movement.kind.as_str() && self.amount == movement.amount.minor_units() {
            Ok(self.receipt())
        } else {
            Err(BillingError::ReferenceReused)
        }
    }
}

pub trait Ledger {
    /// Opens the account if it is not there; tells whether it was created.
    fn open_account(&mut self, user_id: i64, now: NaiveDateTime) -> QueryResult<(Account, bool)>;
    fn account(&mut self, user_id: i64) -> QueryResult<Option<Account>>;
    /// Newest first.
    fn entries(&mut self, user_id: i64) -> QueryResult<Vec<Entry>>;
    fn apply(&mut self, movement: &Movement, now: NaiveDateTime) -> Result<Receipt, BillingError>;
}

macro_rules! ledger {
    ($conn:ty) => {
        impl Ledger for $conn {
            fn open_account(
                &mut self,
                user_id: i64,
                now: NaiveDateTime,
            ) -> QueryResult<(Account, bool)> {
                let created = diesel::insert_into(accounts::table)
                    .values((
                        accounts::user_id.eq(user_id),
                        accounts::balance.eq(0),
                        accounts::created_at.eq(now),
                        accounts::updated_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(self)?
                    == 1;
                let account = accounts::table
                    .find(user_id)
                    .select(Account::as_select())
                    .first(self)?;
                Ok((account, created))
            }

            fn account(&mut self, user_id: i64) -> QueryResult<Option<Account>> {
                accounts::table
                    .find(user_id)
                    .select(Account::as_select())
                    .first(self)
                    .optional()
            }

            fn entries(&mut self, user_id: i64) -> QueryResult<Vec<Entry>> {
                ledger_entries::table
                    .filter(ledger_entries::user_id.eq(user_id))
                    .order(ledger_entries::id.desc())
                    .select(Entry::as_select())
                    .load(self)
            }

            fn apply(
                &mut self,
                movement: &Movement,
                now: NaiveDateTime,
            ) -> Result<Receipt, BillingError> {
                self.write_transaction(|conn| {
                    let user_id = movement.user_id;
                    if let Some(reference) = &movement.reference {
                        let earlier = ledger_entries::table
                            .filter(ledger_entries::user_id.eq(user_id))
                            .filter(ledger_entries::reference.eq(reference.as_str()))
                            .select(Entry::as_select())
                            .first(conn)
                            .optional()?;
                        if let Some(entry) = earlier {
                            return entry.replay(movement);
                        }
                    }
                    let amount = movement.amount.minor_units();
                    let account = accounts::table.find(user_id);
                    // The condition is the whole check: no read-then-write race.
                    let balance_after: Option<i64> = match movement.kind {
                        EntryKind::Deposit => {
                            diesel::update(account.filter(accounts::balance.le(i64::MAX - amount)))
                                .set((
                                    accounts::balance.eq(accounts::balance + amount),
                                    accounts::updated_at.eq(now),
                                ))
                                .returning(accounts::balance)
                                .get_result(conn)
                                .optional()?
                        }
                        EntryKind::Withdrawal => {
                            diesel::update(account.filter(accounts::balance.ge(amount)))
                                .set((
                                    accounts::balance.eq(accounts::balance - amount),
                                    accounts::updated_at.eq(now),
                                ))
                                .returning(accounts::balance)
                                .get_result(conn)
                                .optional()?
                        }
                    };
                    let Some(balance_after) = balance_after else {
                        return Err(match (conn.account(user_id)?, movement.kind) {
                            (None, _) => BillingError::NoAccount(user_id),
                            (Some(_), EntryKind::Deposit) => BillingError::BalanceOverflow,
                            (Some(acc), EntryKind::Withdrawal) => BillingError::InsufficientFunds {
                                balance: acc.balance,
                                amount,
                            },
                        });
                    };
                    let transaction_id = diesel::insert_into(ledger_entries::table)
                        .values((
                            ledger_entries::user_id.eq(user_id),
                            ledger_entries::kind.eq(movement.kind.as_str()),
                            ledger_entries::amount.eq(amount),
                            ledger_entries::balance_after.eq(balance_after),
                            ledger_entries::reference
                                .eq(movement.reference.as_ref().map(|r| r.as_str())),
                            ledger_entries::created_at.eq(now),
                        ))
                        .returning(ledger_entries::id)
                        .get_result(conn)?;
                    Ok(Receipt {
                        user_id,
                        balance: balance_after,
                        transaction_id,
                    })
                })
            }
        }
    };
}

ledger!(diesel::PgConnection);
ledger!(diesel::SqliteConnection);
