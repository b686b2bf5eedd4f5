use service_kit::server::{bind, or_exit, start};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::request_id::init_logging();
    let settings = or_exit(notification_service::Settings::from_env());
    let listener = or_exit(bind(settings.common.bind_addr));
    let service = or_exit(notification_service::service(&settings));
    log::info!(
        "{} listening on {} ({})",
        notification_service::NAME,
        settings.common.bind_addr,
        settings.common.database_url.backend()
    );
    start(listener, vec![service])?.await
}
