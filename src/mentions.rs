//! `@username` mentions: which names a body holds, and which users they name.

use uuid::Uuid;

use crate::{
    app::AppState,
    error::AppResult,
    store::{self, users::UserRef},
    workspaces::WorkspaceId,
};

/// A username's own characters.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Each `@name` of a body, as the names to try for it, lower-cased: the whole run of username
/// characters after the `@`, then (if different) the run without its trailing `.`, `-` and `_`
/// ("@bob." at the end of a sentence names bob). An `@` counts only at a word boundary: at the
/// start, or after a character that cannot be part of a username (so "ann@example.com" names
/// nobody).
pub fn names(body: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in body.char_indices() {
        if c == '@' && !previous.is_some_and(|p| is_name_char(p) || p == '@') {
            let rest = &body[at + 1..];
            let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            let run = rest[..end].to_ascii_lowercase();
            let trimmed = run.trim_end_matches(['.', '-', '_']).to_owned();
            if !trimmed.is_empty() {
                let shorter = (trimmed != run).then_some(trimmed);
                found.push((run, shorter));
            }
        }
        previous = Some(c);
    }
    found
}

/// The users a body mentions who may read the room: each `@name` resolved once, the whole run
/// first and then the trimmed one, unknown names left as plain text. Sorted by username, each
/// user once. No query when the body has no `@name`.
pub async fn resolve(
    state: &AppState,
    ws: WorkspaceId,
    room_id: Uuid,
    body: &str,
) -> AppResult<Vec<UserRef>> {
    let names = names(body);
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut asked: Vec<String> = names
        .iter()
        .flat_map(|(run, shorter)| std::iter::once(run.clone()).chain(shorter.clone()))
        .filter(|n| crate::validate::is_username(n))
        .collect();
    asked.sort();
    asked.dedup();
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    let known = store::mentions::readers_named(&state.db, ws, room_id, &asked).await?;
    let find = |name: &str| known.iter().find(|(key, _)| key == name).map(|(_, u)| u);
    let mut users: Vec<UserRef> = names
        .iter()
        .filter_map(|(run, shorter)| find(run).or_else(|| shorter.as_deref().and_then(find)))
        .cloned()
        .collect();
    users.sort_by_key(|u| u.username.to_lowercase());
    users.dedup_by_key(|u| u.id);
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::names;

    fn runs(body: &str) -> Vec<(String, Option<String>)> {
        names(body)
    }

    #[test]
    fn an_at_sign_counts_at_a_word_boundary_only() {
        assert_eq!(runs("@bob hi"), [("bob".into(), None)]);
        assert_eq!(runs("hi (@Bob)"), [("bob".into(), None)]);
        assert!(runs("mail ann@example.com").is_empty());
        assert!(runs("@@bob").is_empty());
        assert!(runs("@ alone").is_empty());
    }

    #[test]
    fn trailing_punctuation_is_tried_off_when_the_whole_run_names_nobody() {
        assert_eq!(runs("thanks @bob."), [("bob.".into(), Some("bob".into()))]);
        assert_eq!(runs("@bob.smith!"), [("bob.smith".into(), None)]);
        assert_eq!(runs("@a_-"), [("a_-".into(), Some("a".into()))]);
    }
}
