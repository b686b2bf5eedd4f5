//! Cancelling an order: the saga's compensation, exactly once whatever
//! races or crashes around it. On SQLite and on PostgreSQL; after every
//! test the money adds up (support's `assert_money_conserved`: balance =
//! deposits − withdrawals + refunds, each order's net charge its price if
//! paid and 0 otherwise).

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Orders, System, Timing, eventually};
use testkit::fault_proxy::Mode;
use testkit::{Backend, on_both_backends};

const PATIENCE: Duration = Duration::from_secs(20);

fn id_of(r: &testkit::Reply) -> i64 {
    r.body["id"].as_i64().unwrap_or_else(|| panic!("an order: {}", r.text))
}

async fn letters_of_kind(sys: &System, user: i64, kind: &str) -> Vec<Value> {
    sys.letters(user).await.into_iter().filter(|l| l["kind"] == kind).collect()
}

/// The refund entries of order `id`.
async fn refunds(sys: &System, user: i64, id: i64) -> Vec<Value> {
    let reference = format!("refund-order-{id}");
    sys.ledger(user).await.into_iter().filter(|e| e["reference"] == reference.as_str()).collect()
}

/// The order ends `cancelled` with one cancel letter, refunded `refunded`
/// (one refund entry at most), and the money adds up.
async fn assert_cancelled_once(sys: &System, user: i64, id: i64, refunded: i64) {
    let order = sys.get_order(id).await;
    assert_eq!(order.body["status"], "cancelled", "{}", order.text);
    assert_eq!(order.body["failure_reason"], Value::Null);
    let back = refunds(sys, user, id).await;
    assert_eq!(back.len(), usize::from(refunded > 0), "one refund at most: {back:?}");
    if refunded > 0 {
        assert_eq!(back[0]["kind"], "refund");
        assert_eq!(back[0]["amount"], refunded);
    }
    let lettered =
        eventually(PATIENCE, || async { letters_of_kind(sys, user, "order_cancelled").await.len() == 1 }).await;
    let letters = letters_of_kind(sys, user, "order_cancelled").await;
    assert!(lettered, "one cancel letter: {letters:?}");
    assert_eq!(letters[0]["order_id"], id);
    let said = letters[0]["body"].as_str().unwrap();
    if refunded > 0 {
        let amount = format!("{}.{:02}", refunded / 100, refunded % 100);
        assert!(said.contains(&format!("#{id}")) && said.contains(&amount), "{said}");
    } else {
        assert!(said.contains("Nothing was charged"), "{said}");
    }
    let finished = eventually(PATIENCE, || async { sys.order_row(id).await.is_finished() }).await;
    assert!(finished, "the cancellation's saga ended");
    sys.assert_money_conserved(user).await;
}

/// Cancel a paid order: 200 `cancelled`, the price back, a letter; cancel
/// again: the same answer, nothing more. A rejected order: 409 and nothing
/// changes; an unknown order, or another user's: 404.
async fn the_plain_cases(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let (user, other) = (sys.funded_user(1_000).await, sys.user().await);
    let paid = sys.order(user, 400).await;
    let id = id_of(&paid);
    assert_eq!(sys.balance(user).await, 600);

    let first = sys.cancel(user, id).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["status"], "cancelled");
    assert_eq!(sys.balance(user).await, 1_000, "the price is back");
    assert_cancelled_once(&sys, user, id, 400).await;
    let again = sys.cancel(user, id).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body, first.body, "the same body as the cancel that finished it");
    assert_cancelled_once(&sys, user, id, 400).await;
    assert_eq!(letters_of_kind(&sys, user, "order_paid").await.len(), 1, "the paid letter stays");

    let rejected = id_of(&sys.order(user, 5_000).await);
    let before = (sys.ledger(user).await, sys.letters(user).await);
    assert_eq!(sys.cancel(user, rejected).await.assert_problem(409), "order-not-cancellable");
    assert_eq!(sys.get_order(rejected).await.body["status"], "rejected");
    assert_eq!((sys.ledger(user).await, sys.letters(user).await), before, "nothing changed");

    assert_eq!(sys.cancel(user, 987_654).await.assert_problem(404), "order-not-found");
    assert_eq!(sys.cancel(other, id).await.assert_problem(404), "order-not-found", "another user's order");
    sys.api.orders.post(&format!("/orders/{id}/cancel"), json!({})).await.assert_problem(401);
    sys.assert_money_conserved(user).await;
}

/// Twenty cancels of one paid order at once: each answers 200 `cancelled`
/// or 202 `cancelling`, never 409 or 5xx; one refund, one letter.
async fn twenty_cancels_at_once(backend: Backend) {
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.funded_user(1_000).await;
    let id = id_of(&sys.order(user, 250).await);
    let answers = futures_util::future::join_all((0..20).map(|_| sys.cancel(user, id))).await;
    for r in &answers {
        assert!(r.status == 200 || r.status == 202, "{}: {}", r.status, r.text);
        let status = r.body["status"].as_str().unwrap();
        assert_eq!((r.status, status), if r.status == 200 { (200, "cancelled") } else { (202, "cancelling") });
    }
    let done = eventually(PATIENCE, || async { sys.get_order(id).await.body["status"] == "cancelled" }).await;
    assert!(done);
    assert_eq!(sys.balance(user).await, 1_000);
    assert_cancelled_once(&sys, user, id, 250).await;
}

/// A cancel while the payment is on its way to billing (held by the proxy):
/// the cancel voids the reference first, and the late withdrawal is
/// declined: cancelled, nothing charged.
async fn a_cancel_that_reaches_billing_before_the_payment(backend: Backend) {
    let sys = System::with_faults(backend, Timing::default(), Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let billing = &sys.faults().billing;
    billing.once(Mode::Delay(Duration::from_millis(1500)));
    let placing = sys.order_in_background(user, 300);
    let held = eventually(PATIENCE, || async { billing.counts().delayed == 1 }).await;
    assert!(held, "the payment is held on its way");
    let id = testkit::count_rows(&sys.dbs.orders, "orders");
    let cancel = sys.cancel(user, id).await;
    assert!(cancel.status == 200 || cancel.status == 202, "{}", cancel.text);
    let placed = placing.await.unwrap();
    assert!(placed.status == 201 || placed.status == 202, "{}", placed.text);
    let done = eventually(PATIENCE, || async { sys.get_order(id).await.body["status"] == "cancelled" }).await;
    assert!(done, "{}", sys.get_order(id).await.text);
    assert_eq!(sys.balance(user).await, 1_000, "nothing charged");
    assert!(sys.ledger(user).await.iter().all(|e| e["reference"] != format!("order-{id}").as_str()), "no withdrawal");
    assert_cancelled_once(&sys, user, id, 0).await;
}

/// A cancel while the payment's answer is on its way back (billing has
/// withdrawn, order-service has not heard yet): whoever holds the order
/// hears the payment, finds it cancelling and refunds it: net 0.
async fn a_cancel_after_billing_took_the_payment(backend: Backend) {
    let sys = System::with_faults(backend, Timing::default(), Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let billing = &sys.faults().billing;
    billing.once(Mode::HoldResponse(Duration::from_millis(1500)));
    let placing = sys.order_in_background(user, 300);
    let taken = eventually(PATIENCE, || async { sys.balance(user).await == 700 }).await;
    assert!(taken, "billing withdrew the price");
    let id = testkit::count_rows(&sys.dbs.orders, "orders");
    assert!(sys.order_row(id).await.is_pending(), "order-service has not heard yet");
    let cancel = sys.cancel(user, id).await;
    assert!(cancel.status == 200 || cancel.status == 202, "{}", cancel.text);
    placing.await.unwrap();
    let done = eventually(PATIENCE, || async { sys.get_order(id).await.body["status"] == "cancelled" }).await;
    assert!(done, "{}", sys.get_order(id).await.text);
    assert_eq!(sys.balance(user).await, 1_000, "the price is back");
    assert_cancelled_once(&sys, user, id, 300).await;
}

/// A cancel while billing is down: 202 `cancelling`; billing back: the
/// recovery loop refunds once and the order is cancelled. A pending order
/// (its payment never reached billing) is voided the same way.
async fn a_cancel_while_billing_is_down(backend: Backend) {
    let sys = System::with_faults(backend, Timing::quick(), Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let paid = id_of(&sys.order(user, 200).await);
    let billing = &sys.faults().billing;
    billing.set(Mode::Refuse);
    let pending = sys.order(user, 300).await;
    assert_eq!(pending.status, 202, "{}", pending.text);
    let pending = id_of(&pending);
    for id in [paid, pending] {
        let r = sys.cancel(user, id).await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.body["status"], "cancelling");
    }
    assert_eq!(sys.balance(user).await, 800, "nothing moved while billing is down");
    billing.set(Mode::Pass);
    for id in [paid, pending] {
        let done = eventually(PATIENCE, || async { sys.get_order(id).await.body["status"] == "cancelled" }).await;
        assert!(done, "order {id}: {}", sys.get_order(id).await.text);
    }
    assert_eq!(sys.balance(user).await, 1_000);
    let back = refunds(&sys, user, paid).await;
    assert_eq!(back.len(), 1, "{back:?}");
    assert!(refunds(&sys, user, pending).await.is_empty());
    let lettered =
        eventually(PATIENCE, || async { letters_of_kind(&sys, user, "order_cancelled").await.len() == 2 }).await;
    assert!(lettered, "{:?}", sys.letters(user).await);
    // The late payment of the voided order, if it ever came, moves nothing.
    let late = sys
        .api
        .billing
        .as_service()
        .post(
            &format!("/internal/billing/accounts/{user}/withdraw"),
            json!({ "amount": 300, "reference": format!("order-{pending}") }),
        )
        .await;
    assert_eq!(late.assert_problem(409), "payment-cancelled");
    assert_eq!(sys.balance(user).await, 1_000);
    sys.assert_money_conserved(user).await;
}

/// Where order-service dies (SIGKILL) in a cancellation.
#[derive(Clone, Copy, Debug)]
enum KilledAt {
    /// The refund request is on its way to billing.
    RefundSent,
    /// Billing refunded; its answer has not come back.
    RefundCommittedAnswerLost,
    /// `cancelled` is written; the letter could not be stored yet.
    StatusWritten,
    /// The letter is stored; notification's answer has not come back.
    LetterSent,
}

/// order-service (a real process) is killed at `at` while cancelling a paid
/// order; a new process on the same database finishes it: one refund at
/// most, net 0, one cancel letter.
async fn killed_while_cancelling(backend: Backend, at: KilledAt) {
    let timing = Timing::short_lease();
    let mut sys = System::with_faults(backend, timing, Orders::Later).await;
    let user = sys.funded_user(1_000).await;
    let mut first = sys.spawn_orders_process(timing).await;
    let id = id_of(&sys.order(user, 400).await);
    let paid = eventually(PATIENCE, || async { sys.order_row(id).await.is_finished() }).await;
    assert!(paid && sys.get_order(id).await.body["status"] == "paid");
    let (billing, letters) = (&sys.faults().billing, &sys.faults().notifications);
    match at {
        KilledAt::RefundSent => billing.once(Mode::Delay(Duration::from_millis(1500))),
        KilledAt::RefundCommittedAnswerLost => billing.once(Mode::HoldResponse(Duration::from_millis(3000))),
        KilledAt::StatusWritten => letters.set(Mode::Refuse),
        KilledAt::LetterSent => letters.once(Mode::HoldResponse(Duration::from_millis(3000))),
    }
    let cancelling = sys.cancel_in_background(user, id);
    let reached = eventually(PATIENCE, || async {
        match at {
            KilledAt::RefundSent => billing.counts().delayed == 1,
            KilledAt::RefundCommittedAnswerLost => sys.balance(user).await == 1_000,
            KilledAt::StatusWritten => letters.counts().refused >= 1,
            KilledAt::LetterSent => !letters_of_kind(&sys, user, "order_cancelled").await.is_empty(),
        }
    })
    .await;
    assert!(reached, "{at:?} was reached");
    if matches!(at, KilledAt::StatusWritten) {
        assert_eq!(sys.get_order(id).await.body["status"], "cancelled", "the status was written");
    }
    first.kill();
    let _ = cancelling.await;
    letters.set(Mode::Pass);
    let _second = sys.spawn_orders_process(timing).await;
    let done = eventually(Duration::from_secs(30), || async { sys.order_row(id).await.is_finished() }).await;
    assert!(done, "the new process finished the cancellation: {:?}", sys.order_row(id).await);
    assert_eq!(sys.balance(user).await, 1_000, "{at:?}: net 0");
    assert_cancelled_once(&sys, user, id, 400).await;
}

async fn killed_with_the_refund_on_its_way(backend: Backend) {
    killed_while_cancelling(backend, KilledAt::RefundSent).await;
}

async fn killed_with_the_refund_done_but_unheard(backend: Backend) {
    killed_while_cancelling(backend, KilledAt::RefundCommittedAnswerLost).await;
}

async fn killed_after_the_status_was_written(backend: Backend) {
    killed_while_cancelling(backend, KilledAt::StatusWritten).await;
}

async fn killed_with_the_letter_stored_but_unheard(backend: Backend) {
    killed_while_cancelling(backend, KilledAt::LetterSent).await;
}

on_both_backends!(
    the_plain_cases,
    twenty_cancels_at_once,
    a_cancel_that_reaches_billing_before_the_payment,
    a_cancel_after_billing_took_the_payment,
    a_cancel_while_billing_is_down,
    killed_with_the_refund_on_its_way,
    killed_with_the_refund_done_but_unheard,
    killed_after_the_status_was_written,
    killed_with_the_letter_stored_but_unheard,
);
