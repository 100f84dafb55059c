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
//!
//! **Safelist mode** (`OPONN_SAFELIST`, for production): the documents a deployment's clients
//! were built with (GraphQL Code Generator's persisted-documents manifest, `{ hash: text }`)
//! are the only ones that run, by hash or by text; nothing registers at run time.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
};

use async_graphql::Request;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::budget::{Budgeted, Key};

/// Texts longer than this are run but not kept.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// All kept texts together.
pub const BUDGET_BYTES: usize = 2 * 1024 * 1024;

#[derive(Clone)]
pub struct PersistedQueries {
    registered: Arc<Mutex<Budgeted<Arc<str>>>>,
    /// In safelist mode, the only documents that run.
    safelist: Option<Arc<HashMap<Key, Arc<str>>>>,
}

impl Default for PersistedQueries {
    fn default() -> Self {
        Self {
            registered: Arc::new(Mutex::new(Budgeted::new(BUDGET_BYTES))),
            safelist: None,
        }
    }
}

/// Why a safelist file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SafelistError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: expected a JSON object of {{ \"<sha256 of the text>\": \"<document>\" }}: {source}")]
    Format {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {hash:?} is not the SHA-256 of its document")]
    Hash { path: String, hash: String },
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
    #[error("this server runs only the documents of its safelist (OPONN_SAFELIST)")]
    NotInSafelist,
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
    /// Safelist mode: only the documents of `path` run. Every hash must be its document's.
    pub fn safelist(path: &Path) -> Result<Self, SafelistError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SafelistError::Read {
            path: name.clone(),
            source,
        })?;
        let documents: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|source| SafelistError::Format {
                path: name.clone(),
                source,
            })?;
        let mut safelist = HashMap::with_capacity(documents.len());
        for (hash, document) in documents {
            let key: Key = Sha256::digest(document.as_bytes()).into();
            if parse_hash(&hash.to_ascii_lowercase()) != Some(key) {
                return Err(SafelistError::Hash { path: name, hash });
            }
            safelist.insert(key, Arc::from(document));
        }
        Ok(Self {
            safelist: Some(Arc::new(safelist)),
            ..Self::default()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Budgeted<Arc<str>>> {
        self.registered
            .lock()
            .expect("persisted-query store lock is never poisoned")
    }

    /// Takes the request's `persistedQuery` extension: fills in the text for a known hash,
    /// checks a text against its hash. In safelist mode, refuses any other document.
    pub fn resolve(&self, request: &mut Request) -> Result<Persisted, PersistedError> {
        let resolved = self.resolve_extension(request)?;
        let Some(safelist) = &self.safelist else {
            return Ok(resolved);
        };
        let key: Key = Sha256::digest(request.query.as_bytes()).into();
        match safelist.get(&key) {
            Some(_) => Ok(Persisted::Found),
            None => Err(PersistedError::NotInSafelist),
        }
    }

    fn resolve_extension(&self, request: &mut Request) -> Result<Persisted, PersistedError> {
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
            let text = match &self.safelist {
                Some(safelist) => safelist.get(&key).cloned(),
                None => self.lock().get(&key),
            };
            request.query = text.ok_or(PersistedError::NotFound)?.to_string();
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

    fn safelist_of(documents: &[&str]) -> (PersistedQueries, std::path::PathBuf) {
        let manifest: HashMap<String, &str> = documents.iter().map(|d| (hash(d), *d)).collect();
        let path = std::env::temp_dir().join(format!("safelist-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, serde_json::to_string(&manifest).expect("json")).expect("written");
        (
            PersistedQueries::safelist(&path).expect("a valid safelist"),
            path,
        )
    }

    #[test]
    fn a_safelist_runs_its_documents_by_hash_or_text_and_nothing_else() {
        let listed = "{ __typename }";
        let (store, path) = safelist_of(&[listed]);

        let mut by_hash = request("", &hash(listed));
        assert_eq!(store.resolve(&mut by_hash), Ok(Persisted::Found));
        assert_eq!(by_hash.query, listed);
        let mut by_text = Request::new(listed);
        assert_eq!(store.resolve(&mut by_text), Ok(Persisted::Found));

        let other = "{ book(id: \"1\") { id } }";
        let mut unlisted_text = Request::new(other);
        assert_eq!(
            store.resolve(&mut unlisted_text),
            Err(PersistedError::NotInSafelist)
        );
        // An APQ registration attempt registers nothing: the hash stays unknown.
        let mut registering = request(other, &hash(other));
        assert_eq!(
            store.resolve(&mut registering),
            Err(PersistedError::NotInSafelist)
        );
        let mut unknown_hash = request("", &hash(other));
        assert_eq!(
            store.resolve(&mut unknown_hash),
            Err(PersistedError::NotFound)
        );
        std::fs::remove_file(path).expect("removed");
    }

    #[test]
    fn a_safelist_whose_hash_is_not_its_documents_is_refused() {
        let path = std::env::temp_dir().join(format!("safelist-{}.json", uuid::Uuid::new_v4()));
        let manifest = serde_json::json!({ hash("{ a }"): "{ b }" });
        std::fs::write(&path, manifest.to_string()).expect("written");
        assert!(matches!(
            PersistedQueries::safelist(&path),
            Err(SafelistError::Hash { .. })
        ));
        std::fs::write(&path, "[]").expect("written");
        assert!(matches!(
            PersistedQueries::safelist(&path),
            Err(SafelistError::Format { .. })
        ));
        std::fs::remove_file(path).expect("removed");
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
