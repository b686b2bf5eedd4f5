#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::request_id::init_logging();
    service_kit::server::run_alone(
        user_service::Settings::from_env(None),
        |s| &s.common,
        |s| user_service::service(s, user_service::http_client(s)),
    )
    .await
}
