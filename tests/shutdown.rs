//! Graceful shutdown: a request in flight when the server is told to stop
//! gets its normal answer; new connections are no longer accepted; a real
//! process exits 0 on SIGTERM. The request is kept in flight by a fault
//! proxy that holds order-service's withdrawal on its way to billing.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;
use support::{eventually, Orders, System, Timing};
use testkit::fault_proxy::Mode;
use testkit::{on_both_backends, Api, Backend, Reply};

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
/// held by the proxy, so the request is in flight.
async fn order_in_flight(sys: &System, user: i64) -> actix_web::rt::task::JoinHandle<Reply> {
    sys.faults().billing.once(Mode::Delay(HOLD));
    let orders = sys.api.orders.clone();
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
    let got = sys.api.orders.get(&format!("/orders/{id}")).await;
    assert_eq!(got.body["status"], "paid", "{}", got.text);
    let reference = format!("order-{id}");
    let ledger = sys.ledger(user).await;
    assert_eq!(ledger.iter().filter(|e| e["reference"] == reference.as_str()).count(), 1, "{ledger:?}");
    assert_eq!(sys.balance(user).await, 750);
    let letters = sys.letters(user).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["order_id"], id);
    assert!(sys.order_row(id).await.notified_at.is_some(), "notified before the process went away");
    sys.assert_money_conserved(user).await;
}

/// SIGTERM to a real order-service process (the built `order-system`
/// binary) while POST /orders waits on billing: the request is answered
/// 201 paid, the port stops accepting, the process exits 0.
async fn sigterm_finishes_the_request_in_flight(backend: Backend) {
    let mut sys = System::with_faults(backend, timing(), Orders::Later).await;
    let user = sys.user().await;
    sys.deposit(user, 1_000).await;
    let mut process = sys.spawn_orders_process(timing()).await;
    let addr = addr_of(&sys.api.orders);
    let placing = order_in_flight(&sys, user).await;

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
}

/// The same in process: ServerHandle::stop(true) waits for the request.
async fn graceful_stop_finishes_the_request_in_flight(backend: Backend) {
    let mut sys = System::with_faults(backend, timing(), Orders::InProcess).await;
    let user = sys.user().await;
    sys.deposit(user, 1_000).await;
    let addr = addr_of(&sys.api.orders);
    let placing = order_in_flight(&sys, user).await;

    sys.orders_handle.take().unwrap().stop(true).await;
    assert!(!accepts(addr), "the stopped server does not accept connections");
    let reply = placing.await.unwrap();
    assert_eq!(reply.status, 201, "the in-flight request got its normal answer: {}", reply.text);

    sys.start_orders(timing());
    assert_paid_once(&sys, user, &reply).await;
}

on_both_backends!(sigterm_finishes_the_request_in_flight, graceful_stop_finishes_the_request_in_flight);
