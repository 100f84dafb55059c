//! The queue on SQS FIFO (`OPONN_QUEUE=sqs`), with its progress kept in Redis.
//!
//! | where | what | holds |
//! |-------|------|-------|
//! | `OPONN_SQS_QUEUE_URL` | FIFO queue | one message per change: `{"c", "i", "v", "record"}` (the record's JSON, `null` for a delete; absent when a sweep re-sends a change whose record moved on) |
//! | `OPONN_SQS_DEAD_LETTER_URL` | FIFO queue | changes no worker could apply, with the reason |
//! | `<prefix>queued` | sorted set | `<collection>:<id>:<version>` of every change not yet applied, scored with Redis's time in ms when the cache stored it |
//! | `<prefix>queued:resent` | sorted set | the same members, scored with when a sweep last sent them again |
//!
//! **Appending.** SQS cannot be part of a Redis script, so a write is two steps: the cache's
//! script stores the pending record and adds the change to `queued` atomically
//! (`cache::pending`), then the writer sends the message (`MessageGroupId` `<collection>:<id>`,
//! so one record's changes are delivered in order; `MessageDeduplicationId`
//! `<collection>:<id>:<version>`), and replies only then. A writer that dies between the two
//! leaves a member in `queued` with no message: the worker's sweep ([`Queue::stranded`])
//! sends every member older than [`GRACE`] again, at most once per [`RESEND_EVERY`]; SQS
//! drops a duplicate sent within its five-minute deduplication window, and a later duplicate
//! is harmless (the worker's writes are guarded by version).
//!
//! **Progress.** `queued` is the barrier's and the depth's truth, not SQS (whose counts are
//! approximate): a mark is Redis's time, and the queue has passed it once no member scored at
//! or before it is left. The worker removes a change's member after MongoDB confirmed it and
//! the cache settled it (or when it dead-letters it), and only then deletes the message: a
//! worker that dies in between gets the message again and finds nothing to do, while the other
//! order could leave a member whose message is gone (until a sweep sends it again).
//!
//! **Durability.** Once sent, a change and its record are in SQS, which keeps them across the
//! loss of Redis: a worker that finds no entry at all (or an older one) where a message's
//! record should be pending persists the record the message carries (`crate::worker`).
//! `queued` lives in Redis, though: a Redis that loses it lets the barrier pass while SQS
//! still holds changes.
//!
//! Redelivery is SQS's visibility timeout (`OPONN_WORKER_CLAIM_IDLE_MS`, rounded up to whole
//! seconds): `reclaim` has nothing to do. `ApproximateReceiveCount` is the delivery count.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use aws_sdk_sqs::{
    error::DisplayErrorContext,
    types::{
        ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
        MessageSystemAttributeName, QueueAttributeName,
    },
    Client,
};
use redis::{aio::MultiplexedConnection, RedisResult, Script};
use serde_json::{json, Value};

use super::{lane::Lane, Appends, Carried, Change, Delivery, Depth, Mark, Queue, QueueError};

/// How old a member of `queued` must be before a sweep sends it again: longer than a writer
/// takes between its script and its send.
pub const GRACE: Duration = Duration::from_secs(5);
/// How often one member is sent again while it stays in `queued` (SQS's deduplication window:
/// a second send within it would be dropped anyway).
const RESEND_EVERY: Duration = Duration::from_secs(300);
/// How many of the oldest members one sweep looks at.
const SWEEP_SCAN: usize = 1_000;
/// The most messages one `ReceiveMessage` or batch call takes.
const SQS_BATCH: usize = 10;
/// The longest long poll of one receive.
const LONGEST_POLL: Duration = Duration::from_secs(1);

/// `KEYS[1]` `queued`, `KEYS[2]` `queued:resent`. `ARGV[1]` the grace in ms, `ARGV[2]` the
/// resend interval in ms, `ARGV[3]` the most members to return, `ARGV[4]` how many to look at.
/// Returns the members older than the grace that were not sent again within the interval,
/// and notes them as sent now.
const STRANDED: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, member in ipairs(due) do
  local last = redis.call('ZSCORE', KEYS[2], member)
  if not last or tonumber(last) <= ms - tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[2], ms, member)
    table.insert(out, member)
    if #out >= tonumber(ARGV[3]) then break end
  end
end
return out
";

/// The settings of one SQS queue handle.
#[derive(Debug, Clone)]
pub struct SqsQueueSettings {
    pub queue_url: String,
    pub dead_letter_url: String,
    /// The `queued` set's key, prefix included.
    pub queued_key: String,
    /// Per-call timeout (SQS and Redis).
    pub timeout: Duration,
    /// How long a received message stays invisible to other workers.
    pub visibility: Duration,
}

pub struct Sqs {
    client: Client,
    redis: redis::Client,
    lane: Lane,
    settings: SqsQueueSettings,
    resent_key: String,
    stranded: Script,
}

impl Sqs {
    pub fn new(client: Client, redis: redis::Client, settings: SqsQueueSettings) -> Self {
        Self {
            client,
            redis,
            lane: Lane::default(),
            resent_key: format!("{}:resent", settings.queued_key),
            settings,
            stranded: Script::new(STRANDED),
        }
    }

    /// Checks that both queues answer (at start-up: a wrong URL or missing permission fails
    /// there, not on the first mutation).
    pub async fn check(&self) -> Result<(), QueueError> {
        for url in [&self.settings.queue_url, &self.settings.dead_letter_url] {
            self.sqs(
                self.client
                    .get_queue_attributes()
                    .queue_url(url)
                    .attribute_names(QueueAttributeName::FifoQueue)
                    .send(),
            )
            .await?;
        }
        Ok(())
    }

    async fn redis<T, F, Fut>(&self, run: F) -> Result<T, QueueError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        self.lane
            .within(
                &self.redis,
                self.settings.timeout,
                self.settings.timeout,
                run,
            )
            .await
    }

    /// One SQS call within the timeout.
    async fn sqs<T, E>(
        &self,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, QueueError>
    where
        E: std::error::Error,
    {
        self.sqs_within(self.settings.timeout, call).await
    }

    async fn sqs_within<T, E>(
        &self,
        within: Duration,
        call: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, QueueError>
    where
        E: std::error::Error,
    {
        match tokio::time::timeout(within, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(QueueError::Sqs(DisplayErrorContext(&error).to_string())),
            Err(_) => Err(QueueError::Timeout(within)),
        }
    }

    /// Redis's time in ms.
    async fn now_ms(&self) -> Result<u64, QueueError> {
        let (seconds, micros): (u64, u64) =
            self.redis(|mut connection| async move {
                redis::cmd("TIME").query_async(&mut connection).await
            })
            .await?;
        Ok(seconds * 1_000 + micros / 1_000)
    }

    /// Removes applied (or dead-lettered) changes from `queued`.
    async fn forget(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        let members: Vec<String> = deliveries
            .iter()
            .filter_map(|delivery| delivery.change.as_ref().ok().map(Change::member))
            .collect();
        if members.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("ZREM")
            .arg(&self.settings.queued_key)
            .arg(&members)
            .ignore()
            .cmd("ZREM")
            .arg(&self.resent_key)
            .arg(&members)
            .ignore();
        let pipeline = &pipeline;
        self.redis(
            |mut connection| async move { pipeline.query_async::<()>(&mut connection).await },
        )
        .await
    }

    async fn dead_letters(&self) -> Result<u64, QueueError> {
        let attributes = self
            .sqs(
                self.client
                    .get_queue_attributes()
                    .queue_url(&self.settings.dead_letter_url)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
                    .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                    .send(),
            )
            .await?;
        Ok(attributes
            .attributes()
            .into_iter()
            .flatten()
            .filter_map(|(_, count)| count.parse::<u64>().ok())
            .sum())
    }
}

#[async_trait]
impl Queue for Sqs {
    fn appends(&self) -> Appends<'_> {
        Appends::Index(&self.settings.queued_key)
    }

    async fn send(&self, change: &Change, carried: &Carried) -> Result<(), QueueError> {
        self.sqs(
            self.client
                .send_message()
                .queue_url(&self.settings.queue_url)
                .message_group_id(format!("{}:{}", change.collection, change.id))
                .message_deduplication_id(change.member())
                .message_body(body(change, carried).to_string())
                .send(),
        )
        .await
        .map(|_| ())
    }

    async fn stranded(&self, max: usize) -> Result<Vec<Change>, QueueError> {
        let mut invocation = self.stranded.prepare_invoke();
        invocation
            .key(&self.settings.queued_key)
            .key(&self.resent_key)
            .arg(GRACE.as_millis() as u64)
            .arg(RESEND_EVERY.as_millis() as u64)
            .arg(max)
            .arg(SWEEP_SCAN);
        let invocation = &invocation;
        let members: Vec<String> = self
            .redis(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        Ok(members
            .iter()
            .filter_map(|member| {
                let change = Change::from_member(member);
                if change.is_none() {
                    tracing::error!(member, "a member of the queued set that is no change");
                }
                change
            })
            .collect())
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        _reclaim: bool,
    ) -> Result<Vec<Delivery>, QueueError> {
        // At most one receive's worth: what a worker holds must be applied well within the
        // visibility timeout, or the messages come back to other workers while it works and
        // their receive counts climb toward the dead letters (the crash run found that with a
        // batch of 256 and a 1 s visibility).
        let max = max.min(SQS_BATCH);
        let poll = wait.min(LONGEST_POLL).as_secs_f64().ceil() as i32;
        let visibility = self.settings.visibility.as_secs_f64().ceil().max(1.0) as i32;
        let mut deliveries = Vec::new();
        while deliveries.len() < max {
            let want = (max - deliveries.len()).min(SQS_BATCH);
            // Only the first call waits: the others only fill the batch.
            let waits = if deliveries.is_empty() { poll } else { 0 };
            let received = self
                .sqs_within(
                    Duration::from_secs(waits as u64) + self.settings.timeout,
                    self.client
                        .receive_message()
                        .queue_url(&self.settings.queue_url)
                        .max_number_of_messages(want as i32)
                        .wait_time_seconds(waits)
                        .visibility_timeout(visibility)
                        .message_system_attribute_names(
                            MessageSystemAttributeName::ApproximateReceiveCount,
                        )
                        .send(),
                )
                .await;
            let messages = match received {
                Ok(received) => received.messages.unwrap_or_default(),
                // What was received is invisible to the others now: hand it over.
                Err(_) if !deliveries.is_empty() => break,
                Err(error) => return Err(error),
            };
            let got = messages.len();
            deliveries.extend(messages.iter().filter_map(delivery));
            if got < want {
                break;
            }
        }
        Ok(deliveries)
    }

    /// Starts the visibility timeout of held messages again, so that a worker retrying them
    /// while MongoDB is away keeps them, and their receive counts do not climb toward the dead
    /// letters.
    async fn hold(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        let visibility = self.settings.visibility.as_secs_f64().ceil().max(1.0) as i32;
        for chunk in deliveries.chunks(SQS_BATCH) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(n, delivery)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(&delivery.handle)
                        .visibility_timeout(visibility)
                        .build()
                        .expect("an id and a receipt handle are all a change needs")
                })
                .collect();
            self.sqs(
                self.client
                    .change_message_visibility_batch()
                    .queue_url(&self.settings.queue_url)
                    .set_entries(Some(entries))
                    .send(),
            )
            .await?;
        }
        Ok(())
    }

    async fn ack(&self, deliveries: &[Delivery]) -> Result<(), QueueError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.forget(deliveries).await?;
        let mut failed = 0;
        for chunk in deliveries.chunks(SQS_BATCH) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(n, delivery)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(n.to_string())
                        .receipt_handle(&delivery.handle)
                        .build()
                        .expect("an id and a receipt handle are all a delete needs")
                })
                .collect();
            let deleted = self
                .sqs(
                    self.client
                        .delete_message_batch()
                        .queue_url(&self.settings.queue_url)
                        .set_entries(Some(entries))
                        .send(),
                )
                .await?;
            failed += deleted.failed.len();
        }
        if failed > 0 {
            // Their changes are applied: delivered again, they are no-ops.
            return Err(QueueError::Sqs(format!(
                "{failed} of {} messages were not deleted",
                deliveries.len()
            )));
        }
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let (group, mut letter) = match &delivery.change {
            Ok(change) => (
                format!("{}:{}", change.collection, change.id),
                body(change, &delivery.carried),
            ),
            Err(_) => ("malformed".to_owned(), json!({})),
        };
        letter["reason"] = json!(reason);
        letter["deliveries"] = json!(delivery.deliveries);
        self.sqs(
            self.client
                .send_message()
                .queue_url(&self.settings.dead_letter_url)
                .message_group_id(group)
                .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string())
                .message_body(letter.to_string())
                .send(),
        )
        .await?;
        self.forget(std::slice::from_ref(delivery)).await?;
        self.sqs(
            self.client
                .delete_message()
                .queue_url(&self.settings.queue_url)
                .receipt_handle(&delivery.handle)
                .send(),
        )
        .await
        .map(|_| ())
    }

    async fn mark(&self) -> Result<Mark, QueueError> {
        Ok(Mark(Some(self.now_ms().await?.to_string())))
    }

    async fn passed(&self, mark: &Mark) -> Result<bool, QueueError> {
        let Some(mark) = &mark.0 else {
            return Ok(true);
        };
        let queued = &self.settings.queued_key;
        let before: u64 = self
            .redis(|mut connection| async move {
                redis::cmd("ZCOUNT")
                    .arg(queued)
                    .arg("-inf")
                    .arg(mark)
                    .query_async(&mut connection)
                    .await
            })
            .await?;
        Ok(before == 0)
    }

    async fn depth(&self) -> Result<Depth, QueueError> {
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("TIME")
            .cmd("ZCARD")
            .arg(&self.settings.queued_key)
            .cmd("ZRANGE")
            .arg(&self.settings.queued_key)
            .arg(0)
            .arg(0)
            .arg("WITHSCORES");
        let pipeline = &pipeline;
        let ((seconds, micros), pending, oldest): ((u64, u64), u64, Vec<(String, f64)>) = self
            .redis(|mut connection| async move { pipeline.query_async(&mut connection).await })
            .await?;
        let now_ms = seconds * 1_000 + micros / 1_000;
        Ok(Depth {
            pending,
            oldest: oldest
                .first()
                .map(|(_, score)| Duration::from_millis(now_ms.saturating_sub(*score as u64))),
            dead: self.dead_letters().await?,
        })
    }
}

/// A change's message body.
fn body(change: &Change, carried: &Carried) -> Value {
    let mut body = json!({ "c": change.collection, "i": change.id, "v": change.version });
    match carried {
        Carried::Nothing => {}
        Carried::Record(record) => body["record"] = record.clone(),
        Carried::Deleted => body["record"] = Value::Null,
    }
    body
}

fn delivery(message: &Message) -> Option<Delivery> {
    let Some(handle) = message.receipt_handle() else {
        tracing::error!(message_id = ?message.message_id(), "SQS returned a message without a receipt handle");
        return None;
    };
    let deliveries = message
        .attributes()
        .and_then(|attributes| attributes.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let (change, carried) = match parse(message.body().unwrap_or_default()) {
        Ok((change, carried)) => (Ok(change), carried),
        Err(reason) => (Err(reason), Carried::Nothing),
    };
    Some(Delivery {
        change,
        handle: handle.to_owned(),
        deliveries,
        carried,
    })
}

/// The change and the record in a message body.
fn parse(body: &str) -> Result<(Change, Carried), String> {
    let value: HashMap<String, Value> =
        serde_json::from_str(body).map_err(|error| format!("not a JSON object: {error}"))?;
    let text = |name: &str| match value.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(format!("field {name:?} is not a string")),
    };
    let version = value
        .get("v")
        .and_then(Value::as_i64)
        .ok_or_else(|| "field \"v\" is not a number".to_owned())?;
    let carried = match value.get("record") {
        None => Carried::Nothing,
        Some(Value::Null) => Carried::Deleted,
        Some(record) => Carried::Record(record.clone()),
    };
    Ok((
        Change {
            collection: text("c")?,
            id: text("i")?,
            version,
        },
        carried,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_says_what_it_carries() {
        let change = Change {
            collection: "books".into(),
            id: "abc".into(),
            version: 7,
        };
        for carried in [
            Carried::Nothing,
            Carried::Deleted,
            Carried::Record(json!({ "title": "T" })),
        ] {
            let parsed = parse(&body(&change, &carried).to_string()).expect("a change");
            assert_eq!(parsed, (change.clone(), carried));
        }
        assert!(parse("{\"c\":\"books\",\"i\":\"x\"}").is_err());
        assert!(parse("junk").is_err());
    }

    #[test]
    fn a_member_names_its_change() {
        let change = Change {
            collection: "books".into(),
            id: "65f0".into(),
            version: 12,
        };
        assert_eq!(change.member(), "books:65f0:12");
        assert_eq!(Change::from_member(&change.member()), Some(change));
        assert_eq!(Change::from_member("books:x"), None);
    }
}
