//! The admin token that guards the catalogue's writes. The gateway checks it for clients and
//! passes the client's `Authorization` on; inventory checks it again, so a firewall mistake that
//! lets someone reach inventory directly does not open the catalogue.

use std::future::{ready, Ready};

use actix_web::{
    dev::Payload,
    http::{header, StatusCode},
    web, FromRequest, HttpRequest, HttpResponse, ResponseError,
};
use subtle::ConstantTimeEq;

use crate::problem::Problem;

/// A bearer token of at least 32 visible ASCII characters (configuration: `ADMIN_TOKEN`).
/// Its `Debug` output is redacted so it never reaches a log.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    pub(crate) const MIN_LEN: usize = 32;

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() < Self::MIN_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "must be at least {} visible ASCII characters",
                Self::MIN_LEN
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// Whether the request carries `Authorization: Bearer <this token>` (the scheme name in
    /// any case, RFC 9110 section 11.1); the comparison takes the same time whatever the first
    /// differing byte.
    fn admits(&self, req: &HttpRequest) -> bool {
        let Some((scheme, presented)) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
        else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer")
            && bool::from(
                presented
                    .trim_matches(' ')
                    .as_bytes()
                    .ct_eq(self.0.as_bytes()),
            )
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

/// Extracting it proves the request carries the admin token (`web::Data<AdminToken>` in the
/// app); otherwise the request is answered 401 before the handler runs.
pub struct Admin;

impl FromRequest for Admin {
    type Error = Unauthorized;
    type Future = Ready<Result<Self, Unauthorized>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admitted = match req.app_data::<web::Data<AdminToken>>() {
            Some(token) => token.admits(req),
            None => {
                log::error!("no admin token configured: every write is refused");
                false
            }
        };
        ready(if admitted {
            Ok(Admin)
        } else {
            Err(Unauthorized)
        })
    }
}

/// A write without the admin token.
#[derive(Debug, thiserror::Error)]
#[error("missing or wrong admin token")]
pub struct Unauthorized;

impl ResponseError for Unauthorized {
    fn status_code(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED)
            .with_detail("Changing the catalogue needs `Authorization: Bearer <admin token>`.")
            .to_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(r#"Bearer realm="movie-platform""#),
        );
        response
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
    fn only_the_exact_bearer_token_is_admitted_whatever_the_scheme_case() {
        let token = AdminToken::parse(TOKEN).unwrap();
        let with = |value: &str| {
            TestRequest::default()
                .insert_header((header::AUTHORIZATION, value))
                .to_http_request()
        };
        for admitted in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER {TOKEN}"),
            format!("Bearer  {TOKEN}"),
        ] {
            assert!(token.admits(&with(&admitted)), "{admitted}");
        }
        for refused in [
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            format!("Basic {TOKEN}"),
            format!("Bearer{TOKEN}"),
            TOKEN.to_owned(),
            "Bearer ".to_owned(),
        ] {
            assert!(!token.admits(&with(&refused)), "{refused}");
        }
        assert!(!token.admits(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = AdminToken::parse(TOKEN).unwrap();
        assert!(!format!("{token:?}").contains(TOKEN));
    }
}
