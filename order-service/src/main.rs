#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::logging::init(order_service::NAME);
    service_kit::server::run_alone(
        order_service::Settings::from_env(&Default::default()),
        |s| &s.common,
        |s| order_service::service(s, order_service::http_client(s)),
    )
    .await
}
