//! Graceful shutdown: a request in flight when the server is told to stop
//! gets its normal answer; new connections are no longer accepted; a real
//! process exits 0 on SIGTERM. With `SHUTDOWN_DRAIN_MS`, readiness turns 503
//! at once while everything (new connections too) is still served for the
//! drain, and the background loops stop starting rounds. The request is kept
//! in flight by a fault proxy that holds order-service's withdrawal on its
//! way to billing.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Orders, System, Timing, eventually};
use testkit::fault_proxy::Mode;
use testkit::{Api, Backend, Reply, on_both_backends};

const PATIENCE: Duration = Duration::from_secs(15);
const HOLD: Duration = Duration::from_millis(1500);

/// Generous per-call timeout: the held withdrawal must not time out.
fn timing() -> Timing {
    Timing {
        http_timeout: Duration::from_secs(5),
        budget: Duration::from_secs(10),
        recovery_interval: Duration::from_secs(3600),
    }
}

fn addr_of(api: &Api) -> SocketAddr {
    api.base.trim_start_matches("http://").parse().unwrap()
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Places an order in the background and waits until its withdrawal is
/// held by the proxy (for `hold`), so the request is in flight.
async fn order_in_flight(sys: &System, user: i64, hold: Duration) -> actix_web::rt::task::JoinHandle<Reply> {
    sys.faults().billing.once(Mode::Delay(hold));
    let orders = sys.api.orders.as_user(user);
    let placing = actix_web::rt::spawn(async move {
        orders
            .send(orders.client.post(format!("{}/orders", orders.base)).json(&json!({ "user_id": user, "price": 250 })))
            .await
    });
    let held = eventually(PATIENCE, || async { sys.faults().billing.counts().delayed == 1 }).await;
    assert!(held, "the withdrawal is held by the proxy");
    placing
}

/// What a finished order leaves behind: paid, charged once, one letter.
async fn assert_paid_once(sys: &System, user: i64, reply: &Reply) {
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.body["status"], "paid");
    let id = reply.body["id"].as_i64().unwrap();
    let got = sys.get_order(id).await;
    assert_eq!(got.body["status"], "paid", "{}", got.text);
    let reference = format!("order-{id}");
    let ledger = sys.ledger(user).await;
    assert_eq!(ledger.iter().filter(|e| e["reference"] == reference.as_str()).count(), 1, "{ledger:?}");
    let letters = sys.letters(user).await;
    assert_eq!(letters.iter().filter(|l| l["order_id"] == id).count(), 1, "{letters:?}");
    assert!(sys.order_row(id).await.notified_at.is_some(), "notified before the process went away");
    sys.assert_money_conserved(user).await;
}

/// SIGTERM to a real order-service process (the built `order-system`
/// binary) while POST /orders waits on billing: the request is answered
/// 201 paid, the port stops accepting, the process exits 0.
async fn sigterm_finishes_the_request_in_flight(backend: Backend) {
    let mut sys = System::with_faults(backend, timing(), Orders::Later).await;
    let user = sys.funded_user(1_000).await;
    let mut process = sys.spawn_orders_process(timing()).await;
    let addr = addr_of(&sys.api.orders);
    let placing = order_in_flight(&sys, user, HOLD).await;

    process.terminate();
    let closed = eventually(PATIENCE, || async { !accepts(addr) }).await;
    assert!(closed, "the process stopped accepting connections");
    assert!(!placing.is_finished(), "the request was still in flight when the listener closed");
    let reply = placing.await.unwrap();
    assert_eq!(reply.status, 201, "the in-flight request got its normal answer: {}", reply.text);
    let status = process.exit_status(PATIENCE).await.expect("the process exited");
    assert!(status.success(), "exit status {status:?}");

    // Read what it left behind through a fresh order-service on its database.
    sys.start_orders(timing());
    assert_paid_once(&sys, user, &reply).await;
    assert_eq!(sys.balance(user).await, 750);
}

/// The same in process: ServerHandle::stop(true) waits for the request.
async fn graceful_stop_finishes_the_request_in_flight(backend: Backend) {
    let mut sys = System::with_faults(backend, timing(), Orders::InProcess).await;
    let user = sys.funded_user(1_000).await;
    let addr = addr_of(&sys.api.orders);
    let placing = order_in_flight(&sys, user, HOLD).await;

    sys.orders_handle.take().unwrap().stop(true).await;
    assert!(!accepts(addr), "the stopped server does not accept connections");
    let reply = placing.await.unwrap();
    assert_eq!(reply.status, 201, "the in-flight request got its normal answer: {}", reply.text);

    sys.start_orders(timing());
    assert_paid_once(&sys, user, &reply).await;
}

const DRAIN: Duration = Duration::from_millis(1500);

/// A status over a connection of its own (no keep-alive reuse), or `None`
/// when the connection is refused.
async fn status_on_a_new_connection(url: &str) -> Option<(u16, serde_json::Value)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let res = client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.json().await.unwrap_or_default()))
}

/// SIGTERM with `SHUTDOWN_DRAIN_MS`: readiness is 503 (a `draining` problem) long
/// before the listener closes; meanwhile a new connection still gets an
/// order placed and paid; the recovery loops stop at the drain's start;
/// the listener closes only after the drain; the request in flight across
/// all of it is answered 201; the process exits 0. The timings are written
/// to tests/artifacts/shutdown-drain-<backend>.txt.
async fn sigterm_drains_before_it_stops_accepting(backend: Backend) {
    let mut sys = System::with_faults(backend, timing(), Orders::Later).await;
    let user = sys.funded_user(1_000).await;
    let drain_ms = DRAIN.as_millis().to_string();
    let mut process = sys
        .spawn_orders_process_with(timing(), &[("SHUTDOWN_DRAIN_MS", &drain_ms), ("SHUTDOWN_TIMEOUT_MS", "10000")])
        .await;
    let addr = addr_of(&sys.api.orders);
    let ready_url = format!("{}/health/ready", sys.api.orders.base);
    assert_eq!(status_on_a_new_connection(&ready_url).await.map(|r| r.0), Some(200));
    // Held past the drain: still in flight when the listener closes.
    let placing = order_in_flight(&sys, user, DRAIN + HOLD).await;

    let signalled = Instant::now();
    process.terminate();
    let (draining_at, body) = loop {
        if let Some((503, body)) = status_on_a_new_connection(&ready_url).await {
            break (signalled.elapsed(), body);
        }
        assert!(signalled.elapsed() < PATIENCE, "readiness never turned 503 after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(body["type"].as_str().is_some_and(|t| t.ends_with("/draining")), "the problem says why: {body}");
    assert!(draining_at < DRAIN, "readiness turned 503 at once, not after the drain ({draining_at:?})");

    // Still serving, to new connections: a whole order, and the liveness probe.
    let fresh = testkit::Api {
        base: sys.api.orders.base.clone(),
        client: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
        token: Some(testkit::token_for(user)),
    };
    let during = fresh.post("/orders", json!({ "user_id": user, "price": 100 })).await;
    let served_at = signalled.elapsed();
    assert!(served_at < DRAIN, "the order during the drain was answered before it ended ({served_at:?})");
    assert_eq!(during.status, 201, "served during the drain: {}", during.text);
    assert_eq!(fresh.get("/health/live").await.status, 200);
    assert!(!placing.is_finished(), "the held order is still in flight");

    let closed = eventually(PATIENCE, || async { !accepts(addr) }).await;
    let closed_at = signalled.elapsed();
    assert!(closed, "the process stopped accepting connections");
    assert!(closed_at >= DRAIN, "the listener stayed open for the whole drain (closed after {closed_at:?})");
    let reply = placing.await.unwrap();
    let answered_at = signalled.elapsed();
    assert_eq!(reply.status, 201, "the in-flight request got its normal answer: {}", reply.text);
    let status = process.exit_status(PATIENCE).await.expect("the process exited");
    let exited_at = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");

    // Both recovery loops of the all-in-one process learned of the drain
    // while it was still serving.
    let stopped = eventually(PATIENCE, || async { process.log().iter().any(|l| l.contains("stopped ")) }).await;
    assert!(stopped, "the last log line came");
    let log = process.log();
    let line =
        |needle: &str| log.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {log:#?}"));
    for recovery in ["order recovery stopped", "user recovery stopped"] {
        assert!(line(recovery) < line("drain over"), "{recovery} during the drain: {log:#?}");
    }

    let ms = |d: Duration| d.as_millis();
    let report = format!(
        "SIGTERM with SHUTDOWN_DRAIN_MS={drain_ms} ({backend:?}): readiness 503 after {} ms, a new order served at {} ms, \
         listener closed after {} ms, the in-flight order answered after {} ms, exit 0 after {} ms\n",
        ms(draining_at),
        ms(served_at),
        ms(closed_at),
        ms(answered_at),
        ms(exited_at)
    );
    eprint!("{report}");
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(format!("shutdown-drain-{}.txt", format!("{backend:?}").to_lowercase())), report)
        .unwrap();

    sys.start_orders(timing());
    assert_paid_once(&sys, user, &reply).await;
    assert_paid_once(&sys, user, &during).await;
    assert_eq!(sys.balance(user).await, 650);
}

/// SIGINT (Ctrl-C) drains like SIGTERM, and a second signal cuts the drain short.
async fn sigint_drains_and_a_second_signal_cuts_it_short(backend: Backend) {
    let mut sys = System::with_faults(backend, timing(), Orders::Later).await;
    let mut process = sys.spawn_orders_process_with(timing(), &[("SHUTDOWN_DRAIN_MS", "60000")]).await;
    let ready_url = format!("{}/health/ready", sys.api.orders.base);
    process.signal("INT");
    let draining = eventually(PATIENCE, || async {
        status_on_a_new_connection(&ready_url).await.is_some_and(|(status, _)| status == 503)
    })
    .await;
    assert!(draining, "readiness turned 503 after SIGINT");
    let signalled = Instant::now();
    process.signal("TERM");
    let status = process.exit_status(PATIENCE).await.expect("the second signal ended the 60 s drain");
    assert!(status.success(), "exit status {status:?}");
    eprintln!("SIGINT, then SIGTERM: exit 0 {} ms after the second signal", signalled.elapsed().as_millis());
    let log = process.log();
    assert!(log.iter().any(|l| l.contains("SIGINT: readiness is 503")), "{log:#?}");
    assert!(log.iter().any(|l| l.contains("SIGTERM: drain cut short")), "{log:#?}");
}

on_both_backends!(
    sigterm_finishes_the_request_in_flight,
    graceful_stop_finishes_the_request_in_flight,
    sigterm_drains_before_it_stops_accepting,
    sigint_drains_and_a_second_signal_cuts_it_short
);
