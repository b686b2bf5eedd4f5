//! What the four services share, so that each service crate holds only its
//! own domain: problem+json errors, request ids, health, metrics, database
//! pools and migrations, configuration, outgoing HTTP and the server itself.

pub mod auth;
pub mod body;
pub mod config;
pub mod db;
pub mod docs;
pub mod health;
pub mod http_errors;
pub mod idempotency;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod peer;
pub mod problem;
pub mod request_id;
pub mod server;
pub mod stored;
pub mod time;

pub use problem::Problem;
