#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::lifecycle::run::<inventory_app::startup::Application>().await
}
