//! Automatic persisted queries, Apollo's APQ protocol: a client sends
//! `extensions.persistedQuery = { version: 1, sha256Hash }` without the query text; if the
//! server knows the hash it runs the query it names, else it answers
//! `PERSISTED_QUERY_NOT_FOUND` and the client sends the text and the hash together, which
//! registers it. Short GET URLs that a CDN or browser can cache follow.
//!
//! The store is a lookup from hash to text, nothing more: a document it names is parsed,
//! validated, cost-checked and token-checked like any other, so no check can be skipped by
//! persisting a query. Anonymous clients cannot grow it: a text is registered only after it
//! ran without a parse or validation error, texts over [`MAX_TEXT_BYTES`] are never kept, and
//! all kept texts stay under [`BUDGET_BYTES`], the oldest leaving first.

use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::Request;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::budget::{Budgeted, Key};

/// Texts longer than this are run but not kept.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// All kept texts together.
pub const BUDGET_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct PersistedQueries(Arc<Mutex<Budgeted<Arc<str>>>>);

impl Default for PersistedQueries {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Budgeted::new(BUDGET_BYTES))))
    }
}

/// What a request's `persistedQuery` extension asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Persisted {
    /// No extension: an ordinary request.
    None,
    /// The text was found and put in the request.
    Found,
    /// Text and hash together: register the text once it has run cleanly.
    Register(Key),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PersistedError {
    #[error("PersistedQueryNotFound")]
    NotFound,
    #[error("persistedQuery: {0}")]
    Invalid(&'static str),
}

#[derive(Deserialize)]
struct Extension {
    version: i64,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

impl PersistedQueries {
    fn lock(&self) -> MutexGuard<'_, Budgeted<Arc<str>>> {
        self.0
            .lock()
            .expect("persisted-query store lock is never poisoned")
    }

    /// Takes the request's `persistedQuery` extension: fills in the text for a known hash,
    /// checks a text against its hash.
    pub fn resolve(&self, request: &mut Request) -> Result<Persisted, PersistedError> {
        let Some(value) = request.extensions.remove("persistedQuery") else {
            return Ok(Persisted::None);
        };
        let extension: Extension = value
            .into_json()
            .ok()
            .and_then(|json| serde_json::from_value(json).ok())
            .ok_or(PersistedError::Invalid(
                "expected { version: 1, sha256Hash }",
            ))?;
        if extension.version != 1 {
            return Err(PersistedError::Invalid("only version 1 is supported"));
        }
        let key = parse_hash(&extension.sha256_hash).ok_or(PersistedError::Invalid(
            "sha256Hash: expected 64 hexadecimal digits",
        ))?;
        if request.query.is_empty() {
            let text = self.lock().get(&key).ok_or(PersistedError::NotFound)?;
            request.query = text.to_string();
            return Ok(Persisted::Found);
        }
        let actual: Key = Sha256::digest(request.query.as_bytes()).into();
        if actual != key {
            return Err(PersistedError::Invalid(
                "sha256Hash does not match the query",
            ));
        }
        Ok(Persisted::Register(key))
    }

    /// Keeps `text` under `key` (call only after it ran without parse or validation errors).
    pub fn register(&self, key: Key, text: &str) {
        if text.len() <= MAX_TEXT_BYTES {
            self.lock().insert(key, text.len(), Arc::from(text));
        }
    }

    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        self.lock().usage()
    }
}

fn parse_hash(hex: &str) -> Option<Key> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0_u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use async_graphql::Value;

    use super::*;

    fn hash(text: &str) -> String {
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    fn request(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        let extension = serde_json::json!({ "version": 1, "sha256Hash": hash });
        request.extensions.insert(
            "persistedQuery".into(),
            Value::from_json(extension).expect("json"),
        );
        request
    }

    #[test]
    fn an_unknown_hash_is_not_found_and_a_registered_one_is() {
        let store = PersistedQueries::default();
        let text = "{ __typename }";
        let mut unknown = request("", &hash(text));
        assert_eq!(store.resolve(&mut unknown), Err(PersistedError::NotFound));

        let mut registering = request(text, &hash(text));
        let Ok(Persisted::Register(key)) = store.resolve(&mut registering) else {
            panic!("text and hash register");
        };
        store.register(key, text);

        let mut known = request("", &hash(text));
        assert_eq!(store.resolve(&mut known), Ok(Persisted::Found));
        assert_eq!(known.query, text);
    }

    #[test]
    fn a_text_that_does_not_match_its_hash_is_refused() {
        let store = PersistedQueries::default();
        let mut lying = request("{ __typename }", &hash("{ other }"));
        assert!(matches!(
            store.resolve(&mut lying),
            Err(PersistedError::Invalid(_))
        ));
        let mut malformed = request("", "not-a-hash");
        assert!(matches!(
            store.resolve(&mut malformed),
            Err(PersistedError::Invalid(_))
        ));
    }

    #[test]
    fn registrations_never_grow_it_past_its_budget() {
        let store = PersistedQueries::default();
        for n in 0..1_000 {
            let text = format!("{{ book(id: \"{n}\") {{ {} }} }}", "id ".repeat(2_000));
            let key = parse_hash(&hash(&text)).expect("a hash");
            store.register(key, &text);
            assert!(store.usage().1 <= BUDGET_BYTES);
        }
        let large = "x".repeat(MAX_TEXT_BYTES + 1);
        store.register([7; 32], &large);
        assert!(store.usage().1 <= BUDGET_BYTES);
    }
}
