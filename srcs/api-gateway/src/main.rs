// Proxying allocates and frees buffers and header maps on every request: with jemalloc the
// gateway spends ~10% less CPU per request than with glibc's malloc, at about the same RSS
// (mimalloc was as fast but took 37 MB; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use api_gateway::{configuration::Settings, startup::Application};

#[tokio::main]
async fn main() {
    common::config::load_dotenv();
    common::telemetry::init_logging();
    let settings = Settings::from_env().unwrap_or_else(|e| {
        eprintln!("api-gateway: {e}");
        std::process::exit(78) // EX_CONFIG
    });
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            log::error!("api-gateway failed to start: {e}");
            std::process::exit(1)
        }
    };
    // Listening; ready once the broker connection is up (orders can be queued).
    let publisher = app.publisher().clone();
    tokio::spawn(async move {
        while !publisher
            .wait_connected(std::time::Duration::from_secs(3600))
            .await
        {}
        common::service::notify_ready("serving; connected to the broker");
    });
    if let Err(e) = app.run_until_stopped().await {
        log::error!("api-gateway stopped with an error: {e}");
        std::process::exit(1)
    }
}
