//! The admin token that guards the catalogue's write endpoints.

use actix_web::{http::header, HttpRequest};
use subtle::ConstantTimeEq;

use crate::error::GatewayError;

/// A bearer token of at least 32 visible ASCII characters (configuration: `ADMIN_TOKEN`).
/// Its `Debug` output is redacted so it never reaches a log.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    pub const MIN_LEN: usize = 32;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() < Self::MIN_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "must be at least {} visible ASCII characters",
                Self::MIN_LEN
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// Whether the request carries `Authorization: Bearer <this token>`; the comparison takes
    /// the same time whatever the first differing byte.
    fn admits(&self, req: &HttpRequest) -> bool {
        let Some(presented) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        presented.as_bytes().ct_eq(self.0.as_bytes()).into()
    }

    /// `Ok` for an authorised request, else the 401 error.
    pub fn require(&self, req: &HttpRequest) -> Result<(), GatewayError> {
        if self.admits(req) {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized)
        }
    }
}

impl std::str::FromStr for AdminToken {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn short_or_odd_tokens_are_refused() {
        assert!(AdminToken::parse("short").is_err());
        assert!(AdminToken::parse(&format!("{TOKEN} x")).is_err());
        assert!(AdminToken::parse(TOKEN).is_ok());
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = AdminToken::parse(TOKEN).unwrap();
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request()
        };
        assert!(token.admits(&with(&format!("Bearer {TOKEN}"))));
        assert!(!token.admits(&with(&format!("Bearer {TOKEN}x"))));
        assert!(!token.admits(&with(&format!("bearer {TOKEN}"))));
        assert!(!token.admits(&with(TOKEN)));
        assert!(!token.admits(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = AdminToken::parse(TOKEN).unwrap();
        assert!(!format!("{token:?}").contains(TOKEN));
    }
}
