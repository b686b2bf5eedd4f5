#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::request_id::init_logging();
    service_kit::server::run_alone(
        order_service::Settings::from_env(None),
        |s| &s.common,
        |s| order_service::service(s, order_service::http_client(s)),
    )
    .await
}
