//! How a record sits in Redis: `"<version> <json>"` for a record, `"<version> -"` for a known
//! absence. The version comes first so the compare-and-set script can read it without decoding
//! JSON, and so `redis-cli GET books_<id>` stays readable.

use serde::{de::DeserializeOwned, Serialize};

use crate::domain::Version;

/// A cached record or a cached absence, each with the version it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    pub version: Version,
    pub value: Option<T>,
}

/// The marker stored in place of JSON for a known absence (JSON never starts with `-`).
const ABSENT: &str = "-";

#[derive(Debug, thiserror::Error)]
#[error("cached value is malformed: {0}")]
pub struct MalformedEntry(String);

impl<T> Entry<T> {
    pub fn present(version: Version, value: T) -> Self {
        Self {
            version,
            value: Some(value),
        }
    }

    pub fn absent(version: Version) -> Self {
        Self {
            version,
            value: None,
        }
    }
}

impl<T: Serialize> Entry<T> {
    pub fn encode(&self) -> String {
        match &self.value {
            Some(value) => format!(
                "{} {}",
                self.version,
                serde_json::to_string(value).expect("cached types serialise to JSON")
            ),
            None => format!("{} {ABSENT}", self.version),
        }
    }
}

impl<T: DeserializeOwned> Entry<T> {
    pub fn decode(raw: &str) -> Result<Self, MalformedEntry> {
        let (version, body) = raw
            .split_once(' ')
            .ok_or_else(|| MalformedEntry("no version prefix".into()))?;
        let version: Version = version
            .parse()
            .map_err(|_| MalformedEntry(format!("version {version:?} is not a number")))?;
        if body == ABSENT {
            return Ok(Self::absent(version));
        }
        serde_json::from_str(body)
            .map(|value| Self::present(version, value))
            .map_err(|err| MalformedEntry(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_and_absent_entries_round_trip() {
        let present = Entry::present(7, vec!["a".to_owned()]);
        assert_eq!(present.encode(), r#"7 ["a"]"#);
        assert_eq!(
            Entry::<Vec<String>>::decode(&present.encode()).unwrap(),
            present
        );

        let absent = Entry::<Vec<String>>::absent(3);
        assert_eq!(absent.encode(), "3 -");
        assert_eq!(Entry::<Vec<String>>::decode("3 -").unwrap(), absent);
    }

    #[test]
    fn malformed_values_are_reported_not_trusted() {
        for raw in ["", "x {}", "7", "7 {not json"] {
            assert!(
                Entry::<Vec<String>>::decode(raw).is_err(),
                "{raw:?} decoded"
            );
        }
    }
}
