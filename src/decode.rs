//! Client input into typed values: REST bodies, REST query strings and Socket.IO payloads all go
//! through `serde_path_to_error` here, so a bad field gets the same `invalid_input` with the
//! same `fields` detail whichever transport it came by.
//!
//! Every string a client sends (values, object keys, query parameters) is checked here for
//! U+0000 before it is turned into anything: Postgres's `text` refuses it, so it would otherwise
//! surface as a 500 from whichever query first met it, or fail a whole batch of messages. Being
//! in the decoders, the check covers every field, including ones added later.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{AppError, FieldErrors};

/// A JSON request body that must be an object.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            return Err(AppError::invalid(
                "the request body is empty; expected a JSON object",
            ))
        }
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
            return Err(AppError::invalid("the request body is not valid JSON"))
        }
        Some(_) => return Err(AppError::invalid("the request body must be a JSON object")),
    }
    // Through a `Value`, so the strings can be checked before `T` sees them; this also makes a
    // body's errors the same as a socket payload's, since both then decode from a `Value`.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| AppError::invalid("the request body is not valid JSON"))?;
    from_value(value)
}

/// A Socket.IO event's payload that must be an object.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, AppError> {
    if !value.is_object() {
        return Err(AppError::invalid("the payload must be an object"));
    }
    refuse_nul(&value, &mut String::new())?;
    serde_path_to_error::deserialize(value).map_err(json_error)
}

/// A payload that is either a bare string (`socket.emit('joinRoom', 'general')`) or an object;
/// `field` names what the bare string stands for, for the error when it is neither.
pub fn string_or_object<T>(value: Value, field: &str) -> Result<T, AppError>
where
    T: DeserializeOwned + From<String>,
{
    match value {
        Value::String(s) if s.contains('\0') => Err(nul_in(field)),
        Value::String(s) => Ok(T::from(s)),
        Value::Object(_) => from_value(value),
        Value::Null => Err(AppError::invalid_field(field, "is required")),
        _ => Err(AppError::invalid_field(
            field,
            "must be a string, or an object with this field",
        )),
    }
}

/// A URL query string (without the `?`).
pub fn from_query<T: DeserializeOwned>(query: &str) -> Result<T, AppError> {
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if value.contains('\0') || name.contains('\0') {
            return Err(nul_in(&name.replace('\0', "\\u0000")));
        }
    }
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let why = err.into_inner().to_string();
        field_error(&path, why)
    })
}

/// The field at `path` holds U+0000 (a NUL character).
fn nul_in(path: &str) -> AppError {
    let why = "must not contain NUL (U+0000) characters";
    AppError::InvalidInput {
        message: format!("{path} {why}"),
        fields: Some(FieldErrors::from([(path.to_owned(), why.to_owned())])),
    }
}

/// Refuses U+0000 in any string or key of `value`, naming the first place it is found with the
/// same path syntax as serde_path_to_error (`a.b`, `a[0]`). `path` is the place of `value`.
fn refuse_nul(value: &Value, path: &mut String) -> Result<(), AppError> {
    let place = |path: &str| {
        if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Err(nul_in(&place(path))),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                refuse_nul(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if key.contains('\0') {
                    // A key is named without its NUL, which would not print.
                    path.push_str(&key.replace('\0', "\\u0000"));
                    return Err(nul_in(path));
                }
                path.push_str(key);
                refuse_nul(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Turns serde's complaint into an `invalid_input` naming the field.
fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> AppError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::invalid("the request body is not valid JSON")
        }
        Category::Data => {
            let text = inner.to_string();
            // serde says "<what> at line L column C": the position is noise for a client.
            let what = text.split(" at line ").next().unwrap_or(&text).to_owned();
            field_error(&path, what)
        }
    }
}

/// `why` went wrong at `path` (`.` for the top level).
fn field_error(path: &str, why: String) -> AppError {
    if let Some(field) = why
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = if path == "." {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return AppError::InvalidInput {
            message: format!("{field} is required"),
            fields: Some(FieldErrors::from([(field, "is required".to_owned())])),
        };
    }
    if path == "." {
        return AppError::invalid(why);
    }
    AppError::InvalidInput {
        message: format!("{path}: {why}"),
        fields: Some(FieldErrors::from([(path.to_owned(), why)])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        username: String,
        password: String,
    }

    fn message_and_fields(err: AppError) -> (String, Option<FieldErrors>) {
        match err {
            AppError::InvalidInput { message, fields } => (message, fields),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn names_the_missing_field() {
        let (_, fields) =
            message_and_fields(from_slice::<Login>(br#"{"username":"bob"}"#).unwrap_err());
        assert_eq!(fields.unwrap()["password"], "is required");
    }

    #[test]
    fn names_the_field_of_the_wrong_type() {
        let (_, fields) = message_and_fields(
            from_slice::<Login>(br#"{"username":5,"password":"x"}"#).unwrap_err(),
        );
        assert!(fields.unwrap()["username"].contains("expected a string"));
    }

    #[test]
    fn bodies_and_payloads_get_the_same_field_detail() {
        let body = br#"{"username":5,"password":"x"}"#;
        let payload = json!({"username": 5, "password": "x"});
        let (_, rest) = message_and_fields(from_slice::<Login>(body).unwrap_err());
        let (_, socket) = message_and_fields(from_value::<Login>(payload).unwrap_err());
        assert_eq!(rest, socket);
        let (_, rest) =
            message_and_fields(from_slice::<Login>(br#"{"password":"x"}"#).unwrap_err());
        let (_, socket) =
            message_and_fields(from_value::<Login>(json!({"password": "x"})).unwrap_err());
        assert_eq!(rest, socket);
    }

    #[test]
    fn refuses_what_is_not_an_object() {
        for body in [
            &b"[\"bob\", \"pw\"]"[..],
            b"\"x\"",
            b"",
            b"{",
            b"{} trailing",
            b"nul",
        ] {
            let (message, _) = message_and_fields(from_slice::<Login>(body).unwrap_err());
            assert!(!message.is_empty());
        }
        for payload in [json!(null), json!("x"), json!([1]), json!(3)] {
            assert!(from_value::<Login>(payload).is_err());
        }
    }

    #[test]
    fn nul_is_refused_in_every_string_naming_where() {
        let (_, fields) = message_and_fields(
            from_slice::<Login>(br#"{"username":"bob","password":"a\u0000b"}"#).unwrap_err(),
        );
        assert!(fields.unwrap().contains_key("password"));
        // Also in fields the target type ignores, nested values and keys.
        for (payload, at) in [
            (
                json!({"username": "bob", "password": "x", "extra": "\0"}),
                "extra",
            ),
            (
                json!({"username": "bob", "password": "x", "a": {"b": ["", "\0"]}}),
                "a.b[1]",
            ),
            (
                json!({"username": "bob", "password": "x", "k\0": 1}),
                "k\\u0000",
            ),
        ] {
            let (_, fields) = message_and_fields(from_value::<Login>(payload).unwrap_err());
            assert!(fields.unwrap().contains_key(at), "{at}");
        }
        let (_, fields) =
            message_and_fields(string_or_object::<Name>(json!("gen\0eral"), "room").unwrap_err());
        assert!(fields.unwrap().contains_key("room"));

        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Q {
            q: Option<String>,
        }
        let (_, fields) = message_and_fields(from_query::<Q>("q=a%00b").unwrap_err());
        assert!(fields.unwrap().contains_key("q"));
        let (_, fields) = message_and_fields(from_query::<Q>("other=%00").unwrap_err());
        assert!(fields.unwrap().contains_key("other"));
        // A backslash and a `u0000` are only text.
        assert_eq!(
            from_query::<Q>("q=%5Cu0000").unwrap().q.as_deref(),
            Some("\\u0000")
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Name {
        room: String,
    }

    impl From<String> for Name {
        fn from(room: String) -> Self {
            Name { room }
        }
    }

    #[test]
    fn query_strings_name_the_parameter() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Q {
            limit: Option<u8>,
        }
        let (_, fields) = message_and_fields(from_query::<Q>("limit=ten").unwrap_err());
        assert!(fields.unwrap().contains_key("limit"));
        assert_eq!(from_query::<Q>("limit=7").unwrap().limit, Some(7));
        assert_eq!(from_query::<Q>("").unwrap().limit, None);
    }
}
