//! Typed configuration from environment variables (a `.env` file is loaded first when present).
//!
//! Every service validates its whole configuration at start and stops with one line naming the
//! variable at fault, rather than failing later on first use.

use std::{fmt::Display, str::FromStr, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {name} is not set (see the example env file of this service)")]
    Missing { name: String },
    #[error("configuration: {name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

impl ConfigError {
    pub fn invalid(name: &str, reason: impl Display) -> Self {
        Self::Invalid {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Loads `.env` from the working directory if there is one; real environment variables win.
pub fn load_dotenv() {
    // A missing file is the normal case in production (systemd passes an EnvironmentFile).
    let _ = dotenvy::dotenv();
}

fn raw(name: &str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(ConfigError::invalid(name, "not valid UTF-8"))
        }
    }
}

fn parse<T>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| ConfigError::invalid(name, e))
}

/// A variable that must be set.
pub fn required<T>(name: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    let value = raw(name)?.ok_or_else(|| ConfigError::Missing {
        name: name.to_owned(),
    })?;
    parse(name, &value)
}

/// A variable with a default used when it is unset or empty.
pub fn or_default<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match raw(name)? {
        Some(value) => parse(name, &value),
        None => Ok(default),
    }
}

/// A duration given in whole milliseconds; zero is refused because every timeout here must bite.
pub fn millis_or_default(name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
    let ms: u64 = or_default(name, default_ms)?;
    if ms == 0 {
        return Err(ConfigError::invalid(
            name,
            "must be at least 1 (milliseconds)",
        ));
    }
    Ok(Duration::from_millis(ms))
}

/// A count that must lie in `range`.
pub fn count_or_default(
    name: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    let value: usize = or_default(name, default)?;
    if !range.contains(&value) {
        return Err(ConfigError::invalid(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test uses its own variable names: tests in one binary share the process environment.
    #[test]
    fn missing_required_variable_is_named() {
        let err = required::<u16>("MOVIE_TEST_CONFIG_MISSING").unwrap_err();
        assert!(
            err.to_string()
                .contains("MOVIE_TEST_CONFIG_MISSING is not set"),
            "{err}"
        );
    }

    #[test]
    fn malformed_variable_is_named_with_the_reason() {
        std::env::set_var("MOVIE_TEST_CONFIG_BAD_PORT", "eighty");
        let err = required::<u16>("MOVIE_TEST_CONFIG_BAD_PORT").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("MOVIE_TEST_CONFIG_BAD_PORT is invalid"),
            "{text}"
        );
        assert!(text.contains("invalid digit"), "{text}");
    }

    #[test]
    fn empty_variable_falls_back_to_default() {
        std::env::set_var("MOVIE_TEST_CONFIG_EMPTY", "  ");
        assert_eq!(or_default("MOVIE_TEST_CONFIG_EMPTY", 7u32).unwrap(), 7);
    }

    #[test]
    fn zero_timeout_is_refused() {
        std::env::set_var("MOVIE_TEST_CONFIG_ZERO_MS", "0");
        assert!(millis_or_default("MOVIE_TEST_CONFIG_ZERO_MS", 5).is_err());
        std::env::set_var("MOVIE_TEST_CONFIG_MS", "250");
        assert_eq!(
            millis_or_default("MOVIE_TEST_CONFIG_MS", 5).unwrap(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn counts_outside_their_range_are_refused() {
        std::env::set_var("MOVIE_TEST_CONFIG_COUNT", "0");
        assert!(count_or_default("MOVIE_TEST_CONFIG_COUNT", 4, 1..=10).is_err());
    }
}
