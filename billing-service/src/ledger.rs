//! The ledger: accounts and their entries. A balance changes only through
//! [`Ledger::apply`]: one conditional UPDATE and its ledger row, in one
//! transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use service_kit::db::WriteTransaction;

use crate::domain::{EntryKind, Movement};
use crate::error::BillingError;
use crate::schema::{accounts, declined_withdrawals, ledger_entries};

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
        Receipt { user_id: self.user_id, balance: self.balance_after, transaction_id: self.id }
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
    /// What an earlier request with this reference was answered.
    fn earlier_answer(&mut self, user_id: i64, reference: &str) -> QueryResult<Option<EarlierAnswer>>;
}

/// The answer a reference got the first time.
pub enum EarlierAnswer {
    Moved(Entry),
    Declined { amount: i64, balance: i64 },
}

impl EarlierAnswer {
    fn replay(self, movement: &Movement) -> Result<Outcome, BillingError> {
        match self {
            EarlierAnswer::Moved(entry) => entry.replay(movement).map(Outcome::Moved),
            EarlierAnswer::Declined { amount, balance } => {
                if movement.kind == EntryKind::Withdrawal && amount == movement.amount.minor_units() {
                    Ok(Outcome::Declined { balance, amount })
                } else {
                    Err(BillingError::ReferenceReused)
                }
            }
        }
    }
}

/// What one movement came to: moved, or declined for insufficient funds.
pub enum Outcome {
    Moved(Receipt),
    Declined { balance: i64, amount: i64 },
}

impl Outcome {
    fn into_result(self) -> Result<Receipt, BillingError> {
        match self {
            Outcome::Moved(receipt) => Ok(receipt),
            Outcome::Declined { balance, amount } => Err(BillingError::InsufficientFunds { balance, amount }),
        }
    }
}

macro_rules! ledger {
    ($conn:ty) => {
        impl Ledger for $conn {
            fn open_account(&mut self, user_id: i64, now: NaiveDateTime) -> QueryResult<(Account, bool)> {
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
                let account = accounts::table.find(user_id).select(Account::as_select()).first(self)?;
                Ok((account, created))
            }

            fn account(&mut self, user_id: i64) -> QueryResult<Option<Account>> {
                accounts::table.find(user_id).select(Account::as_select()).first(self).optional()
            }

            fn entries(&mut self, user_id: i64) -> QueryResult<Vec<Entry>> {
                ledger_entries::table
                    .filter(ledger_entries::user_id.eq(user_id))
                    .order(ledger_entries::id.desc())
                    .select(Entry::as_select())
                    .load(self)
            }

            fn apply(&mut self, movement: &Movement, now: NaiveDateTime) -> Result<Receipt, BillingError> {
                // A refusal must be committed too (it is part of the
                // reference's answer), so it leaves the transaction as a
                // value and becomes an error after the commit.
                let outcome = self.write_transaction(|conn| {
                    let user_id = movement.user_id;
                    let account = accounts::table.find(user_id);
                    if let Some(reference) = &movement.reference {
                        // Lock the account row first: movements on one
                        // account, and decisions on one reference, take turns.
                        let locked =
                            diesel::update(account).set(accounts::updated_at.eq(accounts::updated_at)).execute(conn)?;
                        if locked == 0 {
                            return Err(BillingError::NoAccount(user_id));
                        }
                        if let Some(earlier) = conn.earlier_answer(user_id, reference.as_str())? {
                            return earlier.replay(movement);
                        }
                    }
                    let amount = movement.amount.minor_units();
                    // The condition is the whole check: no read-then-write race.
                    let balance_after: Option<i64> = match movement.kind {
                        EntryKind::Deposit => diesel::update(account.filter(accounts::balance.le(i64::MAX - amount)))
                            .set((accounts::balance.eq(accounts::balance + amount), accounts::updated_at.eq(now)))
                            .returning(accounts::balance)
                            .get_result(conn)
                            .optional()?,
                        EntryKind::Withdrawal => diesel::update(account.filter(accounts::balance.ge(amount)))
                            .set((accounts::balance.eq(accounts::balance - amount), accounts::updated_at.eq(now)))
                            .returning(accounts::balance)
                            .get_result(conn)
                            .optional()?,
                    };
                    let Some(balance_after) = balance_after else {
                        let Some(acc) = conn.account(user_id)? else {
                            return Err(BillingError::NoAccount(user_id));
                        };
                        if movement.kind == EntryKind::Deposit {
                            return Err(BillingError::BalanceOverflow);
                        }
                        if let Some(reference) = &movement.reference {
                            diesel::insert_into(declined_withdrawals::table)
                                .values((
                                    declined_withdrawals::user_id.eq(user_id),
                                    declined_withdrawals::reference.eq(reference.as_str()),
                                    declined_withdrawals::amount.eq(amount),
                                    declined_withdrawals::balance.eq(acc.balance),
                                    declined_withdrawals::created_at.eq(now),
                                ))
                                .execute(conn)?;
                        }
                        return Ok(Outcome::Declined { balance: acc.balance, amount });
                    };
                    let transaction_id = diesel::insert_into(ledger_entries::table)
                        .values((
                            ledger_entries::user_id.eq(user_id),
                            ledger_entries::kind.eq(movement.kind.as_str()),
                            ledger_entries::amount.eq(amount),
                            ledger_entries::balance_after.eq(balance_after),
                            ledger_entries::reference.eq(movement.reference.as_ref().map(|r| r.as_str())),
                            ledger_entries::created_at.eq(now),
                        ))
                        .returning(ledger_entries::id)
                        .get_result(conn)?;
                    Ok(Outcome::Moved(Receipt { user_id, balance: balance_after, transaction_id }))
                })?;
                outcome.into_result()
            }

            fn earlier_answer(&mut self, user_id: i64, reference: &str) -> QueryResult<Option<EarlierAnswer>> {
                let entry = ledger_entries::table
                    .filter(ledger_entries::user_id.eq(user_id))
                    .filter(ledger_entries::reference.eq(reference))
                    .select(Entry::as_select())
                    .first(self)
                    .optional()?;
                if let Some(entry) = entry {
                    return Ok(Some(EarlierAnswer::Moved(entry)));
                }
                let declined = declined_withdrawals::table
                    .find((user_id, reference))
                    .select((declined_withdrawals::amount, declined_withdrawals::balance))
                    .first::<(i64, i64)>(self)
                    .optional()?;
                Ok(declined.map(|(amount, balance)| EarlierAnswer::Declined { amount, balance }))
            }
        }
    };
}

ledger!(diesel::PgConnection);
ledger!(diesel::SqliteConnection);
