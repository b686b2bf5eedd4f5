use service_kit::server::{bind, or_exit, start};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::request_id::init_logging();
    let settings = or_exit(user_service::Settings::from_env(None));
    let listener = or_exit(bind(settings.common.bind_addr));
    let client = user_service::http_client(&settings);
    let service = or_exit(user_service::service(&settings, client));
    log::info!(
        "{} listening on {} ({})",
        user_service::NAME,
        settings.common.bind_addr,
        settings.common.database_url.backend()
    );
    start(listener, vec![service])?.await
}
