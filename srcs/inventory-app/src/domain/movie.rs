use actix_web::http::header::EntityTag;
use chrono::{DateTime, Utc};
use common::{
    json_fields::{self, FieldReader, RawObject, CHECKED},
    problem::Problem,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// At most 200 characters as sent, not blank; kept trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Title(String);

impl Title {
    pub(crate) const MAX_CHARS: usize = 200;

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        json_fields::trimmed_text(text, Self::MAX_CHARS).map(Self)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// At most 5,000 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Description(String);

impl Description {
    pub(crate) const MAX_CHARS: usize = 5_000;

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        json_fields::check_text(text, true)?;
        Ok(Self(text.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// From 1878 (the first motion picture) to 2100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReleaseYear(i16);

impl ReleaseYear {
    pub(crate) fn from_json(raw: &RawValue) -> Result<Self, String> {
        json_fields::integer_in(raw, 1878..=2100).map(|y| Self(y as i16))
    }

    pub(crate) fn get(self) -> i16 {
        self.0
    }
}

/// Length in minutes, 1 to 1,440.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuntimeMinutes(i32);

impl RuntimeMinutes {
    pub(crate) fn from_json(raw: &RawValue) -> Result<Self, String> {
        json_fields::integer_in(raw, 1..=1440).map(|m| Self(m as i32))
    }

    pub(crate) fn get(self) -> i32 {
        self.0
    }
}

/// Up to 10 genres, each at most 50 characters as sent, not blank; kept trimmed, and a genre
/// repeated (ignoring ASCII case) is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Genres(Vec<String>);

impl Genres {
    pub(crate) const MAX_COUNT: usize = 10;
    pub(crate) const MAX_CHARS: usize = 50;

    pub(crate) fn from_json(raw: &RawValue) -> Result<Self, String> {
        let items: Vec<Box<RawValue>> = serde_json::from_str(raw.get()).map_err(|_| {
            format!(
                "must be an array of strings, not {}",
                json_fields::kind_of(raw)
            )
        })?;
        if items.len() > Self::MAX_COUNT {
            return Err(format!("must have at most {} genres", Self::MAX_COUNT));
        }
        let mut genres: Vec<String> = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let genre = json_fields::string(item)
                .and_then(|text| json_fields::trimmed_text(&text, Self::MAX_CHARS))
                .map_err(|m| format!("item {index} {m}"))?;
            if !genres.iter().any(|g| g.eq_ignore_ascii_case(&genre)) {
                genres.push(genre);
            }
        }
        Ok(Self(genres))
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A valid movie as a client submits it, for creation or full replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MovieDraft {
    pub(crate) title: Title,
    pub(crate) description: Option<Description>,
    pub(crate) release_year: Option<ReleaseYear>,
    pub(crate) genres: Genres,
    pub(crate) runtime_minutes: Option<RuntimeMinutes>,
}

impl MovieDraft {
    pub(crate) const FIELDS: [&'static str; 5] = [
        "title",
        "description",
        "release_year",
        "genres",
        "runtime_minutes",
    ];

    /// Parses a request body, answering a 400 problem naming every bad field.
    pub(crate) fn from_json(fields: RawObject) -> Result<Self, Problem> {
        let mut reader = FieldReader::new(fields, &Self::FIELDS);
        let title = reader.required("title", |raw| Title::parse(&json_fields::string(raw)?));
        let description = reader.optional("description", |raw| {
            Description::parse(&json_fields::string(raw)?)
        });
        let release_year = reader.optional("release_year", ReleaseYear::from_json);
        let genres = reader.optional("genres", Genres::from_json);
        let runtime_minutes = reader.optional("runtime_minutes", RuntimeMinutes::from_json);
        reader.finish()?;
        Ok(Self {
            title: title.expect(CHECKED),
            description: description.expect(CHECKED),
            release_year: release_year.expect(CHECKED),
            genres: genres.expect(CHECKED).unwrap_or_default(),
            runtime_minutes: runtime_minutes.expect(CHECKED),
        })
    }
}

/// A stored movie, as answered to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Movie {
    pub(crate) id: i64,
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) release_year: Option<i16>,
    pub(crate) genres: Vec<String>,
    pub(crate) runtime_minutes: Option<i32>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    /// 1 when created, one more at each change.
    pub(crate) version: i64,
    /// Made by the database at each change (the version and a random part): never reused, not
    /// even after a restore from a backup.
    #[serde(skip)]
    pub(crate) etag: String,
}

impl Movie {
    pub(crate) fn etag(&self) -> EntityTag {
        EntityTag::new_strong(self.etag.clone())
    }

    /// The movie as the API answers it (and as its change events carry it).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a movie always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(json: &str) -> Result<MovieDraft, Problem> {
        MovieDraft::from_json(serde_json::from_str(json).unwrap())
    }

    fn bad_fields(json: &str) -> Vec<String> {
        draft(json)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn the_original_systems_example_is_valid() {
        let movie = draft(r#"{"title": "The Matrix", "description": "Sci-Fi Classic"}"#).unwrap();
        assert_eq!(movie.title.as_str(), "The Matrix");
        assert_eq!(movie.description.unwrap().as_str(), "Sci-Fi Classic");
        assert!(movie.genres.as_slice().is_empty());
    }

    #[test]
    fn titles_are_trimmed_counted_in_characters_and_unicode_friendly() {
        assert_eq!(Title::parse("  Amélie  ").unwrap().as_str(), "Amélie");
        assert!(Title::parse("千と千尋の神隠し").is_ok());
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        assert!(Title::parse(&"é".repeat(201)).is_err());
        assert!(
            Title::parse(&format!(" {}", "x".repeat(200))).is_err(),
            "length counts as sent"
        );
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse("a\u{7}b").is_err());
    }

    #[test]
    fn descriptions_allow_line_breaks_and_at_most_5000_characters() {
        assert!(Description::parse("line one\nline two").is_ok());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse(&"x".repeat(5000)).is_ok());
        assert!(Description::parse(&"x".repeat(5001)).is_err());
    }

    #[test]
    fn optional_fields_are_validated() {
        let movie = draft(r#"{"title": "Heat", "release_year": 1995, "genres": ["Crime", " Drama "], "runtime_minutes": 170}"#).unwrap();
        assert_eq!(movie.release_year.unwrap().get(), 1995);
        assert_eq!(movie.genres.as_slice(), ["Crime", "Drama"]);
        assert_eq!(movie.runtime_minutes.unwrap().get(), 170);
        assert_eq!(
            bad_fields(r#"{"title": "x", "release_year": 1700}"#),
            ["release_year"]
        );
        assert_eq!(
            bad_fields(r#"{"title": "x", "release_year": "1995"}"#),
            ["release_year"]
        );
        assert_eq!(
            bad_fields(r#"{"title": "x", "runtime_minutes": 0}"#),
            ["runtime_minutes"]
        );
        assert_eq!(
            bad_fields(r#"{"title": "x", "runtime_minutes": 90.5}"#),
            ["runtime_minutes"]
        );
        assert_eq!(
            bad_fields(r#"{"title": "x", "genres": "Drama"}"#),
            ["genres"]
        );
        let deduplicated =
            draft(r#"{"title": "x", "genres": ["Drama", " drama", "Crime"]}"#).unwrap();
        assert_eq!(deduplicated.genres.as_slice(), ["Drama", "Crime"]);
        assert_eq!(bad_fields(r#"{"title": "x", "genres": [""]}"#), ["genres"]);
        assert_eq!(bad_fields(r#"{"title": "x", "genres": [1]}"#), ["genres"]);
        let eleven: Vec<String> = (0..11).map(|i| format!("\"g{i}\"")).collect();
        assert_eq!(
            bad_fields(&format!(
                r#"{{"title": "x", "genres": [{}]}}"#,
                eleven.join(",")
            )),
            ["genres"]
        );
    }

    #[test]
    fn nulls_clear_optional_fields_and_unknown_fields_are_refused() {
        let movie = draft(r#"{"title": "x", "description": null, "genres": null}"#).unwrap();
        assert!(movie.description.is_none());
        assert_eq!(bad_fields(r#"{"title": "x", "rating": 5}"#), ["rating"]);
        assert_eq!(
            bad_fields(r#"{"title": 42, "description": 7}"#),
            ["title", "description"]
        );
        assert_eq!(bad_fields(r#"{}"#), ["title"]);
    }

    proptest::proptest! {
        #[test]
        fn the_movie_parser_never_panics(body in proptest::collection::btree_map(
            "(title|description|release_year|genres|runtime_minutes|[a-z]{1,8})",
            "(null|true|-?[0-9]{1,25}(\\.[0-9]{0,4})?|\"[^\"\\\\]{0,300}\"|\\[(\"[^\"\\\\]{0,60}\",?){0,12}\\]|\\{\\})",
            0..6,
        )) {
            let json = format!("{{{}}}", body.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(","));
            if let Ok(fields) = serde_json::from_str::<RawObject>(&json) {
                let _ = MovieDraft::from_json(fields);
            }
        }

        #[test]
        fn valid_titles_round_trip_trimmed(title in "[^\\p{Cc}]{0,190}[a-zA-Z][^\\p{Cc}]{0,8}") {
            let parsed = Title::parse(&title).unwrap();
            proptest::prop_assert_eq!(parsed.as_str(), title.trim());
        }
    }
}
