//! What must hold in what the four services stored, whatever crashed or
//! stalled while it was written: read from their PostgreSQL databases into
//! a [`Snapshot`] and checked, with what the clients were answered
//! ([`Expectations`]), by [`check`].
//!
//! The checks are pure functions of plain data, so each can be shown to fail
//! on a hand-made snapshot (see the tests below).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct UserRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = Text)]
    pub status: String,
}

/// An `Idempotency-Key` as a service keeps it.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct KeyRow {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub resource_id: Option<i64>,
    /// `None` while the first request with the key is in progress.
    #[diesel(sql_type = Nullable<Integer>)]
    pub status_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct AccountRow {
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = BigInt)]
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct EntryRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    /// `deposit`, `withdrawal` or `refund`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct DeclinedRow {
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub reference: String,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    /// `insufficient_funds`, or `voided` (the order was cancelled first).
    #[diesel(sql_type = Text)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct OrderRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = BigInt)]
    pub price: i64,
    #[diesel(sql_type = Text)]
    pub status: String,
    /// `notified_at` is set: the saga is over.
    #[diesel(sql_type = Bool)]
    pub notified: bool,
    /// What a cancellation gave back, as order-service recorded it.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub refunded: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct LetterRow {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = BigInt)]
    pub order_id: i64,
    #[diesel(sql_type = Text)]
    pub kind: String,
}

/// Everything the four services stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub users: Vec<UserRow>,
    pub user_keys: Vec<KeyRow>,
    pub accounts: Vec<AccountRow>,
    pub ledger: Vec<EntryRow>,
    pub declined: Vec<DeclinedRow>,
    pub orders: Vec<OrderRow>,
    pub order_keys: Vec<KeyRow>,
    pub letters: Vec<LetterRow>,
}

/// The four services' database URLs (PostgreSQL).
#[derive(Debug, Clone)]
pub struct DatabaseUrls {
    pub users: String,
    pub billing: String,
    pub orders: String,
    pub notifications: String,
}

fn connect(url: &str) -> Result<PgConnection, String> {
    PgConnection::establish(url).map_err(|e| format!("cannot connect to {url}: {e}"))
}

fn load<T: QueryableByName<diesel::pg::Pg> + 'static>(conn: &mut PgConnection, sql: &str) -> Result<Vec<T>, String> {
    diesel::sql_query(sql).load(conn).map_err(|e| format!("{sql}: {e}"))
}

impl Snapshot {
    /// Reads the services' tables (blocking; each table in one statement).
    pub fn read(urls: &DatabaseUrls) -> Result<Snapshot, String> {
        let mut users = connect(&urls.users)?;
        let mut billing = connect(&urls.billing)?;
        let mut orders = connect(&urls.orders)?;
        let mut letters = connect(&urls.notifications)?;
        let keys = "SELECT key, resource_id, status_code FROM idempotency_keys ORDER BY key";
        Ok(Snapshot {
            users: load(&mut users, "SELECT id, username, status FROM users ORDER BY id")?,
            user_keys: load(&mut users, keys)?,
            accounts: load(&mut billing, "SELECT user_id, balance FROM accounts ORDER BY user_id")?,
            ledger: load(&mut billing, "SELECT id, user_id, kind, amount, reference FROM ledger_entries ORDER BY id")?,
            declined: load(&mut billing, "SELECT user_id, reference, amount, reason FROM declined_withdrawals")?,
            orders: load(
                &mut orders,
                "SELECT id, user_id, price, status, notified_at IS NOT NULL AS notified, refunded \
                 FROM orders ORDER BY id",
            )?,
            order_keys: load(&mut orders, keys)?,
            letters: load(&mut letters, "SELECT id, user_id, order_id, kind FROM notifications ORDER BY id")?,
        })
    }
}

/// Work the recovery loops still have to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unfinished {
    pub pending_orders: i64,
    /// Decided, but the letter is not known to be stored.
    pub unnotified_orders: i64,
    /// Stored, but their billing account is not known to be open.
    pub pending_users: i64,
    /// Decided or cancelled orders whose `Idempotency-Key` has no answer
    /// yet (an order cancelled before its payment was decided gets it from
    /// the next recovery round).
    pub unanswered_keys: i64,
}

impl Unfinished {
    pub fn is_settled(&self) -> bool {
        *self == Unfinished::default()
    }

    /// Reads the counts from the order and user databases.
    pub fn read(urls: &DatabaseUrls) -> Result<Unfinished, String> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let count = |url: &str, sql: &str| -> Result<i64, String> {
            let mut conn = connect(url)?;
            Ok(load::<Count>(&mut conn, sql)?.first().map_or(0, |c| c.n))
        };
        Ok(Unfinished {
            pending_orders: count(&urls.orders, "SELECT count(*) AS n FROM orders WHERE status = 'pending'")?,
            unnotified_orders: count(
                &urls.orders,
                "SELECT count(*) AS n FROM orders WHERE status <> 'pending' AND notified_at IS NULL",
            )?,
            pending_users: count(&urls.users, "SELECT count(*) AS n FROM users WHERE status = 'pending'")?,
            unanswered_keys: count(
                &urls.orders,
                "SELECT count(*) AS n FROM idempotency_keys k JOIN orders o ON o.id = k.resource_id \
                 WHERE k.status_code IS NULL AND o.status <> 'pending'",
            )?,
        })
    }
}

impl fmt::Display for Unfinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pending order(s), {} decided but not notified, {} pending user(s), {} unanswered order key(s)",
            self.pending_orders, self.unnotified_orders, self.pending_users, self.unanswered_keys
        )
    }
}

/// The final answer a client got for a request, after every retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A definite answer: its status and JSON body.
    Definite(u16, Value),
    /// Never a definite one (the last thing seen: a timeout, a 503, a 409
    /// `request-in-progress`, ...).
    Unsettled(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DepositMade {
    pub user_id: i64,
    pub reference: String,
    pub amount: i64,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderPlaced {
    pub user_id: i64,
    pub key: String,
    pub price: i64,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelAsked {
    pub user_id: i64,
    pub order_id: i64,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRegistered {
    pub key: String,
    pub username: String,
    pub answer: Answer,
}

/// What the clients asked for and were answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    pub deposits: Vec<DepositMade>,
    pub orders: Vec<OrderPlaced>,
    pub registrations: Vec<UserRegistered>,
    pub cancels: Vec<CancelAsked>,
    /// Every request that wrote anything is listed above (so whatever the
    /// databases hold beyond it is a stray write). False when other clients
    /// used the system too; then only the data's own consistency is checked.
    pub complete: bool,
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// A short name of the invariant, for grouping.
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.invariant, self.detail)
    }
}

/// Violations as a report shows them: `violations: none`, or grouped by
/// invariant with a dozen details of each (indented lines, each ending in a
/// newline).
pub struct Grouped<'a>(pub &'a [Violation]);

impl fmt::Display for Grouped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "  violations: none");
        }
        writeln!(f, "  VIOLATIONS: {}", self.0.len())?;
        let mut by_invariant: BTreeMap<&str, Vec<&Violation>> = BTreeMap::new();
        for v in self.0 {
            by_invariant.entry(v.invariant).or_default().push(v);
        }
        for (invariant, found) in by_invariant {
            writeln!(f, "    {invariant}: {}", found.len())?;
            for v in found.iter().take(12) {
                writeln!(f, "      {}", v.detail)?;
            }
            if found.len() > 12 {
                writeln!(f, "      ... and {} more", found.len() - 12)?;
            }
        }
        Ok(())
    }
}

struct Found(Vec<Violation>);

impl Found {
    fn add(&mut self, invariant: &'static str, detail: impl Into<String>) {
        self.0.push(Violation { invariant, detail: detail.into() });
    }
}

pub const PAID: &str = "paid";
pub const REJECTED: &str = "rejected";
pub const CANCELLED: &str = "cancelled";

/// The reference billing keeps an order's payment under.
pub fn payment_reference(order_id: i64) -> String {
    format!("order-{order_id}")
}

/// The reference of the refund that gives an order's payment back.
pub fn refund_reference(order_id: i64) -> String {
    format!("refund-{}", payment_reference(order_id))
}

/// Every invariant, on the stored data and on what clients were told.
pub fn check(s: &Snapshot, e: &Expectations) -> Vec<Violation> {
    let mut found = Found(Vec::new());
    check_ledger(s, &mut found);
    check_orders(s, &mut found);
    check_letters(s, &mut found);
    check_keys(s, &mut found);
    check_users(s, &mut found);
    check_answers(s, e, &mut found);
    if e.complete {
        check_model(s, e, &mut found);
    }
    found.0.sort();
    found.0
}

/// Each account's balance is its ledger's sum; a reference has one outcome.
fn check_ledger(s: &Snapshot, found: &mut Found) {
    let mut sums: BTreeMap<i64, i64> = BTreeMap::new();
    for entry in &s.ledger {
        let signed = match entry.kind.as_str() {
            "deposit" | "refund" => entry.amount,
            "withdrawal" => -entry.amount,
            other => {
                found.add("ledger-kind", format!("entry {} has kind {other:?}", entry.id));
                0
            }
        };
        *sums.entry(entry.user_id).or_default() += signed;
    }
    let accounts: BTreeSet<i64> = s.accounts.iter().map(|a| a.user_id).collect();
    for account in &s.accounts {
        let sum = sums.get(&account.user_id).copied().unwrap_or(0);
        if account.balance != sum {
            found.add(
                "balance-is-ledger-sum",
                format!(
                    "user {}: balance {} but deposits − withdrawals = {sum} (off by {})",
                    account.user_id,
                    account.balance,
                    account.balance - sum
                ),
            );
        }
    }
    for user in sums.keys().filter(|u| !accounts.contains(u)) {
        found.add("balance-is-ledger-sum", format!("ledger entries for user {user}, who has no account"));
    }
    let mut entries_by_reference: BTreeMap<(i64, &str), usize> = BTreeMap::new();
    for entry in &s.ledger {
        if let Some(reference) = &entry.reference {
            *entries_by_reference.entry((entry.user_id, reference)).or_default() += 1;
        }
    }
    for ((user, reference), n) in &entries_by_reference {
        if *n > 1 {
            found.add("one-outcome-per-reference", format!("user {user}: {n} ledger entries under {reference:?}"));
        }
    }
    for declined in &s.declined {
        if entries_by_reference.contains_key(&(declined.user_id, declined.reference.as_str())) {
            found.add(
                "one-outcome-per-reference",
                format!(
                    "user {}: {:?} is both a ledger entry and a declined withdrawal (of {})",
                    declined.user_id, declined.reference, declined.amount
                ),
            );
        }
    }
}

/// The ledger entries under each reference.
fn entries_by_reference(s: &Snapshot) -> BTreeMap<&str, Vec<&EntryRow>> {
    let mut by: BTreeMap<&str, Vec<&EntryRow>> = BTreeMap::new();
    for entry in &s.ledger {
        if let Some(reference) = &entry.reference {
            by.entry(reference.as_str()).or_default().push(entry);
        }
    }
    by
}

fn described(entries: &[&EntryRow]) -> Vec<(i64, String, i64, i64)> {
    entries.iter().map(|e| (e.id, e.kind.clone(), e.amount, e.user_id)).collect()
}

/// Every order decided and finished; paid ones charged exactly once under
/// `order-{id}`, rejected ones not at all, cancelled ones given back
/// exactly what was taken (net 0).
fn check_orders(s: &Snapshot, found: &mut Found) {
    let by_reference = entries_by_reference(s);
    let under = |reference: &str| by_reference.get(reference).map(Vec::as_slice).unwrap_or_default();
    let declines: BTreeMap<(i64, &str), &DeclinedRow> =
        s.declined.iter().map(|d| ((d.user_id, d.reference.as_str()), d)).collect();
    for order in &s.orders {
        let id = order.id;
        if ![PAID, REJECTED, CANCELLED].contains(&order.status.as_str()) {
            found.add("order-decided", format!("order {id} is {:?}", order.status));
        }
        if !order.notified {
            found.add("order-finished", format!("order {id} ({}) has no notified_at", order.status));
        }
        let reference = payment_reference(id);
        let charges = under(&reference);
        let refunds = under(&refund_reference(id));
        let right_charges = charges
            .iter()
            .filter(|e| e.kind == "withdrawal" && e.amount == order.price && e.user_id == order.user_id)
            .count();
        if order.status != CANCELLED && !refunds.is_empty() {
            found.add(
                "refund-only-when-cancelled",
                format!("{} order {id} has refunds: {:?}", order.status, described(refunds)),
            );
        }
        match order.status.as_str() {
            PAID if charges.len() != 1 || right_charges != 1 => found.add(
                "paid-charged-once",
                format!(
                    "paid order {id} (user {}, price {}): {} ledger entr(ies) under {reference}: {:?}",
                    order.user_id,
                    order.price,
                    charges.len(),
                    described(charges)
                ),
            ),
            REJECTED => {
                if !charges.is_empty() {
                    found.add(
                        "rejected-not-charged",
                        format!(
                            "rejected order {id} (user {}, price {}) was charged: {:?}",
                            order.user_id,
                            order.price,
                            described(charges)
                        ),
                    );
                }
                match declines.get(&(order.user_id, reference.as_str())) {
                    Some(d) if d.amount == order.price && d.reason == "insufficient_funds" => {}
                    Some(d) => found.add(
                        "rejected-declined-by-billing",
                        format!(
                            "rejected order {id}: billing declined {} ({}; the price is {})",
                            d.amount, d.reason, order.price
                        ),
                    ),
                    None => found.add(
                        "rejected-declined-by-billing",
                        format!("rejected order {id}: billing has no declined withdrawal {reference}"),
                    ),
                }
            }
            CANCELLED => check_cancelled(order, charges, refunds, declines.get(&(order.user_id, &reference)), found),
            _ => {}
        }
    }
    // Money moved under an order's reference for an order that is not there,
    // and refunds for one that is not cancelled.
    let orders: BTreeMap<i64, &OrderRow> = s.orders.iter().map(|o| (o.id, o)).collect();
    for entry in &s.ledger {
        let Some(reference) = entry.reference.as_deref() else { continue };
        let (id, is_refund) = match (reference.strip_prefix("refund-order-"), reference.strip_prefix("order-")) {
            (Some(id), _) => (id, true),
            (None, Some(id)) => (id, false),
            (None, None) => continue,
        };
        match id.parse::<i64>().ok().and_then(|id| orders.get(&id)) {
            Some(_) => {} // judged above, from the order's side
            None => found.add(
                if is_refund { "refund-only-when-cancelled" } else { "payment-has-order" },
                format!(
                    "ledger entry {} ({} {}) under {reference:?}: no such order",
                    entry.id, entry.kind, entry.amount
                ),
            ),
        }
    }
}

/// A cancelled order: what was withdrawn under its payment (at most its
/// price, once) came back in at most one refund, and order-service
/// recorded that amount; nothing withdrawn means billing closed the
/// reference (declined or voided), so no payment can land later.
fn check_cancelled(
    order: &OrderRow,
    charges: &[&EntryRow],
    refunds: &[&EntryRow],
    declined: Option<&&DeclinedRow>,
    found: &mut Found,
) {
    let id = order.id;
    let taken: i64 = charges.iter().filter(|e| e.kind == "withdrawal").map(|e| e.amount).sum();
    let given: i64 = refunds.iter().filter(|e| e.kind == "refund").map(|e| e.amount).sum();
    let wrong_charge =
        charges.iter().any(|e| e.kind != "withdrawal" || e.amount != order.price || e.user_id != order.user_id);
    let wrong_refund = refunds.iter().any(|e| e.kind != "refund" || e.user_id != order.user_id);
    if charges.len() > 1 || refunds.len() > 1 || wrong_charge || wrong_refund {
        found.add(
            "cancelled-refunded-once",
            format!(
                "cancelled order {id} (user {}, price {}): under its payment {:?}, under its refund {:?}",
                order.user_id,
                order.price,
                described(charges),
                described(refunds)
            ),
        );
    }
    if taken != given {
        found.add(
            "cancelled-net-zero",
            format!("cancelled order {id} (user {}): {taken} withdrawn, {given} refunded", order.user_id),
        );
    }
    if order.refunded.unwrap_or(0) != given {
        found.add(
            "cancelled-net-zero",
            format!("cancelled order {id}: order-service recorded {:?} refunded, billing {given}", order.refunded),
        );
    }
    if charges.is_empty() && declined.is_none() {
        found.add(
            "cancelled-payment-closed",
            format!("cancelled order {id}: nothing withdrawn, yet its payment reference is not closed"),
        );
    }
}

/// The letters an order's status calls for: exactly one of the first kind,
/// and at most one of the second (a paid order cancelled after its letter
/// went out has both).
fn letters_for(status: &str) -> Option<(&'static str, Option<&'static str>)> {
    match status {
        PAID => Some(("order_paid", None)),
        REJECTED => Some(("order_rejected", None)),
        CANCELLED => Some(("order_cancelled", Some("order_paid"))),
        _ => None,
    }
}

/// One letter per order, of the kind its outcome calls for, to its user;
/// no letter without an order.
fn check_letters(s: &Snapshot, found: &mut Found) {
    let mut by_order: BTreeMap<i64, Vec<&LetterRow>> = BTreeMap::new();
    for letter in &s.letters {
        by_order.entry(letter.order_id).or_default().push(letter);
    }
    for order in &s.orders {
        let letters = by_order.remove(&order.id).unwrap_or_default();
        let Some((want, earlier)) = letters_for(&order.status) else {
            if !letters.is_empty() {
                found.add("one-right-letter", format!("order {} is {} yet has a letter", order.id, order.status));
            }
            continue;
        };
        let kinds: Vec<&str> = letters.iter().map(|l| l.kind.as_str()).collect();
        let wanted = kinds.iter().filter(|&&k| k == want).count();
        let others: Vec<&str> = kinds.iter().copied().filter(|&k| k != want).collect();
        if wanted != 1 || !(others.is_empty() || (others.len() == 1 && Some(others[0]) == earlier)) {
            found.add(
                "one-right-letter",
                format!("{} order {}: letters {kinds:?}, want [{want:?}]", order.status, order.id),
            );
        }
        for letter in letters.iter().filter(|l| l.user_id != order.user_id) {
            found.add(
                "one-right-letter",
                format!(
                    "letter {} for order {} went to user {}, not {}",
                    letter.id, order.id, letter.user_id, order.user_id
                ),
            );
        }
    }
    for (order_id, letters) in by_order {
        for letter in letters {
            found.add(
                "letter-has-order",
                format!("letter {} ({}) for order {order_id}: no such order", letter.id, letter.kind),
            );
        }
    }
}

/// A key names one resource, and once that resource is finished the key
/// holds its final answer (a replay is never told "in progress" for good).
fn check_keys(s: &Snapshot, found: &mut Found) {
    for (what, keys, finished) in [
        ("order", &s.order_keys, s.orders.iter().filter(|o| o.notified).map(|o| o.id).collect::<BTreeSet<_>>()),
        ("user", &s.user_keys, s.users.iter().filter(|u| u.status == "active").map(|u| u.id).collect()),
    ] {
        let mut owners: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
        for key in keys {
            if let Some(id) = key.resource_id {
                owners.entry(id).or_default().push(&key.key);
            }
            match (key.resource_id, key.status_code) {
                (Some(id), None) if finished.contains(&id) => found.add(
                    "key-answer-stored",
                    format!("{what} key {:?}: {what} {id} is finished but the key is still in progress", key.key),
                ),
                (None, None) => found.add(
                    "key-answer-stored",
                    format!("{what} key {:?} is claimed but names no {what} and has no answer", key.key),
                ),
                _ => {}
            }
        }
        for (id, keys) in owners.into_iter().filter(|(_, k)| k.len() > 1) {
            found.add("one-resource-per-key", format!("{what} {id} is named by {} keys: {keys:?}", keys.len()));
        }
    }
}

/// Users are active with an account.
fn check_users(s: &Snapshot, found: &mut Found) {
    let accounts: BTreeSet<i64> = s.accounts.iter().map(|a| a.user_id).collect();
    for user in &s.users {
        if user.status != "active" {
            found.add("user-finished", format!("user {} ({}) is {:?}", user.id, user.username, user.status));
        } else if !accounts.contains(&user.id) {
            found
                .add("user-has-account", format!("active user {} ({}) has no billing account", user.id, user.username));
        }
    }
}

/// An order's Idempotency-Key as order-service stores it: scoped to the
/// user the request acted for.
fn stored_order_key(user_id: i64, key: &str) -> String {
    format!("user-{user_id}:{}", service_kit::auth::sha256_hex(key.as_bytes()))
}

/// What the clients were told agrees with what was stored, and every
/// request got a definite, successful answer in the end.
fn check_answers(s: &Snapshot, e: &Expectations, found: &mut Found) {
    let orders: BTreeMap<i64, &OrderRow> = s.orders.iter().map(|o| (o.id, o)).collect();
    let order_keys: BTreeMap<&str, &KeyRow> = s.order_keys.iter().map(|k| (k.key.as_str(), k)).collect();
    for placed in &e.orders {
        let key = &placed.key;
        let stored_key = stored_order_key(placed.user_id, key);
        match &placed.answer {
            Answer::Unsettled(last) => found.add("definite-answer", format!("order key {key:?}: none; last {last}")),
            Answer::Definite(status @ (201 | 202), body) => {
                let Some(id) = body["id"].as_i64() else {
                    found.add("answer-matches-store", format!("order key {key:?}: {status} without an id: {body}"));
                    continue;
                };
                let Some(order) = orders.get(&id) else {
                    found.add("answer-matches-store", format!("order key {key:?}: answered order {id}, not stored"));
                    continue;
                };
                if order.user_id != placed.user_id || order.price != placed.price {
                    found.add(
                        "answer-matches-store",
                        format!(
                            "order {id} (key {key:?}): stored for user {} price {}, asked for user {} price {}",
                            order.user_id, order.price, placed.user_id, placed.price
                        ),
                    );
                }
                let told = body["status"].as_str().unwrap_or_default();
                // Cancelled since: by a client that was told it paid or pending.
                let cancelled_since = order.status == CANCELLED && told != REJECTED;
                if *status == 201 && told != order.status && !cancelled_since {
                    found.add(
                        "answer-matches-store",
                        format!("order {id} (key {key:?}): answered {told}, stored {}", order.status),
                    );
                }
                if order_keys.get(stored_key.as_str()).and_then(|k| k.resource_id) != Some(id) {
                    found.add(
                        "one-resource-per-key",
                        format!(
                            "order key {key:?}: answered order {id}, the key names {:?}",
                            order_keys.get(stored_key.as_str()).map(|k| k.resource_id)
                        ),
                    );
                }
            }
            Answer::Definite(status, body) => found.add(
                "request-succeeds",
                format!("order key {key:?} (user {}, price {}): {status} {body}", placed.user_id, placed.price),
            ),
        }
    }
    for cancel in &e.cancels {
        let id = cancel.order_id;
        let stored = orders.get(&id).map(|o| o.status.as_str());
        let wrong = |found: &mut Found, told: &str| {
            found.add("answer-matches-store", format!("cancel of order {id}: answered {told}, stored {stored:?}"))
        };
        match &cancel.answer {
            Answer::Unsettled(last) => found.add("definite-answer", format!("cancel of order {id}: none; last {last}")),
            Answer::Definite(status @ (200 | 202), body) => {
                let told = body["status"].as_str().unwrap_or_default();
                let want = if *status == 200 { CANCELLED } else { "cancelling" };
                if told != want || body["id"].as_i64() != Some(id) || stored != Some(CANCELLED) {
                    wrong(found, &format!("{status} {body}"));
                }
            }
            Answer::Definite(409, body) if problem_slug(body) == "order-not-cancellable" => {
                if stored != Some(REJECTED) {
                    wrong(found, "409 order-not-cancellable");
                }
            }
            Answer::Definite(status, body) => found
                .add("request-succeeds", format!("cancel of order {id} (user {}): {status} {body}", cancel.user_id)),
        }
    }
    let entries: BTreeMap<(i64, &str), &EntryRow> =
        s.ledger.iter().filter_map(|en| en.reference.as_deref().map(|r| ((en.user_id, r), en))).collect();
    for deposit in &e.deposits {
        let (user, reference) = (deposit.user_id, deposit.reference.as_str());
        let stored = entries.get(&(user, reference));
        match &deposit.answer {
            Answer::Unsettled(last) => {
                found.add("definite-answer", format!("deposit {reference:?}: none; last {last}"))
            }
            Answer::Definite(200, _) => match stored {
                Some(en) if en.kind == "deposit" && en.amount == deposit.amount => {}
                Some(en) => found.add(
                    "answer-matches-store",
                    format!("deposit {reference:?} of {}: stored as {} {}", deposit.amount, en.kind, en.amount),
                ),
                None => {
                    found.add("answer-matches-store", format!("deposit {reference:?} answered 200, not in the ledger"))
                }
            },
            Answer::Definite(status, body) => {
                found.add("request-succeeds", format!("deposit {reference:?} (user {user}): {status} {body}"));
                if stored.is_some() {
                    found.add(
                        "answer-matches-store",
                        format!("deposit {reference:?} answered {status}, yet in the ledger"),
                    );
                }
            }
        }
    }
    let users: BTreeMap<i64, &UserRow> = s.users.iter().map(|u| (u.id, u)).collect();
    for registered in &e.registrations {
        let key = &registered.key;
        match &registered.answer {
            Answer::Unsettled(last) => found.add("definite-answer", format!("user key {key:?}: none; last {last}")),
            Answer::Definite(201, body) => match body["id"].as_i64().and_then(|id| users.get(&id)) {
                Some(user) if user.username == registered.username => {}
                Some(user) => found.add(
                    "answer-matches-store",
                    format!(
                        "user key {key:?}: answered user {} stored as {:?}, asked {:?}",
                        user.id, user.username, registered.username
                    ),
                ),
                None => {
                    found.add("answer-matches-store", format!("user key {key:?}: answered {body}, no such user stored"))
                }
            },
            Answer::Definite(status, body) => {
                found.add("request-succeeds", format!("user key {key:?}: {status} {body}"))
            }
        }
    }
}

/// The last segment of a problem's `type`.
pub fn problem_slug(body: &Value) -> &str {
    body["type"].as_str().and_then(|t| t.rsplit('/').next()).unwrap_or_default()
}

/// With every request known: the balance is what was deposited (answered
/// 200) less what was paid (a cancelled order's money came back), and
/// nothing was written that nobody asked for.
fn check_model(s: &Snapshot, e: &Expectations, found: &mut Found) {
    let mut expected: BTreeMap<i64, i64> = s.accounts.iter().map(|a| (a.user_id, 0)).collect();
    let ledger_refs: BTreeMap<(i64, &str), &EntryRow> =
        s.ledger.iter().filter_map(|en| en.reference.as_deref().map(|r| ((en.user_id, r), en))).collect();
    let mut asked: BTreeSet<(i64, &str)> = BTreeSet::new();
    for deposit in &e.deposits {
        asked.insert((deposit.user_id, &deposit.reference));
        let counted = match &deposit.answer {
            Answer::Definite(200, _) => true,
            // Nobody knows whether it went through: the ledger says.
            Answer::Unsettled(_) => ledger_refs.contains_key(&(deposit.user_id, deposit.reference.as_str())),
            Answer::Definite(..) => false,
        };
        if counted {
            *expected.entry(deposit.user_id).or_default() += deposit.amount;
        }
    }
    for order in s.orders.iter().filter(|o| o.status == PAID) {
        *expected.entry(order.user_id).or_default() -= order.price;
    }
    for account in &s.accounts {
        let want = expected.get(&account.user_id).copied().unwrap_or(0);
        if account.balance != want {
            found.add(
                "balance-is-deposits-less-paid",
                format!(
                    "user {}: balance {}, but deposits answered 200 − paid orders = {want} (off by {})",
                    account.user_id,
                    account.balance,
                    account.balance - want
                ),
            );
        }
    }
    for entry in &s.ledger {
        let stray = match (entry.kind.as_str(), entry.reference.as_deref()) {
            ("deposit", Some(r)) => !asked.contains(&(entry.user_id, r)),
            ("withdrawal", Some(r)) => !r.starts_with("order-"),
            ("refund", Some(r)) => !r.starts_with("refund-order-"),
            _ => true,
        };
        if stray {
            found.add(
                "no-stray-write",
                format!(
                    "ledger entry {} ({} {} under {:?}) that no client asked for",
                    entry.id, entry.kind, entry.amount, entry.reference
                ),
            );
        }
    }
    let asked_to_cancel: BTreeSet<i64> = e.cancels.iter().map(|c| c.order_id).collect();
    for order in s.orders.iter().filter(|o| o.status == CANCELLED && !asked_to_cancel.contains(&o.id)) {
        found.add("no-stray-write", format!("order {} is cancelled, yet no client cancelled it", order.id));
    }
    let keyed: BTreeSet<i64> = s.order_keys.iter().filter_map(|k| k.resource_id).collect();
    let sent: BTreeSet<String> = e.orders.iter().map(|o| stored_order_key(o.user_id, &o.key)).collect();
    for order in s.orders.iter().filter(|o| !keyed.contains(&o.id)) {
        found.add(
            "one-resource-per-key",
            format!("order {} (user {}, price {}) is named by no key", order.id, order.user_id, order.price),
        );
    }
    for key in s.order_keys.iter().filter(|k| !sent.contains(k.key.as_str())) {
        found.add("no-stray-write", format!("order key {:?} that no client sent", key.key));
    }
    let user_keyed: BTreeSet<i64> = s.user_keys.iter().filter_map(|k| k.resource_id).collect();
    for user in s.users.iter().filter(|u| !user_keyed.contains(&u.id)) {
        found.add("one-resource-per-key", format!("user {} ({}) is named by no key", user.id, user.username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A consistent little world: user 1 deposited 1000 (`d1`) and 50
    /// (`d2`), order 10 (300) paid, order 11 (900) rejected, order 20 (200)
    /// paid and then cancelled (refunded), order 21 (400) cancelled before
    /// its payment (voided); a cancel of order 11 was refused.
    fn world() -> (Snapshot, Expectations) {
        let key = |key: &str, id: i64| KeyRow { key: key.into(), resource_id: Some(id), status_code: Some(201) };
        let entry = |id, kind: &str, amount, reference: &str| EntryRow {
            id,
            user_id: 1,
            kind: kind.into(),
            amount,
            reference: Some(reference.into()),
        };
        let snapshot = Snapshot {
            users: vec![UserRow { id: 1, username: "ann".into(), status: "active".into() }],
            user_keys: vec![key("u-1", 1)],
            accounts: vec![AccountRow { user_id: 1, balance: 750 }],
            ledger: vec![
                entry(1, "deposit", 1000, "d1"),
                entry(2, "withdrawal", 300, "order-10"),
                entry(3, "deposit", 50, "d2"),
                entry(7, "withdrawal", 200, "order-20"),
                entry(8, "refund", 200, "refund-order-20"),
            ],
            declined: vec![
                DeclinedRow {
                    user_id: 1,
                    reference: "order-11".into(),
                    amount: 900,
                    reason: "insufficient_funds".into(),
                },
                DeclinedRow { user_id: 1, reference: "order-21".into(), amount: 400, reason: "voided".into() },
            ],
            orders: vec![
                OrderRow { id: 10, user_id: 1, price: 300, status: "paid".into(), notified: true, refunded: None },
                OrderRow { id: 11, user_id: 1, price: 900, status: "rejected".into(), notified: true, refunded: None },
                OrderRow {
                    id: 20,
                    user_id: 1,
                    price: 200,
                    status: "cancelled".into(),
                    notified: true,
                    refunded: Some(200),
                },
                OrderRow {
                    id: 21,
                    user_id: 1,
                    price: 400,
                    status: "cancelled".into(),
                    notified: true,
                    refunded: Some(0),
                },
            ],
            order_keys: vec![
                key(&stored_order_key(1, "o-10"), 10),
                key(&stored_order_key(1, "o-11"), 11),
                key(&stored_order_key(1, "o-20"), 20),
                key(&stored_order_key(1, "o-21"), 21),
            ],
            letters: vec![
                LetterRow { id: 1, user_id: 1, order_id: 10, kind: "order_paid".into() },
                LetterRow { id: 2, user_id: 1, order_id: 11, kind: "order_rejected".into() },
                LetterRow { id: 5, user_id: 1, order_id: 20, kind: "order_paid".into() },
                LetterRow { id: 6, user_id: 1, order_id: 20, kind: "order_cancelled".into() },
                LetterRow { id: 7, user_id: 1, order_id: 21, kind: "order_cancelled".into() },
            ],
        };
        let ok = |status, body| Answer::Definite(status, body);
        let expectations = Expectations {
            deposits: vec![
                DepositMade { user_id: 1, reference: "d1".into(), amount: 1000, answer: ok(200, json!({})) },
                DepositMade {
                    user_id: 1,
                    reference: "d2".into(),
                    amount: 50,
                    answer: Answer::Unsettled("timeout".into()),
                },
            ],
            orders: vec![
                OrderPlaced {
                    user_id: 1,
                    key: "o-10".into(),
                    price: 300,
                    answer: ok(201, json!({"id": 10, "status": "paid"})),
                },
                OrderPlaced {
                    user_id: 1,
                    key: "o-11".into(),
                    price: 900,
                    answer: ok(202, json!({"id": 11, "status": "pending"})),
                },
                OrderPlaced {
                    user_id: 1,
                    key: "o-20".into(),
                    price: 200,
                    answer: ok(201, json!({"id": 20, "status": "paid"})),
                },
                OrderPlaced {
                    user_id: 1,
                    key: "o-21".into(),
                    price: 400,
                    answer: ok(202, json!({"id": 21, "status": "pending"})),
                },
            ],
            cancels: vec![
                CancelAsked { user_id: 1, order_id: 20, answer: ok(200, json!({"id": 20, "status": "cancelled"})) },
                CancelAsked { user_id: 1, order_id: 21, answer: ok(202, json!({"id": 21, "status": "cancelling"})) },
                CancelAsked {
                    user_id: 1,
                    order_id: 11,
                    answer: ok(409, json!({"type": "https://x/problems/order-not-cancellable"})),
                },
            ],
            registrations: vec![UserRegistered {
                key: "u-1".into(),
                username: "ann".into(),
                answer: ok(201, json!({"id": 1})),
            }],
            complete: true,
        };
        (snapshot, expectations)
    }

    fn names(violations: &[Violation]) -> BTreeSet<&'static str> {
        violations.iter().map(|v| v.invariant).collect()
    }

    /// The unsettled deposit is its own violation; settle it for the rest.
    fn settled() -> (Snapshot, Expectations) {
        let (s, mut e) = world();
        e.deposits[1].answer = Answer::Definite(200, json!({}));
        (s, e)
    }

    #[test]
    fn a_consistent_world_passes() {
        let (s, e) = settled();
        assert_eq!(check(&s, &e), vec![]);
    }

    #[test]
    fn a_request_without_a_definite_answer_is_reported() {
        let (s, e) = world();
        let found = check(&s, &e);
        assert_eq!(names(&found), BTreeSet::from(["definite-answer"]), "{found:?}");
    }

    #[test]
    fn a_rejected_order_that_was_charged_is_caught() {
        // What issue 15's defect 6 leaves behind: a withdrawal and a decline
        // under one reference, the order rejected, the balance short.
        let (mut s, e) = settled();
        s.ledger.push(withdrawal(4, 900, 11));
        s.accounts[0].balance -= 900;
        let found = names(&check(&s, &e));
        for want in ["rejected-not-charged", "one-outcome-per-reference", "balance-is-deposits-less-paid"] {
            assert!(found.contains(want), "{want} missing from {found:?}");
        }
    }

    #[test]
    fn a_balance_off_its_ledger_is_caught() {
        let (mut s, e) = settled();
        s.accounts[0].balance += 1;
        let found = names(&check(&s, &e));
        assert!(
            found.contains("balance-is-ledger-sum") && found.contains("balance-is-deposits-less-paid"),
            "{found:?}"
        );
    }

    #[test]
    fn a_double_charge_is_caught() {
        let (mut s, e) = settled();
        s.ledger[1].reference = Some("order-10".into());
        s.ledger.push(withdrawal(5, 300, 10));
        s.accounts[0].balance -= 300;
        let found = names(&check(&s, &e));
        assert!(found.contains("paid-charged-once") && found.contains("one-outcome-per-reference"), "{found:?}");
    }

    #[test]
    fn unfinished_and_undecided_orders_are_caught() {
        let (mut s, e) = settled();
        s.orders[0].notified = false;
        s.orders[1].status = "pending".into();
        let found = names(&check(&s, &e));
        assert!(found.contains("order-finished") && found.contains("order-decided"), "{found:?}");
    }

    #[test]
    fn missing_extra_and_wrong_letters_are_caught() {
        let (mut s, e) = settled();
        s.letters[1].kind = "order_paid".into();
        assert!(names(&check(&s, &e)).contains("one-right-letter"));
        let (mut s, e) = settled();
        s.letters.push(LetterRow { id: 3, user_id: 1, order_id: 10, kind: "order_rejected".into() });
        assert!(names(&check(&s, &e)).contains("one-right-letter"));
        let (mut s, e) = settled();
        s.letters.pop();
        assert!(names(&check(&s, &e)).contains("one-right-letter"));
        let (mut s, e) = settled();
        s.letters.push(LetterRow { id: 3, user_id: 1, order_id: 99, kind: "order_paid".into() });
        assert!(names(&check(&s, &e)).contains("letter-has-order"));
    }

    #[test]
    fn a_key_left_in_progress_for_a_finished_order_is_caught() {
        // Issue 15's defect 1: the order finished, its key never completed.
        let (mut s, e) = settled();
        s.order_keys[0].status_code = None;
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["key-answer-stored"]));
    }

    #[test]
    fn two_orders_for_one_key_are_caught() {
        let (mut s, e) = settled();
        s.orders.push(OrderRow {
            id: 12,
            user_id: 1,
            price: 300,
            status: "rejected".into(),
            notified: true,
            refunded: None,
        });
        s.declined.push(DeclinedRow {
            user_id: 1,
            reference: "order-12".into(),
            amount: 300,
            reason: "insufficient_funds".into(),
        });
        s.letters.push(LetterRow { id: 3, user_id: 1, order_id: 12, kind: "order_rejected".into() });
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["one-resource-per-key"]));
    }

    #[test]
    fn an_answer_that_disagrees_with_the_store_is_caught() {
        let (s, mut e) = settled();
        e.orders[0].answer = Answer::Definite(201, json!({"id": 10, "status": "rejected"}));
        assert!(names(&check(&s, &e)).contains("answer-matches-store"));
        let (s, mut e) = settled();
        e.deposits[0].answer = Answer::Definite(503, json!({}));
        let found = names(&check(&s, &e));
        assert!(found.contains("request-succeeds") && found.contains("answer-matches-store"), "{found:?}");
    }

    #[test]
    fn a_pending_user_or_one_without_an_account_is_caught() {
        let (mut s, e) = settled();
        s.users[0].status = "pending".into();
        assert!(names(&check(&s, &e)).contains("user-finished"));
        let (mut s, mut e) = settled();
        s.users.push(UserRow { id: 2, username: "bob".into(), status: "active".into() });
        s.user_keys.push(KeyRow { key: "u-2".into(), resource_id: Some(2), status_code: Some(201) });
        e.registrations.push(UserRegistered {
            key: "u-2".into(),
            username: "bob".into(),
            answer: Answer::Definite(201, json!({"id": 2})),
        });
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["user-has-account"]));
    }

    #[test]
    fn stray_writes_count_only_when_every_request_is_known() {
        let (mut s, mut e) = settled();
        s.ledger.push(EntryRow {
            id: 6,
            user_id: 1,
            kind: "deposit".into(),
            amount: 5,
            reference: Some("nobody".into()),
        });
        s.accounts[0].balance += 5;
        assert!(names(&check(&s, &e)).contains("no-stray-write"));
        e.complete = false;
        assert_eq!(check(&s, &e), vec![]);
    }

    /// User 1's entries under an order's references.
    fn withdrawal(id: i64, amount: i64, order: i64) -> EntryRow {
        EntryRow { id, user_id: 1, kind: "withdrawal".into(), amount, reference: Some(payment_reference(order)) }
    }

    fn refund(id: i64, amount: i64, order: i64) -> EntryRow {
        EntryRow { id, user_id: 1, kind: "refund".into(), amount, reference: Some(refund_reference(order)) }
    }

    #[test]
    fn a_refund_sent_twice_is_caught() {
        let (mut s, e) = settled();
        s.ledger.push(refund(9, 200, 20));
        s.accounts[0].balance += 200;
        let found = names(&check(&s, &e));
        for want in [
            "cancelled-refunded-once",
            "cancelled-net-zero",
            "one-outcome-per-reference",
            "balance-is-deposits-less-paid",
        ] {
            assert!(found.contains(want), "{want} missing from {found:?}");
        }
    }

    #[test]
    fn a_cancelled_order_that_kept_the_money_is_caught() {
        let (mut s, e) = settled();
        s.ledger.retain(|en| en.kind != "refund");
        s.accounts[0].balance -= 200;
        let found = names(&check(&s, &e));
        assert!(found.contains("cancelled-net-zero") && found.contains("balance-is-deposits-less-paid"), "{found:?}");
    }

    #[test]
    fn a_payment_that_lands_after_the_void_is_caught() {
        let (mut s, e) = settled();
        s.ledger.push(withdrawal(9, 400, 21));
        s.accounts[0].balance -= 400;
        let found = names(&check(&s, &e));
        for want in ["cancelled-net-zero", "one-outcome-per-reference", "balance-is-deposits-less-paid"] {
            assert!(found.contains(want), "{want} missing from {found:?}");
        }
        // And a cancel that left the payment reference open.
        let (mut s, e) = settled();
        s.declined.retain(|d| d.reference != "order-21");
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["cancelled-payment-closed"]));
    }

    #[test]
    fn a_refund_for_an_order_not_cancelled_is_caught() {
        let (mut s, e) = settled();
        s.ledger.push(refund(9, 300, 10));
        s.accounts[0].balance += 300;
        assert!(names(&check(&s, &e)).contains("refund-only-when-cancelled"));
        let (mut s, e) = settled();
        s.ledger.push(refund(9, 300, 99));
        s.accounts[0].balance += 300;
        assert!(names(&check(&s, &e)).contains("refund-only-when-cancelled"));
    }

    #[test]
    fn a_cancelled_order_without_its_letter_or_with_a_wrong_one_is_caught() {
        let (mut s, e) = settled();
        s.letters.retain(|l| !(l.order_id == 21 && l.kind == "order_cancelled"));
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["one-right-letter"]));
        let (mut s, e) = settled();
        s.letters.push(LetterRow { id: 8, user_id: 1, order_id: 21, kind: "order_rejected".into() });
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["one-right-letter"]));
    }

    #[test]
    fn cancel_answers_are_held_to_the_store() {
        let (s, mut e) = settled();
        e.cancels[2].order_id = 20; // "not cancellable", yet it was cancelled
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["answer-matches-store"]));
        let (s, mut e) = settled();
        e.cancels[0].answer = Answer::Definite(404, json!({}));
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["request-succeeds"]));
        let (s, mut e) = settled();
        e.cancels[1].answer = Answer::Unsettled("503".into());
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["definite-answer"]));
        // A cancelled order nobody cancelled.
        let (s, mut e) = settled();
        e.cancels.retain(|c| c.order_id != 21);
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["no-stray-write"]));
    }

    #[test]
    fn a_cancel_recorded_with_the_wrong_amount_is_caught() {
        let (mut s, e) = settled();
        s.orders[2].refunded = Some(0);
        assert_eq!(names(&check(&s, &e)), BTreeSet::from(["cancelled-net-zero"]));
    }
}
