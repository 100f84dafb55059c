//! The error codes as a contract: README's table lists exactly the codes the API can answer
//! with, and each row names the tests that raise its code. The code with no other home is here.

use oponn::graphql::error::Code;
use serde_json::json;

use crate::helpers::{error_code, TestApp};

/// Every code of `Code` is a row of README's error table, and every row is a code.
#[test]
fn the_readme_table_lists_exactly_the_codes_the_api_answers_with() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("### Error codes")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has an Error codes section");
    let mut documented: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    documented.sort();
    let mut codes: Vec<&str> = Code::ALL.iter().map(|code| code.as_str()).collect();
    codes.sort();
    assert_eq!(documented, codes);

    // Each row's last column names tests as `module::function`: they exist.
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let tests = row
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .expect("a test column");
        for test in tests.split(',').map(|t| t.trim().trim_matches('`')) {
            let (module, function) = test.split_once("::").expect("module::function");
            let path = format!("{}/tests/api/{module}.rs", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{path}"));
            assert!(
                source.contains(&format!("fn {function}(")),
                "README names {test}, which {path} does not define"
            );
        }
    }
}

/// A stored record that does not parse is a bug, not the client's: `INTERNAL_SERVER_ERROR`
/// with a fixed message, its cause in the log only.
#[tokio::test]
async fn a_record_that_does_not_parse_is_an_internal_error_without_its_cause() {
    let app = TestApp::spawn().await;
    let id = mongodb::bson::oid::ObjectId::new();
    app.mongodb()
        .await
        .collection::<mongodb::bson::Document>("books")
        .insert_one(mongodb::bson::doc! { "_id": id, "title": 42, "version": 1_i64 })
        .await
        .expect("inserted");
    let body = app
        .graphql(
            "query($id: ID!) { book(id: $id) { title } }",
            json!({ "id": id.to_hex() }),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    assert_eq!(body["errors"][0]["message"], "internal error", "{body}");
    assert!(body["data"]["book"].is_null(), "{body}");
}
