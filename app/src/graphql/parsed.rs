//! Parsed documents, kept per query text, and validation results, kept per document, operation
//! and variables: clients send the same few queries over and over, and parsing and validating
//! are fixed costs per request that the answer does not depend on.
//!
//! What keeps it safe:
//! * It only saves parsing and the library's validation, and only for inputs that were parsed
//!   and validated before: a validation result is a function of the document, the operation
//!   name and the variables (the schema is fixed), all three in its key. The alias limit and
//!   the token check at execution run on every request ([`super::checks`]), whether the
//!   document came from here or from the parser.
//! * Anonymous clients cannot fill it with junk or grow it: a document is kept only after it
//!   passed validation, only if its text is small (client queries are; a large document is
//!   parsed each time), and all kept texts together stay under a byte budget, the oldest
//!   leaving first; validation results are kept only for accepted documents, at most
//!   [`MAX_KEPT_VALIDATIONS`]. Keys are SHA-256 digests, so a key costs 32 bytes whatever the
//!   text's size.

use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::{parser::types::ExecutableDocument, ValidationResult, Variables};
use sha2::{Digest, Sha256};

use super::budget::{Budgeted, Key};

/// Only documents whose text is at most this long are kept.
pub const MAX_KEPT_TEXT_BYTES: usize = 4 * 1024;
/// The text of every kept document together stays under this (a parsed document takes about
/// ten times its text, so the memo holds a few megabytes at most).
pub const BUDGET_TEXT_BYTES: usize = 256 * 1024;

/// Validation results kept at most (a key and a result are under 100 bytes: well under 1 MiB).
pub const MAX_KEPT_VALIDATIONS: usize = 8 * 1024;

/// The memo: documents by the digest of their text, and validation results by the digest of
/// what validation reads (see [`validation_key`]).
#[derive(Clone)]
pub struct ParsedQueries(Arc<Mutex<Memo>>);

struct Memo {
    documents: Budgeted<ExecutableDocument>,
    validations: Budgeted<ValidationResult>,
}

impl Default for ParsedQueries {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Memo {
            documents: Budgeted::new(BUDGET_TEXT_BYTES),
            // Each counts as one "byte": the budget is a count.
            validations: Budgeted::new(MAX_KEPT_VALIDATIONS),
        })))
    }
}

impl ParsedQueries {
    fn lock(&self) -> MutexGuard<'_, Memo> {
        self.0
            .lock()
            .expect("parsed-query memo lock is never poisoned")
    }

    pub fn document(&self, key: &Key) -> Option<ExecutableDocument> {
        self.lock().documents.get(key)
    }

    pub fn validation(&self, key: &Key) -> Option<ValidationResult> {
        self.lock().validations.get(key)
    }

    /// Keeps what a request parsed and validated, once validation accepted it.
    pub fn keep(&self, accepted: Accepted) {
        let mut memo = self.lock();
        if let Some((key, text_bytes, document)) = accepted.document {
            memo.documents.insert(key, text_bytes, document);
        }
        if let Some(key) = accepted.validation_key {
            memo.validations.insert(key, 1, accepted.validation);
        }
    }

    /// How many documents are kept, and their texts' total size.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        self.lock().documents.usage()
    }

    /// How many validation results are kept.
    #[cfg(test)]
    pub fn validations_kept(&self) -> usize {
        self.lock().validations.usage().0
    }
}

/// What one request adds to the memo once validation has accepted its document.
pub struct Accepted {
    /// A freshly parsed document (none when it came from the memo or was too large).
    pub document: Option<(Key, usize, ExecutableDocument)>,
    pub validation_key: Option<Key>,
    pub validation: ValidationResult,
}

/// The key of a document's text, or none for a text too large to keep.
pub fn document_key(query: &str) -> Option<Key> {
    (query.len() <= MAX_KEPT_TEXT_BYTES).then(|| Sha256::digest(query.as_bytes()).into())
}

/// The key of a validation: validation is a function of the schema (fixed for the process),
/// the document, the operation's name and the variables' values (argument types are checked
/// against them, and list costs grow with them), so all three are in the key. None when the
/// text is too large to keep or the variables do not encode.
pub fn validation_key(
    document: &Key,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<Key> {
    let variables = serde_json::to_vec(variables).ok()?;
    if variables.len() > MAX_KEPT_TEXT_BYTES {
        return None;
    }
    let mut digest = Sha256::new();
    digest.update(document);
    match operation_name {
        // Length-prefixed, so that no name and variables run into each other.
        Some(name) => {
            digest.update((name.len() as u64).to_le_bytes());
            digest.update(name.as_bytes());
        }
        None => digest.update(u64::MAX.to_le_bytes()),
    }
    digest.update(&variables);
    Some(digest.finalize().into())
}
