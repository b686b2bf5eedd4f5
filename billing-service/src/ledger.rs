//! The ledger: accounts and their entries. A balance changes only through
//! [`Ledger::apply`]: one conditional UPDATE and its ledger row, in one
//! transaction.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
use service_kit::db::{KeepPrepared, WriteTransaction};

use service_kit::money::Amount;

use crate::domain::{EntryKind, Movement, Reference, Refusal};
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
    pub kind: EntryKind,
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
        if self.kind == movement.kind && self.amount == movement.amount.minor_units() {
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
    /// Settles an order payment for good, in one transaction: refunds what
    /// was withdrawn under `payment` (a refund entry under `refund-…`, once),
    /// or, if nothing was, voids the reference so that a withdrawal under it
    /// that arrives later is declined. Repeating it gives the same answer.
    fn cancel_payment(
        &mut self,
        user_id: i64,
        payment: &Reference,
        now: NaiveDateTime,
    ) -> Result<Settlement, BillingError>;
    /// Moves money as `movement` says, inside the caller's write
    /// transaction: the reference's earlier answer if it has one, else one
    /// conditional UPDATE and its ledger row (or the declined row).
    fn move_money(&mut self, movement: &Movement, now: NaiveDateTime) -> Result<Outcome, BillingError>;
    /// Locks the account (inside a write transaction), then tells what an
    /// earlier request with this reference was answered.
    fn recall(&mut self, user_id: i64, reference: &str) -> QueryResult<Recall>;
}

/// What the account knows about a reference.
pub enum Recall {
    NoAccount,
    Fresh,
    Earlier(EarlierAnswer),
}

/// The account row joined with whatever a reference left behind: its ledger
/// entry, or its declined withdrawal.
///
/// On PostgreSQL this read runs only after the account row is locked, as a
/// statement of its own. Under READ COMMITTED each statement reads a fresh
/// snapshot, and every outcome of a reference is written while that lock is
/// held, so a request that waited for the lock sees what its predecessor
/// committed. Reading in the locking statement itself (`FOR UPDATE OF a`)
/// does not: after the wait PostgreSQL re-reads the locked account row but
/// not the joined rows, so the second request with a reference saw no
/// earlier answer, found the balance already reduced and declined — a
/// withdrawal and a decline under one reference. The extra statement costs
/// one round trip; a constraint across the two outcome tables would need a
/// third table (a statement too), and SERIALIZABLE would turn the wait into
/// failures to retry. On SQLite `BEGIN IMMEDIATE` has already serialised
/// writers, so there is nothing to lock.
macro_rules! recall_sql {
    ($user:literal, $reference:literal) => {
        concat!(
            "SELECT e.id AS entry_id, e.kind AS entry_kind, e.amount AS entry_amount, ",
            "e.balance_after AS entry_balance_after, e.created_at AS entry_created_at, ",
            "d.amount AS declined_amount, d.balance AS declined_balance, d.reason AS declined_reason ",
            "FROM accounts a ",
            "LEFT JOIN ledger_entries e ON e.user_id = a.user_id AND e.reference = ",
            $reference,
            " LEFT JOIN declined_withdrawals d ON d.user_id = a.user_id AND d.reference = ",
            $reference,
            " WHERE a.user_id = ",
            $user
        )
    };
}

/// The account row locked, read back.
#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = BigInt)]
    #[allow(dead_code)]
    user_id: i64,
}

#[derive(QueryableByName)]
struct RecallRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    entry_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    entry_kind: Option<EntryKind>,
    #[diesel(sql_type = Nullable<BigInt>)]
    entry_amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    entry_balance_after: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    entry_created_at: Option<NaiveDateTime>,
    #[diesel(sql_type = Nullable<BigInt>)]
    declined_amount: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    declined_balance: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    declined_reason: Option<Refusal>,
}

impl RecallRow {
    fn into_recall(self, user_id: i64, reference: &str) -> Recall {
        let entry =
            (self.entry_id, self.entry_kind, self.entry_amount, self.entry_balance_after, self.entry_created_at);
        if let (Some(id), Some(kind), Some(amount), Some(balance_after), Some(created_at)) = entry {
            let reference = Some(reference.to_owned());
            let entry = Entry { id, user_id, kind, amount, balance_after, reference, created_at };
            return Recall::Earlier(EarlierAnswer::Moved(entry));
        }
        match (self.declined_amount, self.declined_balance, self.declined_reason) {
            (Some(amount), Some(balance), Some(reason)) => {
                Recall::Earlier(EarlierAnswer::Declined { amount, balance, reason })
            }
            _ => Recall::Fresh,
        }
    }
}

/// The answer a reference got the first time.
pub enum EarlierAnswer {
    Moved(Entry),
    Declined { amount: i64, balance: i64, reason: Refusal },
}

impl EarlierAnswer {
    fn replay(self, movement: &Movement) -> Result<Outcome, BillingError> {
        match self {
            EarlierAnswer::Moved(entry) => entry.replay(movement).map(Outcome::Moved),
            // Whatever the amount: the payment was cancelled.
            EarlierAnswer::Declined { reason: Refusal::Voided, .. } if movement.kind == EntryKind::Withdrawal => {
                Ok(Outcome::Voided)
            }
            EarlierAnswer::Declined { amount, balance, reason: Refusal::InsufficientFunds }
                if movement.kind == EntryKind::Withdrawal && amount == movement.amount.minor_units() =>
            {
                Ok(Outcome::Declined { balance, amount })
            }
            EarlierAnswer::Declined { .. } => Err(BillingError::ReferenceReused),
        }
    }
}

/// What one movement came to: moved, declined for insufficient funds, or
/// declined because its order payment was cancelled first.
pub enum Outcome {
    Moved(Receipt),
    Declined { balance: i64, amount: i64 },
    Voided,
}

impl Outcome {
    fn into_result(self) -> Result<Receipt, BillingError> {
        match self {
            Outcome::Moved(receipt) => Ok(receipt),
            Outcome::Declined { balance, amount } => Err(BillingError::InsufficientFunds { balance, amount }),
            Outcome::Voided => Err(BillingError::PaymentCancelled),
        }
    }
}

/// How a cancelled order payment was settled.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// What was withdrawn came back: the refund entry.
    Refunded(Receipt, i64),
    /// Nothing was withdrawn, and nothing will be: the balance now.
    NothingCharged { user_id: i64, balance: i64 },
}

macro_rules! ledger {
    ($conn:ty, $lock_sql:expr, $recall_sql:expr) => {
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
                self.write_transaction(|conn| conn.move_money(movement, now))?.into_result()
            }

            fn cancel_payment(
                &mut self,
                user_id: i64,
                payment: &Reference,
                now: NaiveDateTime,
            ) -> Result<Settlement, BillingError> {
                self.write_transaction(|conn| {
                    let withdrawn = match conn.recall(user_id, payment.as_str())? {
                        Recall::NoAccount => return Err(BillingError::NoAccount(user_id)),
                        Recall::Earlier(EarlierAnswer::Moved(entry)) if entry.kind == EntryKind::Withdrawal => entry,
                        Recall::Earlier(EarlierAnswer::Moved(_)) => return Err(BillingError::ReferenceReused),
                        Recall::Earlier(EarlierAnswer::Declined { .. }) => {
                            let balance = conn.account(user_id)?.map_or(0, |a| a.balance);
                            return Ok(Settlement::NothingCharged { user_id, balance });
                        }
                        Recall::Fresh => {
                            let balance = conn.account(user_id)?.map_or(0, |a| a.balance);
                            diesel::insert_into(declined_withdrawals::table)
                                .values((
                                    declined_withdrawals::user_id.eq(user_id),
                                    declined_withdrawals::reference.eq(payment.as_str()),
                                    declined_withdrawals::amount.eq(0),
                                    declined_withdrawals::balance.eq(balance),
                                    declined_withdrawals::reason.eq(Refusal::Voided),
                                    declined_withdrawals::created_at.eq(now),
                                ))
                                .execute(conn)?;
                            return Ok(Settlement::NothingCharged { user_id, balance });
                        }
                    };
                    // The refund: a credit of what was withdrawn, under a
                    // reference of its own, so it happens once however
                    // often the cancellation is settled.
                    let amount = Amount::parse("amount", withdrawn.amount)?;
                    let refund =
                        Movement { user_id, kind: EntryKind::Refund, amount, reference: Some(payment.refund()) };
                    match conn.move_money(&refund, now)? {
                        Outcome::Moved(receipt) => Ok(Settlement::Refunded(receipt, withdrawn.amount)),
                        Outcome::Declined { .. } | Outcome::Voided => Err(BillingError::ReferenceReused),
                    }
                })
            }

            fn move_money(&mut self, movement: &Movement, now: NaiveDateTime) -> Result<Outcome, BillingError> {
                let user_id = movement.user_id;
                let account = accounts::table.find(user_id);
                if let Some(reference) = &movement.reference {
                    match self.recall(user_id, reference.as_str())? {
                        Recall::NoAccount => return Err(BillingError::NoAccount(user_id)),
                        Recall::Earlier(earlier) => return earlier.replay(movement),
                        Recall::Fresh => {}
                    }
                }
                let amount = movement.amount.minor_units();
                // The condition is the whole check: no read-then-write race.
                let balance_after: Option<i64> = match movement.kind.credits() {
                    true => diesel::update(account.filter(accounts::balance.le(i64::MAX - amount)))
                        .set((accounts::balance.eq(accounts::balance + amount), accounts::updated_at.eq(now)))
                        .returning(accounts::balance)
                        .prepared()
                        .get_result(self)
                        .optional()?,
                    false => diesel::update(account.filter(accounts::balance.ge(amount)))
                        .set((accounts::balance.eq(accounts::balance - amount), accounts::updated_at.eq(now)))
                        .returning(accounts::balance)
                        .prepared()
                        .get_result(self)
                        .optional()?,
                };
                let Some(balance_after) = balance_after else {
                    let Some(acc) = self.account(user_id)? else {
                        return Err(BillingError::NoAccount(user_id));
                    };
                    if movement.kind.credits() {
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
                            .execute(self)?;
                    }
                    return Ok(Outcome::Declined { balance: acc.balance, amount });
                };
                let transaction_id = diesel::insert_into(ledger_entries::table)
                    .values((
                        ledger_entries::user_id.eq(user_id),
                        ledger_entries::kind.eq(movement.kind),
                        ledger_entries::amount.eq(amount),
                        ledger_entries::balance_after.eq(balance_after),
                        ledger_entries::reference.eq(movement.reference.as_ref().map(|r| r.as_str())),
                        ledger_entries::created_at.eq(now),
                    ))
                    .returning(ledger_entries::id)
                    .get_result(self)?;
                Ok(Outcome::Moved(Receipt { user_id, balance: balance_after, transaction_id }))
            }

            fn recall(&mut self, user_id: i64, reference: &str) -> QueryResult<Recall> {
                let lock: Option<&str> = $lock_sql;
                if let Some(lock) = lock {
                    // Read back (not `execute`): diesel keeps a statement
                    // prepared only on the paths that load rows.
                    let locked = diesel::sql_query(lock)
                        .bind::<BigInt, _>(user_id)
                        .prepared()
                        .get_result::<Locked>(self)
                        .optional()?;
                    if locked.is_none() {
                        return Ok(Recall::NoAccount);
                    }
                }
                let row = diesel::sql_query($recall_sql)
                    .bind::<BigInt, _>(user_id)
                    .bind::<Text, _>(reference)
                    .prepared()
                    .get_result::<RecallRow>(self)
                    .optional()?;
                Ok(row.map_or(Recall::NoAccount, |row| row.into_recall(user_id, reference)))
            }
        }
    };
}

ledger!(
    diesel::PgConnection,
    Some("SELECT user_id FROM accounts WHERE user_id = $1 FOR UPDATE"),
    recall_sql!("$1", "$2")
);
ledger!(diesel::SqliteConnection, None, recall_sql!("?1", "?2"));
