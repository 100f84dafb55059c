//! The queue on a Redis stream with one consumer group.
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `<prefix><stream>` | stream | one entry per change: `c` collection, `i` id, `v` version (appended by the cache's pending write, `cache::pending`) |
//! | `<prefix><stream>:dead` | stream | changes no worker could apply, with the reason |
//!
//! Workers read with `XREADGROUP` (consumer group `workers`, one consumer name per worker
//! process), acknowledge with `XACK`, and take over what a dead worker left unacknowledged with
//! `XAUTOCLAIM` after the claim time. A change delivered `max_deliveries` times is dead-lettered
//! unread (it may be what kills its workers). Acknowledged entries are trimmed (`XTRIM MINID`).
//!
//! Durability is Redis's: with `appendonly yes` and `appendfsync always`, Redis fsyncs before it
//! replies to the script that appends a change, so an appended change survives a crash; with `everysec`, up to a second
//! of changes (and of the pending records they point at) can be lost with the machine. A
//! Redis without an append-only file loses the queue with its memory.

use std::{
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use redis::{
    aio::MultiplexedConnection,
    streams::{
        StreamAutoClaimReply, StreamId, StreamInfoGroupsReply, StreamPendingReply, StreamReadReply,
    },
    ErrorKind, FromRedisValue, RedisResult, ServerErrorKind,
};
use tokio::time::Instant;

use super::{lane::Lane, Appends, Carried, Change, Delivery, Depth, Mark, Queue, QueueError};

/// The consumer group every worker joins.
const GROUP: &str = "workers";

/// The settings of one queue handle.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The stream's key, prefix included.
    pub key: String,
    /// This process's consumer name (unique per process: a restarted worker is a new consumer).
    pub consumer: String,
    /// Per-call timeout.
    pub timeout: Duration,
    /// How long a delivered change may stay unacknowledged before another worker takes it.
    pub claim_idle: Duration,
    /// Deliveries after which a change is dead-lettered unread.
    pub max_deliveries: u32,
}

pub struct RedisStreams {
    client: redis::Client,
    settings: StreamSettings,
    dead_key: String,
    /// For appends, acknowledgements and inspection.
    commands: Lane,
    /// For `XREADGROUP ... BLOCK`, which holds its connection while it waits.
    reads: Lane,
    /// Where `XAUTOCLAIM` goes on from, and when it last ran.
    reclaim: Mutex<(String, Option<Instant>)>,
}

impl RedisStreams {
    pub fn new(client: redis::Client, settings: StreamSettings) -> Self {
        Self {
            dead_key: format!("{}:dead", settings.key),
            client,
            settings,
            commands: Lane::default(),
            reads: Lane::default(),
            reclaim: Mutex::new(("0-0".to_owned(), None)),
        }
    }

    pub fn dead_key(&self) -> &str {
        &self.dead_key
    }

    /// Creates the consumer group (and the stream) unless they exist, at the stream's start:
    /// changes appended before any worker ran are delivered too.
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        let create = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.settings.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .to_owned();
        match self.command::<()>(&self.commands, create).await {
            Err(QueueError::Redis(error)) if error.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    /// One command (see [`Lane::within`]: it may run twice).
    async fn command<T: FromRedisValue>(
        &self,
        lane: &Lane,
        command: redis::Cmd,
    ) -> Result<T, QueueError> {
        let command = &command;
        self.within(lane, self.settings.timeout, |mut connection| async move {
            command.query_async(&mut connection).await
        })
        .await
    }

    async fn within<T, F, Fut>(
        &self,
        lane: &Lane,
        within: Duration,
        run: F,
    ) -> Result<T, QueueError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        lane.within(&self.client, self.settings.timeout, within, run)
            .await
    }

    /// Entries another consumer has held unacknowledged for the claim time, now this one's; at
    /// most once per half claim time.
    async fn reclaim(&self, max: usize) -> Result<Vec<Delivery>, QueueError> {
        let start = {
            let mut reclaim = self.reclaim.lock().expect("reclaim lock is never poisoned");
            let due = reclaim
                .1
                .is_none_or(|last| last.elapsed() >= self.settings.claim_idle / 2);
            if !due {
                return Ok(Vec::new());
            }
            reclaim.1 = Some(Instant::now());
            reclaim.0.clone()
        };
        let claim = redis::cmd("XAUTOCLAIM")
            .arg(&self.settings.key)
            .arg(GROUP)
            .arg(&self.settings.consumer)
            .arg(self.settings.claim_idle.as_millis() as u64)
            .arg(&start)
            .arg("COUNT")
            .arg(max)
            .to_owned();
        let claimed: StreamAutoClaimReply = self.command(&self.commands, claim).await?;
        self.reclaim
            .lock()
            .expect("reclaim lock is never poisoned")
            .0 = claimed.next_stream_id.clone();
        if claimed.claimed.is_empty() {
            return Ok(Vec::new());
        }
        // How often each was delivered: one XPENDING per entry, in one pipeline.
        let mut pipeline = redis::pipe();
        for entry in &claimed.claimed {
            pipeline
                .cmd("XPENDING")
                .arg(&self.settings.key)
                .arg(GROUP)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let pipeline = &pipeline;
        let counts: Vec<redis::streams::StreamPendingCountReply> = self
            .within(
                &self.commands,
                self.settings.timeout,
                |mut connection| async move { pipeline.query_async(&mut connection).await },
            )
            .await?;
        Ok(claimed
            .claimed
            .iter()
            .zip(counts)
            .map(|(entry, count)| {
                let deliveries = count.ids.first().map_or(1, |p| p.times_delivered as u64);
                delivery(entry, deliveries)
            })
            .collect())
    }

    /// The group's `last-delivered-id` and its pending summary (count, smallest id), or
    /// `None` when the stream or the group does not exist.
    async fn progress(&self) -> Result<Option<Progress>, QueueError> {
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.settings.key)
            .cmd("XPENDING")
            .arg(&self.settings.key)
            .arg(GROUP)
            .cmd("XLEN")
            .arg(&self.dead_key);
        let pipeline = &pipeline;
        let answered = self
            .within(
                &self.commands,
                self.settings.timeout,
                |mut connection| async move {
                    pipeline
                        .query_async::<(StreamInfoGroupsReply, StreamPendingReply, u64)>(
                            &mut connection,
                        )
                        .await
                },
            )
            .await;
        let (groups, pending, dead) = match answered {
            Ok(answered) => answered,
            Err(QueueError::Redis(error)) if is_missing(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        let Some(group) = groups.groups.into_iter().find(|g| g.name == GROUP) else {
            return Ok(None);
        };
        let (count, smallest) = match pending {
            StreamPendingReply::Data(data) => (data.count as u64, Some(data.start_id)),
            _ => (0, None),
        };
        Ok(Some(Progress {
            last_delivered: group.last_delivered_id,
            lag: group.lag.map(|lag| lag as u64),
            pending: count,
            smallest_pending: smallest,
            dead,
        }))
    }
}

#[async_trait]
impl Queue for RedisStreams {
    /// Drops acknowledged entries from the stream's head, and forgets consumers (one per
    /// worker process that ever ran) that hold nothing and were idle for
    /// [`FORGET_AFTER_CLAIM_TIMES`] claim times: the group stays bounded however often workers
    /// restart.
    async fn compact(&self) -> Result<(), QueueError> {
        self.prune_consumers().await?;
        let Some(progress) = self.progress().await? else {
            return Ok(());
        };
        let threshold = progress.smallest_pending.unwrap_or(progress.last_delivered);
        let trim = redis::cmd("XTRIM")
            .arg(&self.settings.key)
            .arg("MINID")
            .arg(threshold)
            .to_owned();
        self.command::<u64>(&self.commands, trim).await.map(|_| ())
    }

    fn appends(&self) -> Appends<'_> {
        Appends::Stream(&self.settings.key)
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        reclaim: bool,
    ) -> Result<Vec<Delivery>, QueueError> {
        if reclaim {
            let reclaimed = self.reclaim(max).await?;
            if !reclaimed.is_empty() {
                return Ok(reclaimed);
            }
        }
        let read = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.settings.key)
            .arg(">")
            .to_owned();
        let within = wait + self.settings.timeout;
        let read = &read;
        let answered = self
            .within(&self.reads, within, |mut connection| async move {
                read.query_async::<Option<StreamReadReply>>(&mut connection)
                    .await
            })
            .await;
        let reply = match answered {
            Ok(reply) => reply,
            Err(QueueError::Redis(error)) if error.code() == Some("NOGROUP") => {
                // Redis lost the group (a restart without an append-only file): make it again.
                tracing::warn!("the write-behind consumer group is gone; creating it again");
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            Err(error) => return Err(error),
        };
        Ok(reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .map(|entry| delivery(&entry, 1))
            .collect())
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut ack = redis::cmd("XACK");
        ack.arg(&self.settings.key).arg(GROUP);
        for delivery in deliveries {
            ack.arg(&delivery.handle);
        }
        self.command::<u64>(&self.commands, ack).await.map(|_| ())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let mut add = redis::cmd("XADD");
        add.arg(&self.dead_key).arg("*");
        if let Ok(change) = &delivery.change {
            add.arg("c")
                .arg(&change.collection)
                .arg("i")
                .arg(&change.id)
                .arg("v")
                .arg(change.version);
        }
        add.arg("entry")
            .arg(&delivery.handle)
            .arg("deliveries")
            .arg(delivery.deliveries)
            .arg("reason")
            .arg(reason);
        self.command::<String>(&self.commands, add).await?;
        self.ack(std::slice::from_ref(delivery)).await
    }

    async fn mark(&self) -> Result<Mark, QueueError> {
        let last = redis::cmd("XREVRANGE")
            .arg(&self.settings.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .to_owned();
        let entries: Vec<StreamId> = self
            .command::<redis::streams::StreamRangeReply>(&self.commands, last)
            .await?
            .ids;
        Ok(Mark(entries.into_iter().next().map(|entry| entry.id)))
    }

    async fn passed(&self, mark: &Mark) -> Result<bool, QueueError> {
        let Some(mark) = mark.position() else {
            return Ok(true);
        };
        let Some(progress) = self.progress().await? else {
            // No stream or no group: Redis lost the queue; nothing is pending any more.
            return Ok(true);
        };
        let delivered = position(&progress.last_delivered) >= mark;
        let acknowledged = progress
            .smallest_pending
            .as_deref()
            .is_none_or(|smallest| position(smallest) > mark);
        Ok(delivered && acknowledged)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let Some(progress) = self.progress().await? else {
            return Ok(Depth::default());
        };
        // The oldest unacknowledged change: the smallest pending one, or else the first one
        // not delivered yet.
        let oldest_id = match &progress.smallest_pending {
            Some(smallest) => Some(smallest.clone()),
            None if progress.lag.unwrap_or(1) > 0 => {
                let next = redis::cmd("XRANGE")
                    .arg(&self.settings.key)
                    .arg(format!("({}", progress.last_delivered))
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .to_owned();
                self.command::<redis::streams::StreamRangeReply>(&self.commands, next)
                    .await?
                    .ids
                    .into_iter()
                    .next()
                    .map(|entry| entry.id)
            }
            None => None,
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        Ok(Depth {
            pending: progress.pending + progress.lag.unwrap_or(0),
            oldest: oldest_id
                .map(|id| Duration::from_millis(now_ms.saturating_sub(position(&id).0))),
            dead: progress.dead,
        })
    }
}

/// How many claim times a consumer that holds nothing may stay idle before it is forgotten (an
/// hour with the default 15 s): far past any pause of a live worker, which would be recreated
/// on its next read anyway.
const FORGET_AFTER_CLAIM_TIMES: u32 = 240;

impl RedisStreams {
    async fn prune_consumers(&self) -> Result<(), QueueError> {
        let list = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&self.settings.key)
            .arg(GROUP)
            .to_owned();
        let consumers: redis::streams::StreamInfoConsumersReply =
            match self.command(&self.commands, list).await {
                Ok(consumers) => consumers,
                Err(QueueError::Redis(error)) if is_missing(&error) => return Ok(()),
                Err(error) => return Err(error),
            };
        for consumer in consumers.consumers {
            let idle = Duration::from_millis(consumer.idle as u64);
            let forgotten = consumer.pending == 0
                && idle >= self.settings.claim_idle * FORGET_AFTER_CLAIM_TIMES
                && consumer.name != self.settings.consumer;
            if forgotten {
                let forget = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&self.settings.key)
                    .arg(GROUP)
                    .arg(&consumer.name)
                    .to_owned();
                self.command::<u64>(&self.commands, forget).await?;
            }
        }
        Ok(())
    }
}

struct Progress {
    last_delivered: String,
    lag: Option<u64>,
    pending: u64,
    smallest_pending: Option<String>,
    dead: u64,
}

/// Where an entry id lies in the stream: `(ms, seq)`, ordered as Redis orders ids.
fn position(id: &str) -> (u64, u64) {
    Mark(Some(id.to_owned())).position().unwrap_or_default()
}

fn delivery(entry: &StreamId, deliveries: u64) -> Delivery {
    Delivery {
        change: change_of(entry),
        handle: entry.id.clone(),
        deliveries,
        carried: Carried::Nothing,
    }
}

fn change_of(entry: &StreamId) -> Result<Change, String> {
    let field = |name: &str| -> Result<String, String> {
        match entry.map.get(name) {
            Some(value) => String::from_redis_value(value.clone())
                .map_err(|_| format!("field {name:?} is not a string")),
            None => Err(format!("field {name:?} is missing")),
        }
    };
    let version = field("v")?;
    Ok(Change {
        collection: field("c")?,
        id: field("i")?,
        version: version
            .parse()
            .map_err(|_| format!("version {version:?} is not a number"))?,
    })
}

/// "No such key" or "no such group": the queue is gone.
fn is_missing(error: &redis::RedisError) -> bool {
    error.code() == Some("NOGROUP")
        || error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
            && error.to_string().contains("no such key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_positions_order_as_redis_does() {
        assert!(position("10-0") > position("9-5"));
        assert!(position("10-2") > position("10-1"));
        assert_eq!(position("7"), (7, 0));
    }
}
