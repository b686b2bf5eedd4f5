//! The four services as separate servers on their own ports and their own
//! databases, calling each other over real HTTP: the cluster topology, in
//! one test process.

#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::rt::task::JoinHandle;
use serde_json::{Value, json};
use service_kit::config::BaseUrl;
use testkit::fault_proxy::FaultProxy;
use testkit::{Api, Backend, TestDb, unique};

pub struct System {
    /// Declared first so it closes before the databases are dropped.
    orders_pool: std::sync::OnceLock<service_kit::db::DbPool>,
    pub api: Apis,
    pub billing_url: String,
    pub billing_handle: ServerHandle,
    pub dbs: Dbs,
    /// The services' own addresses (not the proxies').
    pub urls: Urls,
    pub timing: Timing,
    /// Present when the system was started with fault proxies.
    pub faults: Option<Faults>,
    /// The in-process order-service, when there is one.
    pub orders_handle: Option<ServerHandle>,
}

pub struct Apis {
    pub users: Api,
    pub billing: Api,
    pub orders: Api,
    pub notifications: Api,
}

pub struct Dbs {
    pub users: Db,
    pub billing: Db,
    pub orders: Db,
    pub notifications: Db,
}

/// One service's test database (derefs to [`TestDb`]).
pub struct Db(Option<TestDb>);

impl std::ops::Deref for Db {
    type Target = TestDb;

    fn deref(&self) -> &TestDb {
        self.0.as_ref().expect("present until the system is dropped")
    }
}

impl Dbs {
    /// Creates the four databases side by side: on PostgreSQL each
    /// CREATE DATABASE takes a while.
    fn fresh(backend: Backend) -> Dbs {
        let [users, billing, orders, notifications] = std::thread::scope(|s| {
            ["users", "billing", "orders", "notifications"]
                .map(|label| s.spawn(move || TestDb::fresh(backend, label).expect("backend available")))
                .map(|h| Db(Some(h.join().expect("database created"))))
        });
        Dbs { users, billing, orders, notifications }
    }
}

impl Drop for Dbs {
    /// Drops the four databases side by side, as they were created.
    fn drop(&mut self) {
        let all = [&mut self.users, &mut self.billing, &mut self.orders, &mut self.notifications].map(|db| db.0.take());
        std::thread::scope(|s| {
            for db in all {
                s.spawn(move || drop(db));
            }
        });
    }
}

pub struct Urls {
    pub users: String,
    pub billing: String,
    pub notifications: String,
}

/// Fault proxies on the service-to-service calls that can fail the saga
/// or a registration.
pub struct Faults {
    /// order-service → billing-service.
    pub billing: FaultProxy,
    /// order-service → notification-service.
    pub notifications: FaultProxy,
    /// user-service → billing-service.
    pub users_billing: FaultProxy,
}

/// Where order-service runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Orders {
    /// Started with the others, in this process.
    InProcess,
    /// Not started: the test starts it (in process or as a child process).
    Later,
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

impl Timing {
    /// Short timeouts and a quick recovery loop, for fault tests.
    pub fn quick() -> Timing {
        Timing {
            http_timeout: Duration::from_millis(300),
            budget: Duration::from_millis(1000),
            recovery_interval: Duration::from_millis(250),
        }
    }

    /// For tests that kill an order-service process mid-way: the lease a
    /// dead worker leaves behind is its budget + 5 s, so the budget is
    /// short, and the per-call timeout is the whole budget, so a process
    /// never retries before it is killed.
    pub fn short_lease() -> Timing {
        Timing {
            http_timeout: Duration::from_millis(1000),
            budget: Duration::from_millis(1000),
            recovery_interval: Duration::from_millis(250),
        }
    }
}

fn url(s: &str) -> BaseUrl {
    s.parse().unwrap()
}

/// A test client for `base`. Its idle connections are dropped after 2 s,
/// before the servers' 5 s keep-alive closes them: reusing a connection the
/// server is closing at that very moment fails the request
/// (`IncompleteMessage`), which a test must not mistake for a fault.
pub fn api(base: impl Into<String>) -> Api {
    let client = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(2)).build().expect("client");
    Api { base: base.into(), client, token: None }
}

/// billing-service, checking tokens with the key set user-service
/// publishes at `users`.
pub fn start_billing(listener: TcpListener, db: &TestDb, users: &str) -> ServerHandle {
    let settings = billing_service::Settings { common: db.common(8), user_url: url(users) };
    testkit::serve(listener, vec![billing_service::service(&settings, reqwest::Client::new()).unwrap()])
}

/// The password of every user the tests create.
pub const PASSWORD: &str = "correct horse battery";

impl System {
    /// The four services wired directly to each other.
    pub async fn start(backend: Backend, timing: Timing) -> System {
        System::build(backend, timing, false, Orders::InProcess).await
    }

    /// The four services with a [`FaultProxy`] on each call that can fail:
    /// order-service → billing, order-service → notification,
    /// user-service → billing. All proxies start in pass-through mode.
    pub async fn with_faults(backend: Backend, timing: Timing, orders: Orders) -> System {
        System::build(backend, timing, true, orders).await
    }

    async fn build(backend: Backend, timing: Timing, proxied: bool, orders: Orders) -> System {
        let dbs = Dbs::fresh(backend);
        let (billing_l, billing_url) = testkit::listener();
        let (users_l, users_url) = testkit::listener();
        let (letters_l, letters_url) = testkit::listener();

        let billing_handle = start_billing(billing_l, &dbs.billing, &users_url);

        let letters = notification_service::Settings { common: dbs.notifications.common(8), user_url: url(&users_url) };
        testkit::serve(letters_l, vec![notification_service::service(&letters, reqwest::Client::new()).unwrap()]);

        let faults = proxied.then(|| Faults {
            billing: FaultProxy::start(&billing_url),
            notifications: FaultProxy::start(&letters_url),
            users_billing: FaultProxy::start(&billing_url),
        });

        let users = user_service::Settings {
            common: dbs.users.common(8),
            billing_url: url(&faults.as_ref().map_or(billing_url.clone(), |f| f.users_billing.url())),
            signing_key: testkit::signing_key(),
            token_ttl: Duration::from_secs(3600),
            http_timeout: timing.http_timeout,
            budget: timing.budget,
            recovery_interval: Duration::from_secs(3600),
        };
        testkit::serve(users_l, vec![user_service::service(&users, user_service::http_client(&users)).unwrap()]);

        let mut system = System {
            api: Apis {
                users: api(users_url.clone()),
                billing: api(billing_url.clone()),
                // Replaced when order-service starts.
                orders: api("http://127.0.0.1:9"),
                notifications: api(letters_url.clone()),
            },
            billing_url: billing_url.clone(),
            billing_handle,
            dbs,
            urls: Urls { users: users_url, billing: billing_url, notifications: letters_url },
            timing,
            faults,
            orders_handle: None,
            orders_pool: std::sync::OnceLock::new(),
        };
        if orders == Orders::InProcess {
            system.start_orders(timing);
        }
        system
    }

    /// The fault proxies (the system must have been started with them).
    pub fn faults(&self) -> &Faults {
        self.faults.as_ref().expect("started with System::with_faults")
    }

    /// The URLs order-service calls billing and notification at: the
    /// proxies when there are any.
    fn order_peers(&self) -> (String, String) {
        match &self.faults {
            Some(f) => (f.billing.url(), f.notifications.url()),
            None => (self.urls.billing.clone(), self.urls.notifications.clone()),
        }
    }

    /// Starts an order-service in this process on the system's order
    /// database (a new instance each call) and points `api.orders` at it.
    pub fn start_orders(&mut self, timing: Timing) -> ServerHandle {
        let (listener, orders_url) = testkit::listener();
        let (billing, notifications) = self.order_peers();
        let orders = order_service::Settings {
            common: self.dbs.orders.common(8),
            user_url: url(&self.urls.users),
            billing_url: url(&billing),
            notification_url: url(&notifications),
            http_timeout: timing.http_timeout,
            budget: timing.budget,
            recovery_interval: timing.recovery_interval,
        };
        let handle = testkit::serve(
            listener,
            vec![order_service::service(&orders, order_service::http_client(&orders)).unwrap()],
        );
        self.api.orders = api(orders_url);
        self.orders_handle = Some(handle.clone());
        handle
    }

    /// Starts order-service as a child process of the built `order-system`
    /// binary (the all-in-one run, its order-service pointed at this
    /// system's services and order database; its own three other services
    /// get scratch SQLite files and stay unused), and points `api.orders`
    /// at it.
    pub async fn spawn_orders_process(&mut self, timing: Timing) -> OrderProcess {
        self.spawn_orders_process_with(timing, &[]).await
    }

    /// [`System::spawn_orders_process`] with more environment variables.
    pub async fn spawn_orders_process_with(&mut self, timing: Timing, env: &[(&str, &str)]) -> OrderProcess {
        let (billing, notifications) = self.order_peers();
        let ms = |d: Duration| d.as_millis().to_string();
        let mut all = vec![
            ("ORDER_DATABASE_URL", self.dbs.orders.url.clone()),
            ("USER_SERVICE_URL", self.urls.users.clone()),
            ("BILLING_SERVICE_URL", billing),
            ("NOTIFICATION_SERVICE_URL", notifications),
            ("HTTP_TIMEOUT_MS", ms(timing.http_timeout)),
            ("ORDER_BUDGET_MS", ms(timing.budget)),
            ("RECOVERY_INTERVAL_MS", ms(timing.recovery_interval)),
        ];
        all.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        let process = spawn_all_in_one(&all).await;
        self.api.orders = api(process.url.clone());
        process
    }

    /// A pool on order-service's database, for reading (or arranging) what
    /// the API does not show.
    pub fn orders_pool(&self) -> service_kit::db::DbPool {
        self.orders_pool
            .get_or_init(|| {
                service_kit::db::connect(&self.dbs.orders.database_url(), Some(2), &order_service::MIGRATIONS).unwrap()
            })
            .clone()
    }

    /// The order's row as order-service stored it (for what the API does not
    /// show, like whether the letter was sent).
    pub async fn order_row(&self, id: i64) -> order_service::book::Order {
        use order_service::book::OrderBook;
        let pool = self.orders_pool();
        service_kit::db::run(
            &pool,
            move |conn| service_kit::with_backend!(conn, c => Ok::<_, service_kit::db::StorageError>(c.order(id)?)),
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("order {id} is stored"))
    }

    /// Creates a user and returns its id.
    /// Creates a user, signs in as it, and returns its id. (The helpers
    /// below act for a user with a token of the same key.)
    pub async fn user(&self) -> i64 {
        let name = unique("u_");
        let body = json!({ "username": name, "email": format!("{name}@example.com"), "password": PASSWORD });
        let r = self.api.users.post("/users", body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id = r.body["id"].as_i64().unwrap();
        let signed_in = self.api.users.post("/users/tokens", json!({ "username": name, "password": PASSWORD })).await;
        assert_eq!(signed_in.status, 200, "{}", signed_in.text);
        let token = signed_in.body["access_token"].as_str().unwrap();
        let me = self.api.users.with_token(token).get(&format!("/users/{id}")).await;
        assert_eq!(me.status, 200, "the signed-in token reads its user: {}", me.text);
        id
    }

    /// A user, as [`System::user`] creates it, with `amount` deposited.
    pub async fn funded_user(&self, amount: i64) -> i64 {
        let user = self.user().await;
        self.deposit(user, amount).await;
        user
    }

    pub async fn deposit(&self, user: i64, amount: i64) {
        let path = format!("/billing/accounts/{user}/deposit");
        let r = self.api.billing.as_user(user).post(&path, json!({ "amount": amount })).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    pub async fn balance(&self, user: i64) -> i64 {
        let r = self.api.billing.as_user(user).get(&format!("/billing/accounts/{user}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["balance"].as_i64().unwrap()
    }

    pub async fn ledger(&self, user: i64) -> Vec<Value> {
        let r = self.api.billing.as_user(user).get(&format!("/billing/accounts/{user}/transactions")).await;
        r.body.as_array().unwrap().clone()
    }

    pub async fn letters(&self, user: i64) -> Vec<Value> {
        let r = self.api.notifications.as_user(user).get(&format!("/notifications?user_id={user}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().unwrap().clone()
    }

    pub async fn orders_of(&self, user: i64) -> Vec<Value> {
        let r = self.api.orders.as_user(user).get(&format!("/orders?user_id={user}")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body.as_array().unwrap().clone()
    }

    /// `GET /orders/{id}`, as its owner.
    pub async fn get_order(&self, id: i64) -> testkit::Reply {
        let owner = self.order_row(id).await.user_id;
        self.api.orders.as_user(owner).get(&format!("/orders/{id}")).await
    }

    pub async fn order(&self, user: i64, price: i64) -> testkit::Reply {
        self.api.orders.as_user(user).post("/orders", json!({ "user_id": user, "price": price })).await
    }

    /// [`System::order`] with an `Idempotency-Key`.
    pub async fn order_keyed(&self, user: i64, key: &str, price: i64) -> testkit::Reply {
        self.api.orders.as_user(user).post_keyed("/orders", key, json!({ "user_id": user, "price": price })).await
    }

    /// Checks the money: the balance is what the ledger says (deposits −
    /// withdrawals + refunds), and each order's net charge (withdrawn under
    /// `order-{id}` less refunded under `refund-order-{id}`) is its price if
    /// it is paid and 0 otherwise, with one withdrawal and one refund at
    /// most; nothing else was withdrawn or refunded.
    pub async fn assert_money_conserved(&self, user: i64) {
        let ledger = self.ledger(user).await;
        let sum = |kind: &str| -> i64 {
            ledger.iter().filter(|e| e["kind"] == kind).map(|e| e["amount"].as_i64().unwrap()).sum()
        };
        assert_eq!(
            self.balance(user).await,
            sum("deposit") - sum("withdrawal") + sum("refund"),
            "balance = deposits - withdrawals + refunds: {ledger:#?}"
        );
        let entries = |reference: &str, kind: &str| -> Vec<i64> {
            ledger
                .iter()
                .filter(|e| e["reference"] == reference && e["kind"] == kind)
                .map(|e| e["amount"].as_i64().unwrap())
                .collect()
        };
        let orders = self.orders_of(user).await;
        let (mut withdrawn, mut refunded) = (0, 0);
        for o in &orders {
            let id = o["id"].as_i64().unwrap();
            let charges = entries(&format!("order-{id}"), "withdrawal");
            let refunds = entries(&format!("refund-order-{id}"), "refund");
            assert!(
                charges.len() <= 1 && refunds.len() <= 1,
                "order {id}: {charges:?} withdrawn, {refunds:?} refunded"
            );
            let net = charges.iter().sum::<i64>() - refunds.iter().sum::<i64>();
            let due = if o["status"] == "paid" { o["price"].as_i64().unwrap() } else { 0 };
            if o["status"] != "pending" && o["status"] != "cancelling" {
                assert_eq!(net, due, "order {id} ({}) is charged {net}", o["status"]);
            }
            withdrawn += charges.iter().sum::<i64>();
            refunded += refunds.iter().sum::<i64>();
        }
        assert_eq!(sum("withdrawal"), withdrawn, "every withdrawal pays an order");
        assert_eq!(sum("refund"), refunded, "every refund gives an order back");
    }

    /// `POST /orders/{id}/cancel` as `user`.
    pub async fn cancel(&self, user: i64, id: i64) -> testkit::Reply {
        self.api.orders.as_user(user).post(&format!("/orders/{id}/cancel"), json!({})).await
    }

    /// [`System::order`] in the background, for a test that acts while the
    /// order is on its way.
    pub fn order_in_background(&self, user: i64, price: i64) -> JoinHandle<testkit::Reply> {
        let orders = self.api.orders.as_user(user);
        actix_web::rt::spawn(async move { orders.post("/orders", json!({ "user_id": user, "price": price })).await })
    }

    /// [`System::cancel`] in the background.
    pub fn cancel_in_background(&self, user: i64, id: i64) -> JoinHandle<testkit::Reply> {
        let orders = self.api.orders.as_user(user);
        actix_web::rt::spawn(async move { orders.post(&format!("/orders/{id}/cancel"), json!({})).await })
    }
}

/// The all-in-one binary as a child process, on scratch SQLite files (any
/// `*_DATABASE_URL` in `env` replaces its own), with the test credential and
/// signing key, its log captured; returns once it is ready.
pub async fn spawn_all_in_one(env: &[(&str, String)]) -> OrderProcess {
    let scratch: Vec<TestDb> = (0..4).map(|_| TestDb::fresh(Backend::Sqlite, "scratch").unwrap()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_order-system"))
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("USER_DATABASE_URL", &scratch[0].url)
        .env("BILLING_DATABASE_URL", &scratch[1].url)
        .env("ORDER_DATABASE_URL", &scratch[2].url)
        .env("NOTIFICATION_DATABASE_URL", &scratch[3].url)
        .env_remove("USER_SERVICE_URL")
        .env_remove("BILLING_SERVICE_URL")
        .env_remove("NOTIFICATION_SERVICE_URL")
        .env("DATABASE_POOL_SIZE", "4")
        .env("INTERNAL_API_TOKEN", testkit::TEST_CREDENTIAL)
        .env("AUTH_SIGNING_KEY_FILE", testkit::signing_key_file())
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("order-system starts");
    let pid = child.id();
    let stderr = child.stderr.take().expect("piped stderr");
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[order-system {pid}] {line}");
            lines.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split(": ").next().unwrap_or(rest).trim().trim_end_matches('"');
                let _ = addr_tx.send(addr.to_owned());
            }
        }
    });
    let mut process = OrderProcess { child, url: String::new(), log, _scratch: scratch };
    let addr = eventually_value(Duration::from_secs(30), || addr_rx.try_recv().ok()).await;
    let addr =
        addr.unwrap_or_else(|| panic!("order-system did not say where it listens: {:?}", process.child.try_wait()));
    process.url = format!("http://{addr}");
    let probe = api(process.url.clone());
    let ready = eventually(Duration::from_secs(30), || async {
        probe.client.get(format!("{}/health/ready", probe.base)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "order-system at {addr} became ready");
    process
}

/// order-service as a child process; killed (SIGKILL) when dropped if it
/// is still running.
pub struct OrderProcess {
    child: Child,
    pub url: String,
    /// Its stderr (the log), line by line as it comes.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _scratch: Vec<TestDb>,
}

impl OrderProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies at once, whatever it was doing.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL sent");
        self.child.wait().expect("reaped");
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM: asks for a graceful shutdown.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let sent =
            Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().expect("kill runs");
        assert!(sent.success(), "SIG{name} sent");
    }

    /// The exit status, once the process has exited within `limit`.
    pub async fn exit_status(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = &mut self.child;
        eventually_value(limit, || child.try_wait().expect("try_wait")).await
    }
}

impl Drop for OrderProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `probe` until it gives a value or `limit` passes.
pub async fn eventually_value<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let until = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
