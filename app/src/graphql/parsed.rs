//! Parsed documents, kept per query text: clients send the same few queries over and over, and
//! parsing is a fixed cost per request that the answer does not depend on. Validation still runs
//! on every request (it depends on the variables).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::ExecutableDocument,
    ServerResult, Variables,
};

/// How many distinct query texts are kept; when full, the memo starts over.
const CAPACITY: usize = 1_024;

#[derive(Default, Clone)]
pub struct ParsedQueries(Arc<Mutex<HashMap<String, ExecutableDocument>>>);

impl ExtensionFactory for ParsedQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Extension for ParsedQueries {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self.lock().get(query) {
            return Ok(document.clone());
        }
        let document = next.run(ctx, query, variables).await?;
        let mut memo = self.lock();
        if memo.len() >= CAPACITY {
            memo.clear();
        }
        memo.insert(query.to_owned(), document.clone());
        Ok(document)
    }
}

impl ParsedQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutableDocument>> {
        self.0
            .lock()
            .expect("parsed-query memo lock is never poisoned")
    }
}
