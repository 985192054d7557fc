use std::collections::HashMap;

use common::{
    json_fields::parse_integer_in,
    problem::{FieldError, Problem},
};

/// Where a page starts: after a cursor (an id, stable under concurrent inserts) or at an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    After(i64),
    Offset(i64),
}

/// `GET /api/movies` parameters: `limit` (1-500, default 50), `offset` or `cursor`, `q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovieListQuery {
    pub limit: i64,
    pub page: Page,
    /// Case-insensitive substring of the title.
    pub title_contains: Option<String>,
}

impl MovieListQuery {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 500;

    pub fn parse(params: &HashMap<String, String>) -> Result<Self, Problem> {
        let mut errors = Vec::new();
        let mut number = |name: &str, range| {
            params.get(name).and_then(|text| match parse_integer_in(text, range) {
                Ok(n) => Some(n),
                Err(message) => {
                    errors.push(FieldError::new(name, message));
                    None
                }
            })
        };
        let limit = number("limit", 1..=Self::MAX_LIMIT).unwrap_or(Self::DEFAULT_LIMIT);
        let offset = number("offset", 0..=i64::MAX);
        let cursor = number("cursor", 0..=i64::MAX);
        if offset.is_some() && cursor.is_some() {
            errors.push(FieldError::new("cursor", "use either cursor or offset, not both"));
        }
        let title_contains = params.get("q").map(|q| q.trim()).filter(|q| !q.is_empty());
        if title_contains.is_some_and(|q| q.chars().count() > 200) {
            errors.push(FieldError::new("q", "must be at most 200 characters"));
        }
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        let page = match (cursor, offset) {
            (Some(after), _) => Page::After(after),
            (None, offset) => Page::Offset(offset.unwrap_or(0)),
        };
        Ok(Self {
            limit,
            page,
            title_contains: title_contains.map(str::to_owned),
        })
    }

    /// The link to the page after one whose last movie has id `last_id`.
    pub fn next_link(&self, last_id: i64) -> String {
        let mut link = format!("/api/movies?limit={}&cursor={last_id}", self.limit);
        if let Some(q) = &self.title_contains {
            link.push_str("&q=");
            link.push_str(&percent_encode(q));
        }
        link
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<MovieListQuery, Problem> {
        let map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        MovieListQuery::parse(&map)
    }

    #[test]
    fn defaults() {
        let query = parse(&[]).unwrap();
        assert_eq!(query.limit, 50);
        assert_eq!(query.page, Page::Offset(0));
        assert_eq!(query.title_contains, None);
    }

    #[test]
    fn bounds_and_conflicts_are_field_errors() {
        for (k, v) in [("limit", "0"), ("limit", "501"), ("limit", "x"), ("offset", "-1"), ("cursor", "1.5")] {
            let problem = parse(&[(k, v)]).unwrap_err();
            assert_eq!(problem.errors[0].field, k);
        }
        assert!(parse(&[("offset", "1"), ("cursor", "2")]).is_err());
        assert!(parse(&[("q", &"x".repeat(201))]).is_err());
    }

    #[test]
    fn next_link_keeps_the_search_and_encodes_it() {
        let query = parse(&[("limit", "2"), ("q", "Amélie & co")]).unwrap();
        assert_eq!(query.next_link(7), "/api/movies?limit=2&cursor=7&q=Am%C3%A9lie%20%26%20co");
    }
}
