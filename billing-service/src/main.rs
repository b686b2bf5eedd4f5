#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::logging::init(billing_service::NAME);
    service_kit::server::run_alone(
        billing_service::Settings::from_env(&Default::default()),
        |s| &s.common,
        |s| billing_service::service(s, service_kit::peer::client(std::time::Duration::from_secs(2))),
    )
    .await
}
