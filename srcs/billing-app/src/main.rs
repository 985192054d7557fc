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
    // Migrated and listening; ready once consuming from the broker.
    let consumer = app.consumer_status();
    tokio::spawn(async move {
        while !consumer.is_consuming() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        common::service::notify_ready("consuming orders");
    });
    app.run_until(async {
        common::shutdown::signal().await;
        common::service::notify_stopping();
    })
    .await;
}
