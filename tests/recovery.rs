//! The recovery loop against what crashes and final refusals leave behind:
//! keys whose order is finished, orders a peer refuses for good, two
//! replicas recovering at once. On SQLite and on PostgreSQL.

mod support;

use std::time::Duration;

use support::{Orders, System, Timing, eventually};
use testkit::fault_proxy::Mode;
use testkit::{Backend, on_both_backends, unique};

const PATIENCE: Duration = Duration::from_secs(15);

/// When a crash left an order behind: long ago, no lease.
const LONG_AGO: &str = "2026-01-01 00:00:00";

/// Stores a pending order directly, as a request that died right after
/// storing it leaves it; returns its id.
fn order_left_pending(sys: &System, user: i64, price: i64) -> i64 {
    testkit::execute_sql(
        &sys.dbs.orders,
        &format!(
            "INSERT INTO orders (user_id, price, status, created_at, updated_at) \
             VALUES ({user}, {price}, 'pending', '{LONG_AGO}', '{LONG_AGO}')"
        ),
    );
    testkit::count_rows(&sys.dbs.orders, "orders")
}

async fn status_of(sys: &System, id: i64) -> serde_json::Value {
    sys.get_order(id).await.body["status"].clone()
}

/// A crash between finishing the order and storing its key's answer left
/// the key "in progress"; a replay got 409 for good. Recovery answers it.
async fn a_key_left_in_progress_after_its_order_finished_is_answered(backend: Backend) {
    let sys = System::start(backend, Timing::quick()).await;
    let user = sys.funded_user(1_000).await;
    let key = unique("crash-");
    let first = sys.order_keyed(user, &key, 100).await;
    assert_eq!(first.status, 201, "{}", first.text);
    // The key as the service stores it: scoped to the user.
    let stored_key = format!("user-{user}:{}", service_kit::auth::sha256_hex(key.as_bytes()));
    let unanswered = testkit::execute_sql(
        &sys.dbs.orders,
        &format!(
            "UPDATE idempotency_keys SET status_code = NULL, response_body = NULL, location = NULL \
             WHERE key = '{stored_key}'"
        ),
    );
    assert_eq!(unanswered, 1, "the key's answer was taken away");
    let answered = eventually(PATIENCE, || async {
        let replay = sys.order_keyed(user, &key, 100).await;
        replay.status == 201 && replay.body == first.body
    })
    .await;
    assert!(answered, "the replay still gets: {}", sys.order_keyed(user, &key, 100).await.text);
    assert_eq!(sys.orders_of(user).await.len(), 1);
    sys.assert_money_conserved(user).await;
}

/// Billing refuses one order's payment for good (no account for its user)
/// and notification-service refuses another's letter for good (an address
/// it does not accept). Both end in a defined state, and the recovery loop
/// goes on to the order after them instead of stopping at the first.
async fn recovery_goes_on_past_orders_peers_refuse_for_good(backend: Backend) {
    let sys = System::start(backend, Timing::quick()).await;
    let good = sys.funded_user(1_000).await;
    let unlettered = sys.funded_user(1_000).await;
    // An address from before today's rules, which notification-service refuses.
    testkit::execute_sql(&sys.dbs.users, &format!("UPDATE users SET email = 'no-address' WHERE id = {unlettered}"));

    let no_account = order_left_pending(&sys, 424_242, 100);
    let r = sys.order(unlettered, 300).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let refused_letter = r.body["id"].as_i64().unwrap();
    let after_them = order_left_pending(&sys, good, 250);

    let paid = eventually(PATIENCE, || async { status_of(&sys, after_them).await == "paid" }).await;
    assert!(paid, "the order after the refused ones was paid");
    let lettered = eventually(PATIENCE, || async { sys.letters(good).await.len() == 1 }).await;
    assert!(lettered, "and its letter stored");

    let rejected = sys.get_order(no_account).await;
    assert_eq!(rejected.body["status"], "rejected", "{}", rejected.text);
    assert_eq!(rejected.body["failure_reason"], "payment_refused", "{}", rejected.text);
    let ended = eventually(PATIENCE, || async { sys.order_row(no_account).await.is_finished() }).await;
    assert!(ended, "the refused payment ended its saga");

    let kept = sys.order_row(refused_letter).await;
    assert_eq!(status_of(&sys, refused_letter).await, "paid");
    let ended = eventually(PATIENCE, || async { sys.order_row(refused_letter).await.is_finished() }).await;
    assert!(ended, "the refused letter ended its saga: {kept:?}");
    let refusal = sys.order_row(refused_letter).await.letter_refusal;
    assert!(refusal.as_deref().is_some_and(|r| r.contains("notification-service")), "{refusal:?}");
    assert!(sys.letters(unlettered).await.is_empty());
    sys.assert_money_conserved(good).await;
    sys.assert_money_conserved(unlettered).await;
}

/// Two replicas recover twelve orders while every payment takes 0.8 s: a
/// worker holds one order at a time, for one drive, so no order is paid by
/// both (a batch leased at once outlived its lease and the other replica
/// took the rest of it over while the first was still working through it).
async fn two_replicas_never_drive_one_order(backend: Backend) {
    let timing = Timing {
        http_timeout: Duration::from_millis(1500),
        budget: Duration::from_millis(1500),
        recovery_interval: Duration::from_millis(250),
    };
    let mut sys = System::with_faults(backend, timing, Orders::InProcess).await;
    sys.start_orders(timing);
    let user = sys.funded_user(100_000).await;
    let billing = &sys.faults().billing;
    billing.set(Mode::Delay(Duration::from_millis(800)));
    let ids: Vec<i64> = (0..12).map(|_| order_left_pending(&sys, user, 100)).collect();

    let all_paid = eventually(Duration::from_secs(40), || async {
        sys.orders_of(user).await.iter().all(|o| o["status"] == "paid")
    })
    .await;
    assert!(all_paid, "{:?}", sys.orders_of(user).await);
    let seen = billing.counts();
    assert_eq!(seen.requests(), ids.len(), "one payment request per order: {seen:?}");
    sys.assert_money_conserved(user).await;
}

/// A worker whose lease ran out and was taken over can neither write the
/// order's next step nor give the lease back.
async fn a_lost_lease_writes_nothing(backend: Backend) {
    use order_service::book::{Decision, Lease, OrderBook};
    use service_kit::time;
    let sys = System::start(backend, Timing::default()).await;
    let user = sys.user().await;
    let id = order_left_pending(&sys, user, 100);
    let pool = sys.orders_pool();
    let outcome = service_kit::db::run(&pool, move |conn| {
        service_kit::with_backend!(conn, c => {
            let now = time::now();
            let stale = Lease::new(now - chrono::Duration::seconds(1));
            assert!(c.take_lease(id, stale, now)?.is_some(), "free to take");
            // Its lease ran out: another worker takes the order.
            let current = Lease::new(now + chrono::Duration::seconds(60));
            assert!(c.take_lease(id, current, now)?.is_some(), "taken over");
            let wrote = (
                c.decide(id, Decision::Paid, stale, now)?.is_some(),
                c.finish(id, stale, order_service::book::OrderStatus::Pending, None, now)?.is_some(),
                c.give_back(id, stale, now)?,
            );
            let row = c.order(id)?.unwrap();
            let holder_decides = c.decide(id, Decision::Paid, current, now)?.is_some();
            Ok::<_, service_kit::db::StorageError>((wrote, row, holder_decides))
        })
    })
    .await
    .unwrap();
    let (wrote, row, holder_decides) = outcome;
    assert_eq!(wrote, (false, false, false), "the stale worker wrote");
    assert!(row.is_pending() && !row.is_finished(), "{row:?}");
    assert!(holder_decides, "the lease's holder still can");
}

on_both_backends!(
    a_key_left_in_progress_after_its_order_finished_is_answered,
    recovery_goes_on_past_orders_peers_refuse_for_good,
    two_replicas_never_drive_one_order,
    a_lost_lease_writes_nothing,
);
