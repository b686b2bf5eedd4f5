#[actix_web::main]
async fn main() -> std::io::Result<()> {
    service_kit::logging::init(user_service::NAME);
    service_kit::server::run_alone(
        user_service::Settings::from_env(&Default::default()),
        |s| &s.common,
        |s| user_service::service(s, user_service::http_client(s)),
    )
    .await
}
