//! The one extension every request runs through, wiring the request-level rules into
//! async-graphql's hooks:
//!
//! * parse: the document from the memo or the parser ([`super::parsed`]); a parse failure gets
//!   its code ([`super::error`]); the alias limit ([`super::cost`]) on every document, however
//!   it was obtained;
//! * validation: the memo's result for the same document, operation and variables, else the
//!   library's rules and limits, whose refusals get their codes; what was accepted is kept;
//! * execution: codes for the errors that have none, at most a bounded number of them;
//! * every field, immediately before its resolver runs: the token check for mutations
//!   ([`super::auth`]).
//!
//! One extension rather than one per rule: async-graphql runs every extension's `resolve` hook
//! around every field of every response, so each extension costs a boxed future per field.

use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::{
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
        NextPrepareRequest, NextResolve, NextValidation, ResolveInfo,
    },
    parser::types::ExecutableDocument,
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};

use super::{
    auth, cost,
    error::{self, QueryLimits},
    parsed::{self, Accepted, ParsedQueries},
};
use crate::graphql::budget::Key;

/// The rules' settings and the shared memo; makes one [`RequestChecks`] per request.
#[derive(Clone)]
pub struct Checks {
    pub limits: QueryLimits,
    pub max_aliases: usize,
    pub memo: ParsedQueries,
}

impl ExtensionFactory for Checks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestChecks {
            checks: self.clone(),
            state: Mutex::default(),
        })
    }
}

/// One request's pass through the rules.
struct RequestChecks {
    checks: Checks,
    state: Mutex<State>,
}

/// What the request learnt before validation, for validation to use and keep.
#[derive(Default)]
struct State {
    /// The digest of the request's text, when small enough to keep.
    document_key: Option<Key>,
    /// The digest of what validation reads, when the text is small enough to keep.
    validation_key: Option<Key>,
    /// A document the parser produced, kept once validation accepts it.
    parsed: Option<(Key, usize, ExecutableDocument)>,
}

impl RequestChecks {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("a request's check state is never poisoned")
    }
}

#[async_trait::async_trait]
impl Extension for RequestChecks {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let document_key = parsed::document_key(&request.query);
        let validation_key = document_key.and_then(|key| {
            parsed::validation_key(&key, request.operation_name.as_deref(), &request.variables)
        });
        *self.state() = State {
            document_key,
            validation_key,
            parsed: None,
        };
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let key = self.state().document_key;
        let remembered = key.and_then(|key| self.checks.memo.document(&key));
        let document = match remembered {
            Some(document) => document,
            None => {
                let document = next
                    .run(ctx, query, variables)
                    .await
                    .map_err(error::parse_failed)?;
                if let Some(key) = key {
                    self.state().parsed = Some((key, query.len(), document.clone()));
                }
                document
            }
        };
        cost::check_aliases(&document, self.checks.max_aliases)?;
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let validation_key = self.state().validation_key;
        if let Some(result) = validation_key.and_then(|key| self.checks.memo.validation(&key)) {
            return Ok(result);
        }
        let validation = next
            .run(ctx)
            .await
            .map_err(|errors| error::validation_failed(errors, self.checks.limits))?;
        let document = self.state().parsed.take();
        self.checks.memo.keep(Accepted {
            document,
            validation_key,
            validation,
        });
        Ok(validation)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        error::execution_codes(next.run(ctx, operation_name).await)
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        auth::check_field(ctx, &info)?;
        next.run(ctx, info).await
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;
    use crate::graphql::parsed::{BUDGET_TEXT_BYTES, MAX_KEPT_TEXT_BYTES, MAX_KEPT_VALIDATIONS};

    struct Query;

    #[Object]
    impl Query {
        async fn echo(&self, text: String) -> String {
            text
        }

        #[graphql(complexity = "ids.len()")]
        async fn many(&self, ids: Vec<i32>) -> Vec<i32> {
            ids
        }
    }

    fn schema(memo: &ParsedQueries) -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::build(Query, EmptyMutation, EmptySubscription)
            .limit_complexity(50)
            .extension(Checks {
                limits: QueryLimits {
                    max_depth: 10,
                    max_complexity: 50,
                },
                max_aliases: 5,
                memo: memo.clone(),
            })
            .finish()
    }

    fn code(response: &Response) -> Option<String> {
        let extensions = response.errors.first()?.extensions.as_ref()?;
        match extensions.get("code")? {
            Value::String(code) => Some(code.clone()),
            _ => None,
        }
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
        assert_eq!(memo.validations_kept(), 0);
        assert!(schema.execute("{ echo(text: \"a\") }").await.is_ok());
        assert_eq!(memo.usage().0, 1);
        assert_eq!(memo.validations_kept(), 1);
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
    async fn distinct_variables_never_grow_the_validations_past_their_bound() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        let query = "query Echo($text: String!) { echo(text: $text) }";
        for n in 0..(MAX_KEPT_VALIDATIONS + 500) {
            let variables = Variables::from_json(serde_json::json!({ "text": n.to_string() }));
            let response = schema
                .execute(Request::new(query).variables(variables))
                .await;
            assert!(response.is_ok(), "{:?}", response.errors);
        }
        assert_eq!(memo.validations_kept(), MAX_KEPT_VALIDATIONS);
        assert_eq!(memo.usage().0, 1, "one document for all of them");
    }

    #[tokio::test]
    async fn large_documents_are_parsed_each_time_and_not_kept() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        let large = format!("{{ echo(text: \"{}\") }}", "y".repeat(MAX_KEPT_TEXT_BYTES));
        assert!(schema.execute(large.as_str()).await.is_ok());
        assert!(schema.execute(large.as_str()).await.is_ok());
        assert_eq!(memo.usage(), (0, 0));
        assert_eq!(memo.validations_kept(), 0);
    }

    /// Warm state: the same document, accepted once, is validated again with other variables.
    #[tokio::test]
    async fn a_remembered_document_is_still_refused_for_variables_that_break_a_limit() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        let query = "query Many($ids: [Int!]!) { many(ids: $ids) }";
        let few = Variables::from_json(serde_json::json!({ "ids": [1, 2, 3] }));
        let too_many =
            Variables::from_json(serde_json::json!({ "ids": (0..100).collect::<Vec<_>>() }));
        for _ in 0..2 {
            let response = schema
                .execute(Request::new(query).variables(few.clone()))
                .await;
            assert!(response.is_ok(), "{:?}", response.errors);
        }
        let response = schema
            .execute(Request::new(query).variables(too_many))
            .await;
        assert_eq!(
            code(&response).as_deref(),
            Some("GRAPHQL_VALIDATION_FAILED")
        );
        let wrong_type = Variables::from_json(serde_json::json!({ "ids": ["a"] }));
        let response = schema
            .execute(Request::new(query).variables(wrong_type))
            .await;
        assert_eq!(
            code(&response).as_deref(),
            Some("GRAPHQL_VALIDATION_FAILED"),
            "a value of the wrong type is refused by validation, not left to execution: {response:?}"
        );
    }

    /// Warm state: the alias limit holds for a document the memo hands out.
    #[tokio::test]
    async fn the_alias_limit_holds_for_a_remembered_document() {
        let memo = ParsedQueries::default();
        let schema = schema(&memo);
        let query = "{ a: echo(text: \"1\") b: echo(text: \"2\") c: echo(text: \"3\") d: echo(text: \"4\") e: echo(text: \"5\") f: echo(text: \"6\") }";
        for _ in 0..2 {
            let response = schema.execute(query).await;
            assert_eq!(
                code(&response).as_deref(),
                Some("GRAPHQL_VALIDATION_FAILED")
            );
        }
        assert_eq!(memo.usage(), (0, 0));
    }
}
