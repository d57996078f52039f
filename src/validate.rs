//! The contract's bounds on names and texts, in one place for REST and sockets alike.

use crate::error::AppError;

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

/// A display name, trimmed; 1-64 characters.
pub fn display_name(field: &str, value: &str) -> Result<String, AppError> {
    let trimmed = value.trim();
    if !(1..=64).contains(&char_len(trimmed)) {
        return Err(AppError::invalid_field(field, "must be 1-64 characters"));
    }
    Ok(trimmed.to_owned())
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
    }
}
