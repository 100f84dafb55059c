//! What Redis holds, as it is: for the consistency audit (`crate::datastore::audit`), which
//! must see entries the read path would not trust and walk every key of an entity.

use std::str::FromStr;

use redis::FromRedisValue;

use super::{link::Session, Cache, CacheError, Entity, Entry, Epoch};

/// A stored entry and the epoch it is stamped with (a Redis run, or `pending`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    pub stamp: String,
    pub entry: Entry<T>,
}

impl Cache {
    /// The session in use, or a new one, past the breaker: for the worker, the audit and the
    /// start-up checks, which must reach Redis even while reads bypass it.
    pub(super) async fn direct_session(&self) -> Result<Session, CacheError> {
        self.link
            .session()
            .await
            .map_err(|error| self.connect_failed(error))
    }

    /// One command on [`Cache::direct_session`]; also the epoch of the run that answered.
    pub(super) async fn direct<T: FromRedisValue>(
        &self,
        operation: &'static str,
        command: redis::Cmd,
    ) -> Result<(Epoch, T), CacheError> {
        let session = self.direct_session().await?;
        let mut connection = session.connection.clone();
        let value = self
            .call(
                operation,
                &session,
                self.timeout,
                command.query_async(&mut connection),
            )
            .await?;
        Ok((session.epoch, value))
    }

    /// The entry of each id as stored, whatever its stamp (`None`: no key, or a value that does
    /// not parse).
    pub async fn stamped_entries<E: Entity>(
        &self,
        ids: &[E::Id],
    ) -> Result<Vec<Option<Stamped<E>>>, CacheError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key::<E>(id)).collect();
        let (_, values): (_, Vec<Option<String>>) = self
            .direct("mget", redis::cmd("MGET").arg(&keys).to_owned())
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
        E: Entity,
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
        let (_, (next, keys)): (_, (u64, Vec<String>)) = self.direct("scan", scan).await?;
        let ids = keys
            .iter()
            .filter_map(|key| key.strip_prefix(&stem)?.parse().ok())
            .collect();
        Ok((next, ids))
    }

    /// The epoch of the Redis run this process reaches now.
    pub async fn current_epoch(&self) -> Result<Epoch, CacheError> {
        Ok(self.direct_session().await?.epoch)
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
