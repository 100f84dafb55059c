//! How a record sits in Redis: `"<version> <epoch> <json>"` for a record, `"<version> <epoch> -"`
//! for a known absence. The version comes first so the compare-and-set script can read it
//! without decoding JSON, and so `redis-cli GET books_<id>` stays readable; the epoch is the
//! Redis run the value was written for (see [`super::link`]).

use serde::{de::DeserializeOwned, Serialize};

use super::Epoch;
use crate::domain::Version;

/// A cached record or a cached absence, each with the version it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<T> {
    pub version: Version,
    pub value: Option<T>,
}

/// The epoch of a pending record (write-behind): MongoDB does not hold it yet, so every Redis
/// run trusts it (see `super::pending`). Run ids are hexadecimal, so no run is called this.
pub const PENDING: &str = "pending";

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
    /// The value stored for this entry, stamped with `epoch`.
    pub fn encode(&self, epoch: &Epoch) -> String {
        match &self.value {
            Some(value) => format!(
                "{} {epoch} {}",
                self.version,
                serde_json::to_string(value).expect("cached types serialise to JSON")
            ),
            None => format!("{} {epoch} {ABSENT}", self.version),
        }
    }
}

impl<T: DeserializeOwned> Entry<T> {
    /// The entry in a stored value, and the epoch it was stamped with.
    pub fn decode(raw: &str) -> Result<(&str, Self), MalformedEntry> {
        let mut parts = raw.splitn(3, ' ');
        let (Some(version), Some(epoch), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(MalformedEntry("not `<version> <epoch> <body>`".into()));
        };
        let version: Version = version
            .parse()
            .map_err(|_| MalformedEntry(format!("version {version:?} is not a number")))?;
        if body == ABSENT {
            return Ok((epoch, Self::absent(version)));
        }
        serde_json::from_str(body)
            .map(|value| (epoch, Self::present(version, value)))
            .map_err(|err| MalformedEntry(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_and_absent_entries_round_trip_with_their_epoch() {
        let epoch = Epoch::unknown();
        let present = Entry::present(7, vec!["a".to_owned()]);
        assert_eq!(present.encode(&epoch), r#"7 none ["a"]"#);
        assert_eq!(
            Entry::<Vec<String>>::decode(&present.encode(&epoch)).unwrap(),
            ("none", present)
        );

        let absent = Entry::<Vec<String>>::absent(3);
        assert_eq!(absent.encode(&epoch), "3 none -");
        assert_eq!(
            Entry::<Vec<String>>::decode("3 e1 -").unwrap(),
            ("e1", absent)
        );
    }

    #[test]
    fn malformed_values_are_reported_not_trusted() {
        for raw in ["", "x e {}", "7", "7 e", "3 -", "7 e {not json"] {
            assert!(
                Entry::<Vec<String>>::decode(raw).is_err(),
                "{raw:?} decoded"
            );
        }
    }
}
