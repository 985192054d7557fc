//! Logging: `env_logger`, controlled by `RUST_LOG` (default `info`).

/// Initialises the global logger once; later calls (tests spawning several apps) do nothing.
pub fn init_logging() {
    let _ = logger().try_init();
}

/// `info` unless `RUST_LOG` says otherwise, and never lapin's warning about a message the broker
/// returned: it prints the whole message, an order's user and amount included, where the
/// services already handle the return (the gateway answers 503 and counts it as `unroutable`;
/// billing's dead-lettering reports it). `RUST_LOG` naming `lapin::returned_messages` still
/// turns it back on.
fn logger() -> env_logger::Builder {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        .filter_module("lapin::returned_messages", log::LevelFilter::Error)
        .parse_env(env_logger::Env::default())
        .format_timestamp_millis();
    builder
}

/// An error with all its sources, for logs: `tokio_postgres` says only "db error" at the top.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Many errors already print their source; don't say it twice.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use log::{Level, Log, Metadata};

    fn enabled(logger: &env_logger::Logger, target: &str, level: Level) -> bool {
        logger.enabled(&Metadata::builder().target(target).level(level).build())
    }

    #[test]
    fn returned_messages_are_not_logged_with_their_body_but_other_warnings_are() {
        let logger = super::logger().build();
        assert!(!enabled(&logger, "lapin::returned_messages", Level::Warn));
        assert!(enabled(&logger, "lapin::channel", Level::Warn));
        assert!(enabled(&logger, "api_gateway::publisher", Level::Info));
        assert!(!enabled(&logger, "api_gateway::publisher", Level::Debug));
    }
}
