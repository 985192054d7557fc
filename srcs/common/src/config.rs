//! Typed configuration from environment variables (a `.env` file is loaded first when present).
//!
//! Every service validates its whole configuration at start and stops with one line naming the
//! variable at fault, rather than failing later on first use.

use std::{collections::HashMap, fmt::Display, str::FromStr, time::Duration};

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

/// A service's settings, read and checked as a whole: a service stops at start with one line
/// naming the variable at fault rather than failing later on first use.
pub trait FromEnv: Sized {
    fn read(env: &Env) -> Result<Self, ConfigError>;
}

/// Where settings are read from: the process environment, or a given list of variables (tests
/// derive their settings from the real configuration this way, with a few overrides).
pub struct Env {
    /// `None`: the process environment.
    given: Option<HashMap<String, String>>,
}

impl Env {
    pub fn process() -> Self {
        Self { given: None }
    }

    /// Only these variables; nothing is read from the process environment.
    pub fn given<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Self {
            given: Some(
                vars.into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    fn raw(&self, name: &str) -> Result<Option<String>, ConfigError> {
        let value = match &self.given {
            Some(vars) => vars.get(name).cloned(),
            None => match std::env::var(name) {
                Ok(value) => Some(value),
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(ConfigError::invalid(name, "not valid UTF-8"))
                }
            },
        };
        Ok(value.filter(|value| !value.trim().is_empty()))
    }

    /// A variable that must be set.
    pub fn required<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let value = self.raw(name)?.ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })?;
        parse(name, &value)
    }

    /// A variable with a default used when it is unset or empty.
    pub fn or_default<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name)? {
            Some(value) => parse(name, &value),
            None => Ok(default),
        }
    }

    /// A duration given in whole milliseconds; zero is refused because every timeout here must
    /// bite.
    pub fn millis_or_default(&self, name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.or_default(name, default_ms)?;
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
        &self,
        name: &str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        let value: usize = self.or_default(name, default)?;
        if !range.contains(&value) {
            return Err(ConfigError::invalid(
                name,
                format!("must be between {} and {}", range.start(), range.end()),
            ));
        }
        Ok(value)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::given(vars.iter().copied())
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = env(&[]).required::<u16>("SOME_PORT").unwrap_err();
        assert!(err.to_string().contains("SOME_PORT is not set"), "{err}");
    }

    #[test]
    fn malformed_variable_is_named_with_the_reason() {
        let err = env(&[("SOME_PORT", "eighty")])
            .required::<u16>("SOME_PORT")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("SOME_PORT is invalid"), "{text}");
        assert!(text.contains("invalid digit"), "{text}");
    }

    #[test]
    fn empty_variable_falls_back_to_default() {
        let env = env(&[("EMPTY", "  ")]);
        assert_eq!(env.or_default("EMPTY", 7u32).unwrap(), 7);
    }

    #[test]
    fn zero_timeout_is_refused() {
        let env = env(&[("ZERO_MS", "0"), ("SOME_MS", "250")]);
        assert!(env.millis_or_default("ZERO_MS", 5).is_err());
        assert_eq!(
            env.millis_or_default("SOME_MS", 5).unwrap(),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn counts_outside_their_range_are_refused() {
        let env = env(&[("COUNT", "0")]);
        assert!(env.count_or_default("COUNT", 4, 1..=10).is_err());
    }

    #[test]
    fn the_process_environment_is_read_when_no_list_is_given() {
        std::env::set_var("MOVIE_TEST_CONFIG_FROM_PROCESS", "42");
        let value: u32 = Env::process()
            .required("MOVIE_TEST_CONFIG_FROM_PROCESS")
            .unwrap();
        assert_eq!(value, 42);
        assert!(Env::given([("X", "1")])
            .required::<u32>("MOVIE_TEST_CONFIG_FROM_PROCESS")
            .is_err());
    }
}
