//! The contract's bounds on names, texts and numbers, in one place for REST and sockets alike:
//! checks that return the cleaned value, and the types (`Seq`, `PageQuery`) that parse into
//! bounded values, so a REST query string and a socket payload are held to the same rule.

use std::fmt;

use serde::{de, Deserialize, Deserializer};
use utoipa::{
    openapi::{
        schema::{KnownFormat, SchemaFormat},
        ObjectBuilder, RefOr, Schema, Type,
    },
    IntoParams, PartialSchema, ToSchema,
};

use crate::{
    error::AppError,
    store::messages::{JsonObject, Page},
};

/// Bounds of history pages.
pub const MAX_PAGE: i64 = 200;
pub const DEFAULT_PAGE: i64 = 50;
/// Message body, in characters after trimming.
pub const MAX_BODY_CHARS: usize = 4000;
/// `client_id`, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// Room topic, in characters after trimming.
pub const MAX_TOPIC_CHARS: usize = 256;

/// Username: 3-32 of `[A-Za-z0-9_.-]`.
pub fn is_username(s: &str) -> bool {
    (3..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Room name: 1-64 of `[a-z0-9_-]` (so the `dm:` prefix of direct rooms can never be chosen).
pub fn is_room_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Workspace slug: 2-32 of `[a-z0-9-]`.
pub fn is_workspace_slug(s: &str) -> bool {
    (2..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn workspace_slug(field: &str, value: &str) -> Result<(), AppError> {
    if !is_workspace_slug(value) {
        return Err(AppError::invalid_field(
            field,
            "must be 2-32 characters of a-z, 0-9 and '-'",
        ));
    }
    Ok(())
}

/// A workspace's display name, trimmed; 1-64 characters, held to the display names' rules.
pub fn workspace_name(field: &str, value: &str) -> Result<String, AppError> {
    display_name(field, value)
}

/// Length in characters (Unicode scalar values), as the contract counts.
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

pub fn username(field: &str, value: &str) -> Result<(), AppError> {
    if !is_username(value) {
        return Err(AppError::invalid_field(
            field,
            "must be 3-32 characters of letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

pub fn password(field: &str, value: &str) -> Result<(), AppError> {
    if !(8..=256).contains(&char_len(value)) {
        return Err(AppError::invalid_field(field, "must be 8-256 characters"));
    }
    Ok(())
}

pub fn room_name(field: &str, value: &str) -> Result<(), AppError> {
    if !is_room_name(value) {
        return Err(AppError::invalid_field(
            field,
            "must be 1-64 characters of a-z, 0-9, '_' and '-'",
        ));
    }
    Ok(())
}

/// A message body, trimmed: 1-4000 characters, and no control characters (C0 and C1) but tab,
/// line feed and carriage return, which multi-line messages need. The others have no business in
/// chat text and some (escape, backspace) rewrite what a terminal or a log viewer shows.
pub fn message_body(field: &str, value: &str) -> Result<String, AppError> {
    let trimmed = value.trim();
    if !(1..=MAX_BODY_CHARS).contains(&char_len(trimmed)) {
        return Err(AppError::invalid_field(
            field,
            "must be 1-4000 characters after trimming",
        ));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(AppError::invalid_field(
            field,
            "must not contain control characters other than tab, line feed and carriage return",
        ));
    }
    Ok(trimmed.to_owned())
}

/// The bidirectional overrides (U+202A-202E) and isolates (U+2066-2069): in a name or a topic
/// shown next to other text they can make it read as something else ("Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A one-line label someone else sees (a display name, a topic): no control character at all
/// (`char::is_control` is Unicode's Cc: C0, DEL and C1) and no bidi override or isolate.
fn label_chars(field: &str, value: &str) -> Result<(), AppError> {
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid_field(
            field,
            "must not contain control characters (such as line breaks or tabs)",
        ));
    }
    if value.chars().any(is_bidi_control) {
        return Err(AppError::invalid_field(
            field,
            "must not contain bidirectional override or isolate characters (U+202A-202E, U+2066-2069)",
        ));
    }
    Ok(())
}

/// A client's idempotency key: 1-64 characters when given.
pub fn client_id(field: &str, value: Option<String>) -> Result<Option<String>, AppError> {
    match value {
        Some(id) if !(1..=MAX_CLIENT_ID_CHARS).contains(&char_len(&id)) => Err(
            AppError::invalid_field(field, "must be a string of 1-64 characters"),
        ),
        other => Ok(other),
    }
}

/// The product's own id for a user (server API): 1-128 characters, no control characters. Kept
/// exactly as given (no trimming): it is the product's key, compared byte for byte.
pub fn external_id(field: &str, value: &str) -> Result<(), AppError> {
    if !(1..=128).contains(&char_len(value)) {
        return Err(AppError::invalid_field(field, "must be 1-128 characters"));
    }
    label_chars(field, value)
}

/// A topic, trimmed: at most 256 characters; empty (or none) means no topic.
pub fn topic(field: &str, value: Option<&str>) -> Result<Option<String>, AppError> {
    let Some(t) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if char_len(t) > MAX_TOPIC_CHARS {
        return Err(AppError::invalid_field(
            field,
            "must be at most 256 characters",
        ));
    }
    label_chars(field, t)?;
    Ok(Some(t.to_owned()))
}

/// A message seq as a client gives it: an integer >= 0 (a JSON number; digits in a query
/// string). Strings are refused in JSON, where a seq is always a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seq(pub i64);

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_i64(Bounded {
            min: 0,
            max: i64::MAX,
            what: "an integer >= 0",
        })
        .map(Seq)
    }
}

/// A history page size: an integer from 1 to 200.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub i64);

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_i64(Bounded {
            min: 1,
            max: MAX_PAGE,
            what: "an integer from 1 to 200",
        })
        .map(Limit)
    }
}

/// An event log page size: an integer from 1 to 1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLimit(pub i64);

impl<'de> Deserialize<'de> for EventLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_i64(Bounded {
            min: 1,
            max: 1000,
            what: "an integer from 1 to 1000",
        })
        .map(EventLimit)
    }
}

/// An integer in `min..=max`. Query strings reach it through `deserialize_i64` as parsed
/// numbers, JSON as numbers; anything else is refused with `what` as the expectation.
struct Bounded {
    min: i64,
    max: i64,
    what: &'static str,
}

impl de::Visitor<'_> for Bounded {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
        if (self.min..=self.max).contains(&n) {
            Ok(n)
        } else {
            Err(E::invalid_value(de::Unexpected::Signed(n), &self))
        }
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
        match i64::try_from(n) {
            Ok(n) => self.visit_i64(n),
            Err(_) => Err(E::invalid_value(de::Unexpected::Unsigned(n), &self)),
        }
    }
}

/// The OpenAPI schema of an integer in `min..=max`, as the deserialisers above accept it.
fn bounded_schema(min: i64, max: i64) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(min))
        .maximum((max != i64::MAX).then_some(max))
        .into()
}

impl PartialSchema for Seq {
    fn schema() -> RefOr<Schema> {
        bounded_schema(0, i64::MAX)
    }
}
impl ToSchema for Seq {}

impl PartialSchema for Limit {
    fn schema() -> RefOr<Schema> {
        bounded_schema(1, MAX_PAGE)
    }
}
impl ToSchema for Limit {}

impl PartialSchema for EventLimit {
    fn schema() -> RefOr<Schema> {
        bounded_schema(1, 1000)
    }
}
impl ToSchema for EventLimit {}

/// `before`, `after` and `limit` of a history request, from a query string or a payload.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Messages before this seq, newest first (absent: the newest).
    #[serde(default)]
    #[param(inline)]
    pub before: Option<Seq>,
    /// Messages after this seq, oldest first; not with `before`.
    #[serde(default)]
    #[param(inline)]
    pub after: Option<Seq>,
    /// Page size (default 50).
    #[serde(default)]
    #[param(inline)]
    pub limit: Option<Limit>,
}

impl PageQuery {
    /// The page asked for and its size; `before` and `after` together are refused.
    pub fn page(self) -> Result<(Page, i64), AppError> {
        let limit = self.limit.map_or(DEFAULT_PAGE, |l| l.0);
        let page = match (self.before, self.after) {
            (Some(_), Some(_)) => {
                return Err(AppError::invalid_field(
                    "after",
                    "cannot be used together with before",
                ))
            }
            (None, Some(after)) => Page::After(after.0),
            (before, None) => Page::Before(before.map(|b| b.0)),
        };
        Ok((page, limit))
    }
}

/// A display name, trimmed; 1-64 characters.
pub fn display_name(field: &str, value: &str) -> Result<String, AppError> {
    let trimmed = value.trim();
    if !(1..=64).contains(&char_len(trimmed)) {
        return Err(AppError::invalid_field(field, "must be 1-64 characters"));
    }
    label_chars(field, trimmed)?;
    Ok(trimmed.to_owned())
}

/// The most a `metadata` object may weigh, serialised.
pub const MAX_METADATA_BYTES: usize = 4096;

/// An app's `metadata`: a JSON object of at most 4 KiB serialised.
pub fn metadata(field: &str, value: serde_json::Value) -> Result<JsonObject, AppError> {
    let serde_json::Value::Object(map) = value else {
        return Err(AppError::invalid_field(field, "must be a JSON object"));
    };
    let size = serde_json::to_vec(&map).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_METADATA_BYTES {
        return Err(AppError::invalid_field(
            field,
            "must be at most 4096 bytes serialised",
        ));
    }
    Ok(map)
}

/// A reaction: 1-32 Unicode scalar values, no whitespace and no control characters.
pub fn emoji(field: &str, value: &str) -> Result<(), AppError> {
    if !(1..=32).contains(&char_len(value)) {
        return Err(AppError::invalid_field(field, "must be 1-32 characters"));
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || is_bidi_control(c))
    {
        return Err(AppError::invalid_field(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "Alice_01", "a.b-c", &"x".repeat(32)] {
            assert!(is_username(ok), "{ok}");
        }
        for bad in ["ab", "", "with space", "émile", "a/b", &"x".repeat(33)] {
            assert!(!is_username(bad), "{bad}");
        }
    }

    #[test]
    fn workspace_slugs() {
        for ok in ["ab", "acme-2", &"w".repeat(32)] {
            assert!(is_workspace_slug(ok), "{ok}");
        }
        for bad in ["a", "", "Acme", "ac_me", "a b", &"w".repeat(33)] {
            assert!(!is_workspace_slug(bad), "{bad}");
        }
    }

    #[test]
    fn room_names() {
        for ok in ["general", "a", "dev-ops_2", &"r".repeat(64)] {
            assert!(is_room_name(ok), "{ok}");
        }
        for bad in ["", "General", "dm:x", "a b", &"r".repeat(65)] {
            assert!(!is_room_name(bad), "{bad}");
        }
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(password("p", &"é".repeat(8)).is_ok());
        assert!(password("p", &"é".repeat(257)).is_err());
        assert_eq!(display_name("d", "  Zoë  ").unwrap(), "Zoë");
        assert!(display_name("d", "   ").is_err());
        assert!(display_name("d", &"ü".repeat(64)).is_ok());
        assert_eq!(message_body("b", "  hi ").unwrap(), "hi");
        assert!(message_body("b", " \n ").is_err());
        assert!(message_body("b", &"ß".repeat(4000)).is_ok());
        assert!(message_body("b", &"ß".repeat(4001)).is_err());
        assert!(client_id("c", Some("é".repeat(64))).is_ok());
        assert!(client_id("c", Some("é".repeat(65))).is_err());
        assert!(client_id("c", Some(String::new())).is_err());
        assert_eq!(topic("t", Some("  ")).unwrap(), None);
        assert!(topic("t", Some(&"t".repeat(257))).is_err());
    }

    #[test]
    fn control_and_bidi_characters() {
        assert_eq!(
            message_body("b", "line one\r\n\tline two").unwrap(),
            "line one\r\n\tline two"
        );
        for bad in [
            "a\u{0}b",
            "a\u{1b}[2Jb",
            "a\u{8}b",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{9b}b",
        ] {
            assert!(message_body("b", bad).is_err(), "{bad:?}");
        }
        // Bidi marks are fine in a body: right-to-left text needs them.
        assert!(message_body("b", "abc \u{202E}def").is_ok());
        for bad in [
            "a\nb",
            "a\tb",
            "a\u{1b}b",
            "a\u{85}b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{2069}",
        ] {
            assert!(display_name("d", bad).is_err(), "{bad:?}");
            assert!(topic("t", Some(bad)).is_err(), "{bad:?}");
        }
        assert!(display_name("d", "Zoë \u{200F}ש").is_ok());
    }

    fn from_json(v: serde_json::Value) -> Result<(Page, i64), AppError> {
        crate::decode::from_value::<PageQuery>(v)?.page()
    }

    fn from_query(q: &str) -> Result<(Page, i64), AppError> {
        crate::decode::from_query::<PageQuery>(q)?.page()
    }

    #[test]
    fn pages_parse_from_payloads_and_query_strings_alike() {
        use serde_json::json;
        assert_eq!(from_json(json!({})).unwrap(), (Page::Before(None), 50));
        assert_eq!(from_query("").unwrap(), (Page::Before(None), 50));
        assert_eq!(
            from_json(json!({"before": 10, "limit": 5})).unwrap(),
            (Page::Before(Some(10)), 5)
        );
        assert_eq!(
            from_query("before=10&limit=5").unwrap(),
            (Page::Before(Some(10)), 5)
        );
        assert_eq!(
            from_query("after=0&limit=200").unwrap(),
            (Page::After(0), 200)
        );
        for bad in [
            json!({"before": 1, "after": 2}),
            json!({"before": -1}),
            json!({"before": "3"}),
            json!({"after": true}),
            json!({"limit": 0}),
            json!({"limit": 201}),
            json!({"limit": 2.5}),
            json!({"after": 1e30}),
        ] {
            assert!(from_json(bad.clone()).is_err(), "{bad}");
        }
        for bad in [
            "before=1&after=1",
            "before=-1",
            "before=1.5",
            "before=abc",
            "limit=0",
            "limit=201",
            "limit=ten",
            "after=99999999999999999999",
        ] {
            let err = from_query(bad).unwrap_err();
            assert!(
                matches!(&err, AppError::InvalidInput { fields: Some(f), .. } if !f.is_empty()),
                "{bad}: {err:?}"
            );
        }
    }
}
