//! Bearer tokens: `Authorization: Bearer <token>` against `OPONN_API_TOKENS`, compared in
//! constant time so response timing does not reveal how much of a guess was right.

use axum::http::{header::AUTHORIZATION, HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::graphql::Caller;

pub struct Tokens(Vec<SecretString>);

impl Tokens {
    pub fn new(tokens: Vec<SecretString>) -> Self {
        Self(tokens)
    }

    /// Who the request's headers say is calling.
    pub fn caller(&self, headers: &HeaderMap) -> Caller {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let presented = value
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match presented {
            Some(token) if self.accepts(token) => Caller::Authenticated,
            _ => Caller::Rejected,
        }
    }

    /// Compares against every token, without stopping at the first match.
    fn accepts(&self, presented: &str) -> bool {
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |matched, token| {
                matched | token.expose_secret().as_bytes().ct_eq(presented.as_bytes())
            })
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens() -> Tokens {
        Tokens::new(vec![
            SecretString::from("first-token-0123456789"),
            SecretString::from("second-token-0123456789"),
        ])
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(authorization).expect("valid header"),
        );
        headers
    }

    #[test]
    fn any_configured_token_authenticates() {
        let tokens = tokens();
        assert_eq!(
            tokens.caller(&headers("Bearer first-token-0123456789")),
            Caller::Authenticated
        );
        assert_eq!(
            tokens.caller(&headers("bearer second-token-0123456789")),
            Caller::Authenticated
        );
    }

    #[test]
    fn missing_wrong_and_malformed_headers_do_not() {
        let tokens = tokens();
        assert_eq!(tokens.caller(&HeaderMap::new()), Caller::Anonymous);
        assert_eq!(
            tokens.caller(&headers("Bearer first-token")),
            Caller::Rejected
        );
        assert_eq!(
            tokens.caller(&headers("Basic first-token-0123456789")),
            Caller::Rejected
        );
        assert_eq!(
            tokens.caller(&headers("first-token-0123456789")),
            Caller::Rejected
        );
    }

    #[test]
    fn no_configured_tokens_means_no_one_authenticates() {
        let tokens = Tokens::new(Vec::new());
        assert_eq!(tokens.caller(&headers("Bearer ")), Caller::Rejected);
        assert_eq!(
            tokens.caller(&headers("Bearer anything-at-all-long")),
            Caller::Rejected
        );
    }
}
