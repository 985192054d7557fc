use billing_app::{configuration::Settings, startup::Application};

#[tokio::main]
async fn main() {
    common::config::load_dotenv();
    common::telemetry::init_logging();
    let settings = Settings::from_env().unwrap_or_else(|e| {
        eprintln!("billing-app: {e}");
        std::process::exit(78) // EX_CONFIG
    });
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("billing-app failed to start: {e}");
            std::process::exit(1)
        }
    };
    app.run_until(common::shutdown::signal()).await;
}
