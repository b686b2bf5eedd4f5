#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::request_id::init_logging();
    service_kit::server::run_alone(
        notification_service::Settings::from_env(),
        |s| &s.common,
        notification_service::service,
    )
    .await
}
