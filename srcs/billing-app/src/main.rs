#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::lifecycle::run::<billing_app::startup::Application>().await
}
