#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::logging::init(notification_service::NAME);
    service_kit::server::run_alone(
        notification_service::Settings::from_env(&Default::default()),
        |s| &s.common,
        |s| notification_service::service(s, service_kit::peer::client(std::time::Duration::from_secs(2))),
    )
    .await
}
