/// `billing-app` runs the service; `billing-app dlq ...` an operator's command on the
/// dead-letter queue (see the `dlq` module).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, rest)) if command == "dlq" => billing_app::dlq::main(rest).await,
        Some((other, _)) => {
            eprintln!("billing-app: unknown command {other:?} (no argument runs the service; `billing-app dlq` manages the dead-letter queue)");
            std::process::ExitCode::from(64)
        }
        None => common::lifecycle::run::<billing_app::startup::Application>().await,
    }
}
