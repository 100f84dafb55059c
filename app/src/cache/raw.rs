//! What Redis holds, as it is: for the consistency audit (`crate::datastore::audit`), which
//! must see entries the read path would not trust and walk every key of an entity.

use std::str::FromStr;

use super::{Cache, CacheEntity, CacheError, Entry};

/// A stored entry and the epoch it is stamped with (a Redis run, or `pending`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    pub stamp: String,
    pub entry: Entry<T>,
}

impl Cache {
    /// The entry of each id as stored, whatever its stamp (`None`: no key, or a value that does
    /// not parse).
    pub async fn stamped_entries<E: CacheEntity>(
        &self,
        ids: &[E::Id],
    ) -> Result<Vec<Option<Stamped<E>>>, CacheError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key::<E>(id)).collect();
        let mget = redis::cmd("MGET").arg(&keys).to_owned();
        let session = self
            .link
            .session()
            .await
            .map_err(|e| self.connect_failed(e))?;
        let mut connection = session.connection.clone();
        let values: Vec<Option<String>> = self
            .call(
                "mget",
                &session,
                self.timeout,
                mget.query_async(&mut connection),
            )
            .await?;
        Ok(values
            .into_iter()
            .map(|value| {
                let (stamp, entry) = Entry::decode(value.as_deref()?).ok()?;
                Some(Stamped {
                    stamp: stamp.to_owned(),
                    entry,
                })
            })
            .collect())
    }

    /// One step of a walk over every cached record of `E` (`SCAN` from `cursor`, about `count`
    /// keys): the ids found, and the cursor to go on from (`0` when the walk is over).
    pub async fn scan_ids<E>(
        &self,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<E::Id>), CacheError>
    where
        E: CacheEntity,
        E::Id: FromStr,
    {
        let stem = format!("{}{}_", self.prefix, E::COLLECTION);
        let scan = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", escape_glob(&stem)))
            .arg("COUNT")
            .arg(count)
            .to_owned();
        let session = self
            .link
            .session()
            .await
            .map_err(|e| self.connect_failed(e))?;
        let mut connection = session.connection.clone();
        let (next, keys): (u64, Vec<String>) = self
            .call(
                "scan",
                &session,
                self.timeout,
                scan.query_async(&mut connection),
            )
            .await?;
        let ids = keys
            .iter()
            .filter_map(|key| key.strip_prefix(&stem)?.parse().ok())
            .collect();
        Ok((next, ids))
    }

    /// The epoch of the Redis run this process reaches now.
    pub async fn current_epoch(&self) -> Result<super::Epoch, CacheError> {
        let session = self
            .link
            .session()
            .await
            .map_err(|e| self.connect_failed(e))?;
        Ok(session.epoch)
    }
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(escape_glob("test:books_"), "test:books_");
    }
}
