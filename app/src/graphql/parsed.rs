//! Parsed documents, kept per query text: clients send the same few queries over and over, and
//! parsing is a fixed cost per request that the answer does not depend on.
//!
//! What keeps it safe:
//! * It only saves parsing. It is the innermost extension, so every other extension's hooks,
//!   validation (depth, complexity, aliases) and the token check at execution run on every
//!   request, whether the document came from here or from the parser.
//! * Anonymous clients cannot fill it with junk or grow it: a document is kept only after it
//!   passed validation, only if its text is small (client queries are; a large document is
//!   parsed each time), and all kept texts together stay under a byte budget, the oldest
//!   leaving first. Keys are SHA-256 digests of the text, so a key costs 32 bytes whatever the
//!   text's size.

use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::{
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextValidation},
    parser::types::ExecutableDocument,
    ServerError, ServerResult, ValidationResult, Variables,
};
use sha2::{Digest, Sha256};

use super::budget::{Budgeted, Key};

/// Only documents whose text is at most this long are kept.
pub const MAX_KEPT_TEXT_BYTES: usize = 4 * 1024;
/// The text of every kept document together stays under this (a parsed document takes about
/// ten times its text, so the memo holds a few megabytes at most).
pub const BUDGET_TEXT_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct ParsedQueries(Arc<Mutex<Budgeted<ExecutableDocument>>>);

impl Default for ParsedQueries {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Budgeted::new(BUDGET_TEXT_BYTES))))
    }
}

impl ParsedQueries {
    fn lock(&self) -> MutexGuard<'_, Budgeted<ExecutableDocument>> {
        self.0
            .lock()
            .expect("parsed-query memo lock is never poisoned")
    }

    /// How many documents are kept, and their texts' total size.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        self.lock().usage()
    }
}

impl ExtensionFactory for ParsedQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ParseOnce {
            memo: self.clone(),
            parsed: Mutex::new(None),
        })
    }
}

/// One request's view of the memo: what it parsed waits here until validation accepts it.
struct ParseOnce {
    memo: ParsedQueries,
    parsed: Mutex<Option<(Key, usize, ExecutableDocument)>>,
}

#[async_trait::async_trait]
impl Extension for ParseOnce {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > MAX_KEPT_TEXT_BYTES {
            return next.run(ctx, query, variables).await;
        }
        let key: Key = Sha256::digest(query.as_bytes()).into();
        if let Some(document) = self.memo.lock().get(&key) {
            return Ok(document);
        }
        let document = next.run(ctx, query, variables).await?;
        *self.pending() = Some((key, query.len(), document.clone()));
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if result.is_ok() {
            if let Some((key, text_bytes, document)) = self.pending().take() {
                self.memo.lock().insert(key, text_bytes, document);
            }
        }
        result
    }
}

impl ParseOnce {
    fn pending(&self) -> MutexGuard<'_, Option<(Key, usize, ExecutableDocument)>> {
        self.parsed
            .lock()
            .expect("a request's parse slot is never poisoned")
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;

    struct Query;

    #[Object]
    impl Query {
        async fn echo(&self, text: String) -> String {
            text
        }
    }

    fn schema(memo: &ParsedQueries) -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .extension(memo.clone())
            .finish()
    }

    #[tokio::test]
    async fn documents_that_fail_validation_are_not_kept() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        for n in 0..50 {
            let response = schema.execute(format!("{{ unknown{n} }}")).await;
            assert!(response.is_err());
        }
        assert_eq!(memo.usage(), (0, 0));
        assert!(schema.execute("{ echo(text: \"a\") }").await.is_ok());
        assert_eq!(memo.usage().0, 1);
    }

    #[tokio::test]
    async fn distinct_documents_never_grow_it_past_its_budget() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        let padding = "x".repeat(1_000);
        for n in 0..2_000 {
            let response = schema
                .execute(format!("{{ echo(text: \"{padding}{n}\") }}"))
                .await;
            assert!(response.is_ok(), "{:?}", response.errors);
            assert!(memo.usage().1 <= BUDGET_TEXT_BYTES);
        }
        let (documents, bytes) = memo.usage();
        assert!(
            documents > 100,
            "it still keeps what fits: {documents} documents"
        );
        assert!(bytes <= BUDGET_TEXT_BYTES, "{bytes} bytes");
    }

    #[tokio::test]
    async fn large_documents_are_parsed_each_time_and_not_kept() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        let large = format!("{{ echo(text: \"{}\") }}", "y".repeat(MAX_KEPT_TEXT_BYTES));
        assert!(schema.execute(large.as_str()).await.is_ok());
        assert!(schema.execute(large.as_str()).await.is_ok());
        assert_eq!(memo.usage(), (0, 0));
    }
}
