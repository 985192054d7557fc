//! Conditional requests (RFC 9110, section 13): `If-None-Match` on reads (a client's copy is
//! still current: 304) and `If-Match` on writes (the client's copy is the current one, or 412).

use actix_web::{
    http::header::{self, EntityTag, Header, IfMatch, IfNoneMatch},
    HttpRequest,
};

/// What a client may do with a catalogue read: store it (privately or in a shared cache), but
/// ask again before each use. With the `ETag`, asking again costs a 304 when nothing changed.
pub const REVALIDATE: &str = "public, no-cache";

/// A conditional header's list: `*`, or entity tags. A value that is no list of entity tags
/// names no tag (an empty list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tags {
    Any,
    Listed(Vec<EntityTag>),
}

/// What a write's conditional headers ask (RFC 9110, 13.1.1 and 13.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preconditions {
    /// The resource's current tag must be one of these (strong comparison); `*`: it must exist.
    pub if_match: Option<Tags>,
    /// The resource's current tag must be none of these (weak comparison); `*`: it must not
    /// exist.
    pub if_none_match: Option<Tags>,
}

impl Preconditions {
    pub fn of(req: &HttpRequest) -> Self {
        let if_match = req.headers().contains_key(header::IF_MATCH).then(|| {
            match IfMatch::parse(req) {
                Ok(IfMatch::Any) => Tags::Any,
                // (actix drops the items that are no entity tag.)
                Ok(IfMatch::Items(tags)) => Tags::Listed(tags),
                Err(_) => Tags::Listed(Vec::new()),
            }
        });
        let if_none_match = req.headers().contains_key(header::IF_NONE_MATCH).then(|| {
            match IfNoneMatch::parse(req) {
                Ok(IfNoneMatch::Any) => Tags::Any,
                Ok(IfNoneMatch::Items(tags)) => Tags::Listed(tags),
                Err(_) => Tags::Listed(Vec::new()),
            }
        });
        Self {
            if_match,
            if_none_match,
        }
    }

    pub fn is_unconditional(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// Whether a resource whose current tag is `current` (`None`: there is none) meets them.
    pub fn hold_for(&self, current: Option<&EntityTag>) -> bool {
        let if_match = match (&self.if_match, current) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Tags::Any), Some(_)) => true,
            (Some(Tags::Listed(tags)), Some(current)) => {
                tags.iter().any(|tag| tag.strong_eq(current))
            }
        };
        let if_none_match = match (&self.if_none_match, current) {
            (None, _) | (Some(_), None) => true,
            (Some(Tags::Any), Some(_)) => false,
            (Some(Tags::Listed(tags)), Some(current)) => {
                !tags.iter().any(|tag| tag.weak_eq(current))
            }
        };
        if_match && if_none_match
    }

    /// Whether they hold for a resource that exists but has no entity tag (a collection):
    /// only `*` can match it.
    pub fn hold_for_untagged(&self) -> bool {
        let if_match = matches!(self.if_match, None | Some(Tags::Any));
        let if_none_match = !matches!(self.if_none_match, Some(Tags::Any));
        if_match && if_none_match
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

    fn write(headers: &[(header::HeaderName, &str)]) -> Preconditions {
        let mut req = TestRequest::default();
        for (name, value) in headers {
            req = req.insert_header((name.clone(), *value));
        }
        Preconditions::of(&req.to_http_request())
    }

    #[test]
    fn if_match_compares_strongly_and_star_needs_the_resource() {
        let current = tag("v3");
        let of = |value: &str| write(&[(header::IF_MATCH, value)]);
        assert!(of("\"v3\"").hold_for(Some(&current)));
        assert!(of("\"v1\", \"v3\"").hold_for(Some(&current)));
        assert!(
            !of("W/\"v3\"").hold_for(Some(&current)),
            "never weak for a write"
        );
        assert!(!of("\"v2\"").hold_for(Some(&current)));
        assert!(of("*").hold_for(Some(&current)));
        assert!(!of("*").hold_for(None));
        assert!(!of("\"v3\"").hold_for(None));
        let none = write(&[]);
        assert!(none.is_unconditional());
        assert!(none.hold_for(None) && none.hold_for(Some(&current)));
    }

    #[test]
    fn if_none_match_on_a_write_refuses_what_the_client_names() {
        let current = tag("v3");
        let of = |value: &str| write(&[(header::IF_NONE_MATCH, value)]);
        assert!(!of("*").hold_for(Some(&current)), "* : must not exist");
        assert!(of("*").hold_for(None));
        assert!(!of("W/\"v3\"").hold_for(Some(&current)), "weak comparison");
        assert!(of("\"v2\"").hold_for(Some(&current)));
        let both = write(&[
            (header::IF_MATCH, "\"v3\""),
            (header::IF_NONE_MATCH, "\"v3\""),
        ]);
        assert!(!both.hold_for(Some(&current)));
    }

    #[test]
    fn a_collection_without_a_tag_matches_only_star() {
        assert!(write(&[]).hold_for_untagged());
        assert!(write(&[(header::IF_MATCH, "*")]).hold_for_untagged());
        assert!(!write(&[(header::IF_MATCH, "\"p123\"")]).hold_for_untagged());
        assert!(!write(&[(header::IF_NONE_MATCH, "*")]).hold_for_untagged());
        assert!(write(&[(header::IF_NONE_MATCH, "\"p123\"")]).hold_for_untagged());
    }

    #[test]
    fn an_unreadable_header_lets_no_write_through_and_asks_for_the_full_answer() {
        for value in ["v3", "\"v3", "", ",", "W/", "0"] {
            let if_match = write(&[(header::IF_MATCH, value)]);
            assert!(!if_match.hold_for(Some(&tag("v3"))), "{value}");
            let req = TestRequest::default()
                .insert_header((header::IF_NONE_MATCH, value))
                .to_http_request();
            assert!(!is_current(&req, &tag("v3")), "{value}");
        }
    }
}
