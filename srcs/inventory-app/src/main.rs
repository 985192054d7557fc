use inventory_app::{configuration::Settings, startup::Application};

#[tokio::main]
async fn main() {
    common::config::load_dotenv();
    common::telemetry::init_logging();
    let settings = Settings::from_env().unwrap_or_else(|e| {
        eprintln!("inventory-app: {e}");
        std::process::exit(78) // EX_CONFIG
    });
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("inventory-app failed to start: {e}");
            std::process::exit(1)
        }
    };
    // Migrated and listening: ready to serve.
    common::service::notify_ready("serving the catalogue");
    if let Err(e) = app.run_until_stopped().await {
        log::error!("inventory-app stopped with an error: {e}");
        std::process::exit(1)
    }
}
