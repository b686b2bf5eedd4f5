#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::request_id::init_logging();
    service_kit::server::run_alone(billing_service::Settings::from_env(), |s| &s.common, billing_service::service).await
}
