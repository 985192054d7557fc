//! Conditional requests (RFC 9110, section 13): `If-None-Match` on reads (a client's copy is
//! still current: 304) and `If-Match` on writes (the client's copy is the current one, or 412).

use actix_web::{
    http::header::{self, EntityTag, Header, IfMatch, IfNoneMatch},
    HttpRequest,
};

/// What a client may do with a catalogue read: store it (privately or in a shared cache), but
/// ask again before each use. With the `ETag`, asking again costs a 304 when nothing changed.
pub const REVALIDATE: &str = "public, no-cache";

/// What `If-Match` asks of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`: the write goes ahead whatever the resource's state.
    None,
    /// `If-Match: *`: the resource must exist.
    Exists,
    /// The resource's current entity tag must be one of these (strong comparison).
    OneOf(Vec<EntityTag>),
}

impl Precondition {
    /// The request's `If-Match`. A value that is no list of entity tags names no version the
    /// resource can be in: the write is refused (412), never let through.
    pub fn of(req: &HttpRequest) -> Self {
        if !req.headers().contains_key(header::IF_MATCH) {
            return Self::None;
        }
        match IfMatch::parse(req) {
            Ok(IfMatch::Any) => Self::Exists,
            // (actix drops the items that are no entity tag.)
            Ok(IfMatch::Items(tags)) => Self::OneOf(tags),
            Err(_) => Self::OneOf(Vec::new()),
        }
    }

    /// Whether a resource whose current tag is `current` (`None`: there is none) meets it.
    pub fn holds_for(&self, current: Option<&EntityTag>) -> bool {
        match (self, current) {
            (Self::None, _) => true,
            (_, None) => false,
            (Self::Exists, Some(_)) => true,
            (Self::OneOf(tags), Some(current)) => tags.iter().any(|tag| tag.strong_eq(current)),
        }
    }
}

/// Whether the client's copy, named by `If-None-Match`, is current for a resource tagged
/// `current` (weak comparison, as RFC 9110 asks for this header). A value that is no list of
/// entity tags names no copy: the full answer follows.
pub fn is_current(req: &HttpRequest, current: &EntityTag) -> bool {
    if !req.headers().contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    match IfNoneMatch::parse(req) {
        Ok(IfNoneMatch::Any) => true,
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(current)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn tag(text: &str) -> EntityTag {
        EntityTag::new_strong(text.to_owned())
    }

    #[test]
    fn if_none_match_compares_weakly_and_star_matches_anything() {
        let current = tag("v3");
        for (header, expected) in [
            ("\"v3\"", true),
            ("W/\"v3\"", true),
            ("\"v2\", \"v3\"", true),
            ("*", true),
            ("\"v2\"", false),
        ] {
            let req = TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, header))
                .to_http_request();
            assert_eq!(is_current(&req, &current), expected, "{header}");
        }
        assert!(!is_current(
            &TestRequest::default().to_http_request(),
            &current
        ));
    }

    #[test]
    fn if_match_compares_strongly_and_star_needs_the_resource() {
        let current = tag("v3");
        let of = |header: &str| {
            Precondition::of(
                &TestRequest::default()
                    .insert_header((header::IF_MATCH, header))
                    .to_http_request(),
            )
        };
        assert!(of("\"v3\"").holds_for(Some(&current)));
        assert!(of("\"v1\", \"v3\"").holds_for(Some(&current)));
        assert!(
            !of("W/\"v3\"").holds_for(Some(&current)),
            "never weak for a write"
        );
        assert!(!of("\"v2\"").holds_for(Some(&current)));
        assert!(of("*").holds_for(Some(&current)));
        assert!(!of("*").holds_for(None));
        assert!(!of("\"v3\"").holds_for(None));
        let none = Precondition::of(&TestRequest::default().to_http_request());
        assert!(none.holds_for(None) && none.holds_for(Some(&current)));
    }

    #[test]
    fn an_unreadable_header_lets_no_write_through_and_asks_for_the_full_answer() {
        for header in ["v3", "\"v3", "", ",", "W/", "0"] {
            let req = TestRequest::default()
                .insert_header((header::IF_MATCH, header))
                .insert_header((header::IF_NONE_MATCH, header))
                .to_http_request();
            assert!(
                !Precondition::of(&req).holds_for(Some(&tag("v3"))),
                "{header}"
            );
            assert!(!is_current(&req, &tag("v3")), "{header}");
        }
    }
}
