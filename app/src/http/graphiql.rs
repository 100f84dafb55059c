//! GraphiQL, for people exploring the API from a browser (`OPONN_GRAPHIQL`, off in the
//! production templates).
//!
//! Users paste bearer tokens into this page, so it loads nothing it cannot vouch for: React
//! and GraphiQL at pinned versions, each with a subresource-integrity hash (computed from the
//! packages' npm tarballs, which unpkg serves byte for byte), and a content security policy
//! that allows exactly those files, the one inline script (by its hash) and requests to this
//! origin. Upgrading a version means replacing its URL and hash together.

use std::sync::LazyLock;

use axum::{
    http::{header, HeaderValue},
    response::{Html, IntoResponse, Response},
};
use base64::{engine::general_purpose::STANDARD, Engine};
use sha2::{Digest, Sha256};

const REACT: (&str, &str) = (
    "https://unpkg.com/react@18.3.1/umd/react.production.min.js",
    "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z",
);
const REACT_DOM: (&str, &str) = (
    "https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js",
    "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1",
);
const GRAPHIQL_JS: (&str, &str) = (
    "https://unpkg.com/graphiql@3.9.0/graphiql.min.js",
    "sha384-8NGfVj4CVlqHajlZj+bPJT4thxPMHMJYn7DWK2CvtopLd02E7qsPHazniBYvVjOO",
);
const GRAPHIQL_CSS: (&str, &str) = (
    "https://unpkg.com/graphiql@3.9.0/graphiql.min.css",
    "sha384-QMux00XgRtwRLSYIY3kw2rj1ovk5AuuliAchk+HSQbqdbGFnz9GYuqIlOqxhwCE2",
);

const START: &str = "ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, { fetcher: GraphiQL.createFetcher({ url: '/graphql' }), defaultEditorToolsVisibility: true }));";

struct Page {
    html: String,
    policy: HeaderValue,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let script = |(url, integrity): (&str, &str)| {
        format!(r#"<script src="{url}" integrity="{integrity}" crossorigin="anonymous"></script>"#)
    };
    let (css_url, css_integrity) = GRAPHIQL_CSS;
    let html = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>oponn GraphiQL</title>
<link rel="stylesheet" href="{css_url}" integrity="{css_integrity}" crossorigin="anonymous">
{react}
{react_dom}
{graphiql}
</head>
<body style="margin: 0">
<div id="graphiql" style="height: 100vh"></div>
<script>{START}</script>
</body>
</html>
"#,
        react = script(REACT),
        react_dom = script(REACT_DOM),
        graphiql = script(GRAPHIQL_JS),
    );
    let start_hash = STANDARD.encode(Sha256::digest(START.as_bytes()));
    let policy = format!(
        "default-src 'none'; script-src https://unpkg.com 'sha256-{start_hash}'; \
         style-src https://unpkg.com 'unsafe-inline'; font-src https://unpkg.com data:; \
         img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    Page {
        html,
        policy: HeaderValue::from_str(&policy).expect("the policy is a valid header value"),
    }
});

/// The page, with its content security policy.
pub fn page() -> Response {
    let mut response = Html(PAGE.html.clone()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, PAGE.policy.clone());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_and_stylesheet_is_pinned_with_an_integrity_hash() {
        let html = &PAGE.html;
        for (url, integrity) in [REACT, REACT_DOM, GRAPHIQL_JS, GRAPHIQL_CSS] {
            assert!(
                url.contains('@') && !url.contains("@latest"),
                "{url} is pinned"
            );
            assert!(html.contains(&format!(r#""{url}" integrity="{integrity}""#)));
        }
        assert_eq!(html.matches("<script src=").count(), 3);
        assert_eq!(html.matches("integrity=").count(), 4);
    }

    #[test]
    fn the_policy_allows_the_inline_script_by_its_hash_only() {
        let policy = PAGE.policy.to_str().expect("ascii");
        let hash = STANDARD.encode(Sha256::digest(START.as_bytes()));
        assert!(policy.contains(&format!("'sha256-{hash}'")));
        assert!(!policy.contains("unsafe-eval"));
        assert!(!policy.contains("script-src https://unpkg.com 'unsafe-inline'"));
        assert!(policy.contains("frame-ancestors 'none'"));
    }
}
