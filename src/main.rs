//! `cargo run --release`: the whole system on http://localhost:8080.

use std::net::SocketAddr;

use service_kit::config;
use service_kit::server::{bind, or_exit, serve};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::logging::init("order-system");
    let addr: SocketAddr = or_exit(config::var_or("BIND_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080))));
    let shutdown = or_exit(config::ShutdownSettings::from_env());
    let listener = or_exit(bind(addr));
    let bound = listener.local_addr()?;
    let data = std::path::Path::new(order_system::DATA_DIR);
    let settings = or_exit(order_system::Settings::from_env(order_system::own_url(bound), data));
    let services = or_exit(order_system::services(&settings));
    log::info!("order-system listening on {bound}: Swagger UI at http://localhost:{}/docs/", bound.port());
    serve(listener, services, shutdown).await
}
