//! The four services as separate servers on their own ports and their own
//! databases, calling each other over real HTTP: the cluster topology, in
//! one test process.

#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::{json, Value};
use service_kit::config::BaseUrl;
use testkit::{unique, Api, Backend, TestDb};

pub struct System {
    pub api: Apis,
    pub billing_url: String,
    pub billing_handle: ServerHandle,
    pub dbs: Dbs,
}

pub struct Apis {
    pub users: Api,
    pub billing: Api,
    pub orders: Api,
    pub notifications: Api,
}

pub struct Dbs {
    pub users: TestDb,
    pub billing: TestDb,
    pub orders: TestDb,
    pub notifications: TestDb,
}

/// Knobs for the order saga's timing.
#[derive(Clone, Copy)]
pub struct Timing {
    pub http_timeout: Duration,
    pub budget: Duration,
    pub recovery_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            http_timeout: Duration::from_secs(2),
            budget: Duration::from_secs(5),
            recovery_interval: Duration::from_secs(3600),
        }
    }
}

fn url(s: &str) -> BaseUrl {
    s.parse().unwrap()
}

pub fn start_billing(listener: TcpListener, db: &TestDb) -> ServerHandle {
    let settings = billing_service::Settings { common: db.common(8) };
    testkit::serve(listener, vec![billing_service::service(&settings).unwrap()])
}

impl System {
    pub async fn start(backend: Backend, timing: Timing) -> System {
        let dbs = Dbs {
            users: TestDb::fresh(backend, "users").unwrap(),
            billing: TestDb::fresh(backend, "billing").unwrap(),
            orders: TestDb::fresh(backend, "orders").unwrap(),
            notifications: TestDb::fresh(backend, "notifications").unwrap(),
        };
        let (billing_l, billing_url) = testkit::listener();
        let (users_l, users_url) = testkit::listener();
        let (orders_l, orders_url) = testkit::listener();
        let (letters_l, letters_url) = testkit::listener();

        let billing_handle = start_billing(billing_l, &dbs.billing);

        let letters = notification_service::Settings { common: dbs.notifications.common(8) };
        testkit::serve(letters_l, vec![notification_service::service(&letters).unwrap()]);

        let users = user_service::Settings {
            common: dbs.users.common(8),
            billing_url: url(&billing_url),
            http_timeout: timing.http_timeout,
            budget: timing.budget,
            recovery_interval: Duration::from_secs(3600),
        };
        testkit::serve(users_l, vec![user_service::service(&users, user_service::http_client(&users)).unwrap()]);

        let orders = order_service::Settings {
            common: dbs.orders.common(8),
            user_url: url(&users_url),
            billing_url: url(&billing_url),
            notification_url: url(&letters_url),
            http_timeout: timing.http_timeout,
            budget: timing.budget,
            recovery_interval: timing.recovery_interval,
        };
        testkit::serve(orders_l, vec![order_service::service(&orders, order_service::http_client(&orders)).unwrap()]);

        System {
            api: Apis {
                users: Api::new(users_url),
                billing: Api::new(billing_url.clone()),
                orders: Api::new(orders_url),
                notifications: Api::new(letters_url),
            },
            billing_url,
            billing_handle,
            dbs,
        }
    }

    /// Creates a user and returns its id.
    pub async fn user(&self) -> i64 {
        let name = unique("u_");
        let r = self.api.users.post("/users", json!({ "username": name, "email": format!("{name}@example.com") })).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_i64().unwrap()
    }

    pub async fn deposit(&self, user: i64, amount: i64) {
        let r = self.api.billing.post(&format!("/billing/accounts/{user}/deposit"), json!({ "amount": amount })).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    pub async fn balance(&self, user: i64) -> i64 {
        let r = self.api.billing.get(&format!("/billing/accounts/{user}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["balance"].as_i64().unwrap()
    }

    pub async fn ledger(&self, user: i64) -> Vec<Value> {
        self.api.billing.get(&format!("/billing/accounts/{user}/transactions")).await.body.as_array().unwrap().clone()
    }

    pub async fn letters(&self, user: i64) -> Vec<Value> {
        let r = self.api.notifications.get(&format!("/notifications?user_id={user}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().unwrap().clone()
    }

    pub async fn orders_of(&self, user: i64) -> Vec<Value> {
        let r = self.api.orders.get(&format!("/orders?user_id={user}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().unwrap().clone()
    }

    pub async fn order(&self, user: i64, price: i64) -> testkit::Reply {
        self.api.orders.post("/orders", json!({ "user_id": user, "price": price })).await
    }

    /// Checks the money: the balance is what the ledger says, every paid
    /// order was charged exactly once with its reference, and nothing else
    /// was withdrawn.
    pub async fn assert_money_conserved(&self, user: i64) {
        let ledger = self.ledger(user).await;
        let sum = |kind: &str| -> i64 {
            ledger.iter().filter(|e| e["kind"] == kind).map(|e| e["amount"].as_i64().unwrap()).sum()
        };
        assert_eq!(self.balance(user).await, sum("deposit") - sum("withdrawal"), "balance = deposits - withdrawals");
        let orders = self.orders_of(user).await;
        let paid: i64 = orders.iter().filter(|o| o["status"] == "paid").map(|o| o["price"].as_i64().unwrap()).sum();
        assert_eq!(sum("withdrawal"), paid, "withdrawals = paid orders");
        for o in orders.iter().filter(|o| o["status"] == "paid") {
            let reference = format!("order-{}", o["id"]);
            let charges = ledger.iter().filter(|e| e["reference"] == reference.as_str()).count();
            assert_eq!(charges, 1, "order {} charged once", o["id"]);
        }
    }
}

/// Polls `check` until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
