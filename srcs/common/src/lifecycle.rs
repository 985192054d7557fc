//! One lifecycle for every service, so the three `main.rs` read the same ([`run`]): settings
//! read and checked, then [`Service::build`] (database migrated, socket bound: the service
//! serves, and systemd hears READY=1 with [`Service::READY_STATUS`]), and
//! [`Service::run_until`] a shutdown future completes (SIGTERM or SIGINT in production, whatever
//! the test chooses in tests), after which the service finishes what it started and returns.

use std::{future::Future, process::ExitCode};

use crate::{
    config::{Env, FromEnv},
    systemd::notify,
};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Bind(#[from] crate::http::BindError),
    /// Migrating the service's database failed (see the `database` crate).
    #[error("database migration failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub trait Service: Sized {
    /// The binary's name, for the lines that say why it could not start.
    const NAME: &'static str;
    type Settings: FromEnv;

    fn build(settings: Self::Settings) -> impl Future<Output = Result<Self, StartupError>> + Send;

    /// The port its HTTP listener is bound to (the configured one, or the one the system chose
    /// for port 0).
    fn port(&self) -> u16;

    /// The status line systemd shows once the service is built. Readiness waits for nothing
    /// beyond `build`, never for another machine (systemd would restart the service while that
    /// machine boots): `/ready` reports those dependencies.
    const READY_STATUS: &'static str;

    /// Runs until `shutdown` completes, then finishes the work in progress and returns.
    fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// What `main` does: configure, build, tell systemd when ready, run until SIGTERM/SIGINT.
/// Exit status 78 (EX_CONFIG) for a bad configuration, 1 for a failed start or run.
pub async fn run<S: Service>() -> ExitCode {
    crate::config::load_dotenv();
    crate::telemetry::init_logging();
    let settings = match S::Settings::read(&Env::process()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{}: {e}", S::NAME);
            return ExitCode::from(78);
        }
    };
    let service = match S::build(settings).await {
        Ok(service) => service,
        Err(e) => {
            log::error!("{} failed to start: {e}", S::NAME);
            return ExitCode::FAILURE;
        }
    };
    notify::ready(S::READY_STATUS);
    let stop_signal = async {
        signal().await;
        notify::stopping();
    };
    match service.run_until(stop_signal).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{} stopped with an error: {e}", S::NAME);
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM received"),
        _ = int.recv() => log::info!("SIGINT received"),
    }
}
