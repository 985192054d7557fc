use actix_web::http::StatusCode;
use common::problem::Problem;

/// A movie's id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MovieId(i64);

impl MovieId {
    pub(crate) fn parse(text: &str) -> Result<Self, Problem> {
        match text.parse::<i64>() {
            Ok(id)
                if id > 0
                    && text.len() <= 18
                    && !text.starts_with('0')
                    && text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(Self(id))
            }
            _ => Err(Problem::new(StatusCode::BAD_REQUEST).with_detail(format!(
                "Movie id must be a positive integer, not {text:?}."
            ))),
        }
    }

    pub(crate) fn get(self) -> i64 {
        self.0
    }
}

impl std::fmt::Display for MovieId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_plain_integers_are_ids() {
        assert_eq!(MovieId::parse("42").unwrap().get(), 42);
        for bad in [
            "0",
            "-1",
            "+1",
            "abc",
            "1.0",
            "",
            " 1",
            "01",
            "1234567890123456789",
            "99999999999999999999",
        ] {
            assert!(MovieId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
