//! Concurrent lookups share `MGET`s. At most one batch is in flight; the lookups that arrive
//! meanwhile wait together, and once the batch in flight has answered, one of them (the
//! leader) sends the next for all of them. Under load a round trip carries many requests' keys,
//! which saves a Redis command, a write and a read per request on both sides; an idle service
//! sends every lookup at once, as before.
//!
//! **A lookup only ever joins a batch that has not been sent.** A batch sent before a lookup
//! began may answer with a version older than a write acknowledged before the lookup began
//! (invariant 1), so a lookup waits for the next batch rather than sharing the answer of the
//! one in flight, and every batch is sent after each of its lookups began.
//!
//! Leadership survives cancellation: a leader whose request goes away (client gone, deadline)
//! puts the lookups it carried, unanswered, back in front of the queue and passes the lead on,
//! so nobody waits for a batch that will never be sent. Nothing here spawns a task.
//!
//! What the queue holds is bounded by the requests in flight: one entry per waiting lookup,
//! which leaves it when the next batch is formed, at most one round trip (or one Redis timeout)
//! later. A lookup whose request went away meanwhile is dropped then, not sent.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::oneshot;

/// The answer of one batch: what the whole batch shares (the Redis run that answered) and one
/// value per key, in the order asked.
pub(super) type Answer<C, V> = (C, Vec<V>);

/// What a lookup gets back: its keys, as it gave them, with the batch's context and one value
/// per key.
pub(super) type Found<K, C, V> = (Vec<K>, C, Vec<V>);

/// Lookups of keys `K`, answered with values `V` and a context `C` shared by a batch.
pub(super) struct Batches<K, V, C> {
    shared: Arc<Shared<K, V, C>>,
}

struct Shared<K, V, C> {
    state: Mutex<State<K, V, C>>,
    /// The most keys one batch carries (a lookup with more goes out alone).
    max_keys: usize,
}

struct State<K, V, C> {
    /// A batch is in flight, or its leader is about to send it.
    busy: bool,
    /// Lookups waiting for the next batch, oldest first.
    waiting: VecDeque<Waiter<K, V, C>>,
}

struct Waiter<K, V, C> {
    keys: Vec<K>,
    reply: oneshot::Sender<Turn<K, V, C>>,
}

enum Turn<K, V, C> {
    /// The batch this lookup went out in answered (`None`: it failed).
    Answered(Option<Found<K, C, V>>),
    /// This lookup leads the next batch.
    Lead(Lease<K, V, C>),
}

/// The right to send one batch: the leader's own keys and the waiters it carries. Dropped
/// before it is spent, it hands the waiters back and passes the lead on.
struct Lease<K, V, C> {
    shared: Arc<Shared<K, V, C>>,
    own: Vec<K>,
    others: Vec<Waiter<K, V, C>>,
    spent: bool,
}

impl<K, V, C> Batches<K, V, C> {
    pub(super) fn new(max_keys: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    busy: false,
                    waiting: VecDeque::new(),
                }),
                max_keys: max_keys.max(1),
            }),
        }
    }
}

impl<K, V, C: Clone> Batches<K, V, C> {
    /// The values of `keys` (handed back with them) and the batch's context, looked up by
    /// `send` in a batch sent after this call began, together with the lookups waiting at the
    /// time. `send` gets every key of the batch and must answer one value per key, in order.
    /// `Err(Some)` is the failure of a batch this lookup sent; `Err(None)` that of a batch
    /// another lookup sent (reported there).
    pub(super) async fn lookup<E, F, Fut>(
        &self,
        keys: Vec<K>,
        send: F,
    ) -> Result<Found<K, C, V>, Option<E>>
    where
        F: FnOnce(&[&K]) -> Fut,
        Fut: Future<Output = Result<Answer<C, V>, E>>,
    {
        let turn = {
            let mut state = self.shared.lock();
            if state.busy {
                let (reply, turn) = oneshot::channel();
                state.waiting.push_back(Waiter { keys, reply });
                Err(turn)
            } else {
                state.busy = true;
                Ok(keys)
            }
        };
        let lease = match turn {
            Ok(own) => Lease {
                shared: Arc::clone(&self.shared),
                own,
                others: Vec::new(),
                spent: false,
            },
            Err(turn) => match turn.await {
                Ok(Turn::Answered(answer)) => return answer.ok_or(None),
                Ok(Turn::Lead(lease)) => lease,
                // Only when the whole cache is being dropped.
                Err(_) => return Err(None),
            },
        };
        lease.send(send).await
    }
}

impl<K, V, C> Shared<K, V, C> {
    fn lock(&self) -> MutexGuard<'_, State<K, V, C>> {
        self.state
            .lock()
            .expect("the lookup queue's lock is never poisoned")
    }

    /// Passes the lead to the oldest waiting lookup still there, with the waiters that fit in
    /// its batch; with none waiting, the next lookup sends at once.
    fn pass_lead(self: &Arc<Self>) {
        loop {
            let mut next = {
                let mut state = self.lock();
                let mut keys = 0;
                let mut next = Vec::new();
                while let Some(waiter) = state.waiting.front() {
                    // Its request went away: nothing to send for it.
                    if waiter.reply.is_closed() {
                        state.waiting.pop_front();
                        continue;
                    }
                    if !next.is_empty() && keys + waiter.keys.len() > self.max_keys {
                        break;
                    }
                    keys += waiter.keys.len();
                    next.extend(state.waiting.pop_front());
                }
                if next.is_empty() {
                    state.busy = false;
                    return;
                }
                next
            };
            while !next.is_empty() {
                let first = next.remove(0);
                let lease = Lease {
                    shared: Arc::clone(self),
                    own: first.keys,
                    others: next,
                    spent: false,
                };
                match first.reply.send(Turn::Lead(lease)) {
                    Ok(()) => return,
                    // That lookup went away: the next one leads.
                    Err(Turn::Lead(mut lease)) => {
                        lease.spent = true;
                        next = std::mem::take(&mut lease.others);
                    }
                    Err(Turn::Answered(_)) => unreachable!("a lead was offered"),
                }
            }
        }
    }
}

impl<K, V, C: Clone> Lease<K, V, C> {
    /// Sends the batch, answers the waiters it carries, and passes the lead on.
    async fn send<E, F, Fut>(mut self, send: F) -> Result<Found<K, C, V>, Option<E>>
    where
        F: FnOnce(&[&K]) -> Fut,
        Fut: Future<Output = Result<Answer<C, V>, E>>,
    {
        let keys: Vec<&K> = self
            .own
            .iter()
            .chain(self.others.iter().flat_map(|waiter| &waiter.keys))
            .collect();
        let total = keys.len();
        let sent = send(&keys);
        drop(keys);
        let answer = sent.await;
        self.spent = true;
        let others = std::mem::take(&mut self.others);
        let own = match answer {
            Ok((context, values)) if values.len() == total => {
                let mut values = values.into_iter();
                let own: Vec<V> = values.by_ref().take(self.own.len()).collect();
                for waiter in others {
                    let theirs = values.by_ref().take(waiter.keys.len()).collect();
                    // A waiter that went away needs no answer.
                    let _ = waiter.reply.send(Turn::Answered(Some((
                        waiter.keys,
                        context.clone(),
                        theirs,
                    ))));
                }
                Ok((std::mem::take(&mut self.own), context, own))
            }
            // A short answer is Redis breaking its protocol: nobody gets a value.
            failed => {
                for waiter in others {
                    let _ = waiter.reply.send(Turn::Answered(None));
                }
                Err(failed.err())
            }
        };
        self.shared.pass_lead();
        own
    }
}

impl<K, V, C> Drop for Lease<K, V, C> {
    fn drop(&mut self) {
        if self.spent {
            return;
        }
        // Dropped before its batch answered: the waiters it carried were never answered, so
        // they go back in front of the queue, in order, and someone else leads.
        let others = std::mem::take(&mut self.others);
        {
            let mut state = self.shared.lock();
            for waiter in others.into_iter().rev() {
                state.waiting.push_front(waiter);
            }
        }
        self.shared.pass_lead();
    }
}

#[cfg(test)]
impl<K, V, C> Batches<K, V, C> {
    /// How many lookups wait for the next batch.
    fn waiting(&self) -> usize {
        self.shared.lock().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::{sync::Semaphore, task::JoinHandle};

    use super::*;

    /// A stand-in for Redis: one value for every key, the store's version when the batch was
    /// sent; each batch is held until the test lets one through.
    #[derive(Clone)]
    struct Store {
        version: Arc<AtomicU64>,
        gate: Arc<Semaphore>,
        sent: Arc<Mutex<Vec<Vec<String>>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    type Lookups = Batches<String, u64, ()>;

    impl Default for Store {
        fn default() -> Self {
            Self {
                version: Arc::default(),
                gate: Arc::new(Semaphore::new(0)),
                sent: Arc::default(),
                fail: Arc::default(),
            }
        }
    }

    type Looking = JoinHandle<Result<Vec<u64>, Option<String>>>;

    impl Store {
        fn lookup(&self, lookups: &Arc<Lookups>, keys: &[&str]) -> Looking {
            let (store, lookups) = (self.clone(), Arc::clone(lookups));
            let keys: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
            tokio::spawn(async move {
                lookups
                    .lookup(keys.clone(), |keys| {
                        let version = store.version.load(Ordering::SeqCst);
                        let count = keys.len();
                        store
                            .sent
                            .lock()
                            .unwrap()
                            .push(keys.iter().map(|key| key.to_string()).collect());
                        let (gate, fail) =
                            (Arc::clone(&store.gate), store.fail.load(Ordering::SeqCst));
                        async move {
                            gate.acquire().await.unwrap().forget();
                            if fail {
                                Err("connection reset".to_owned())
                            } else {
                                Ok(((), vec![version; count]))
                            }
                        }
                    })
                    .await
                    .map(|(returned, (), values)| {
                        assert_eq!(returned, keys, "a lookup gets its own keys back, in order");
                        values
                    })
            })
        }

        fn batches_sent(&self) -> usize {
            self.sent.lock().unwrap().len()
        }
    }

    /// Starts a lookup of `a` and holds its batch in flight, then one lookup per entry of
    /// `keys`, which wait for the next batch.
    async fn one_in_flight_then(
        store: &Store,
        lookups: &Arc<Lookups>,
        keys: &[&[&str]],
    ) -> (Looking, Vec<Looking>) {
        let first = store.lookup(lookups, &["a"]);
        until(|| store.batches_sent() == 1).await;
        let waiting: Vec<_> = keys
            .iter()
            .map(|keys| store.lookup(lookups, keys))
            .collect();
        until(|| lookups.waiting() == keys.len()).await;
        (first, waiting)
    }

    /// Lets the spawned lookups run until `done` holds (an event, not a sleep).
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the lookups never got there");
    }

    #[tokio::test]
    async fn a_lookup_never_joins_a_batch_already_sent() {
        let (store, lookups) = (Store::default(), Arc::new(Lookups::new(100)));
        store.version.store(1, Ordering::SeqCst);
        let first = store.lookup(&lookups, &["books_1"]);
        until(|| store.batches_sent() == 1).await;

        // A write is acknowledged while the first batch is in flight; a lookup that begins
        // after it must see it, so it cannot take the answer of the batch in flight.
        store.version.store(2, Ordering::SeqCst);
        let second = store.lookup(&lookups, &["books_1"]);
        until(|| lookups.waiting() == 1).await;

        store.gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(vec![1]));
        assert_eq!(
            second.await.unwrap(),
            Ok(vec![2]),
            "the second lookup saw the write"
        );
        assert_eq!(store.batches_sent(), 2);
    }

    #[tokio::test]
    async fn lookups_waiting_for_a_batch_share_the_next_one() {
        let (store, lookups) = (Store::default(), Arc::new(Lookups::new(100)));
        let (first, waiting) =
            one_in_flight_then(&store, &lookups, &[&["b"], &["c", "d"], &["e"]]).await;

        store.version.store(7, Ordering::SeqCst);
        store.gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(vec![0]));
        let answers: Vec<_> = futures::future::join_all(waiting).await;
        let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, [Ok(vec![7]), Ok(vec![7, 7]), Ok(vec![7])]);
        assert_eq!(
            *store.sent.lock().unwrap(),
            [vec!["a"], vec!["b", "c", "d", "e"]],
            "one MGET for the three that waited, their keys in order"
        );

        // Idle again: the next lookup goes out at once, alone.
        store.gate.add_permits(1);
        assert_eq!(store.lookup(&lookups, &["f"]).await.unwrap(), Ok(vec![7]));
        assert_eq!(store.batches_sent(), 3);
    }

    #[tokio::test]
    async fn lookups_whose_requests_went_away_leave_the_queue_unsent() {
        let (store, lookups) = (Store::default(), Arc::new(Lookups::new(100)));
        let (first, waiting) =
            one_in_flight_then(&store, &lookups, &[&["b"], &["c"], &["d"]]).await;
        let [gone, stays, also_gone] = <[Looking; 3]>::try_from(waiting).unwrap();
        for looking in [gone, also_gone] {
            looking.abort();
            assert!(looking.await.unwrap_err().is_cancelled());
        }

        store.gate.add_permits(2);
        first.await.unwrap().unwrap();
        assert_eq!(stays.await.unwrap(), Ok(vec![0]));
        assert_eq!(
            store.sent.lock().unwrap()[1],
            ["c"],
            "only the lookup still waiting is sent"
        );
        assert_eq!(
            lookups.waiting(),
            0,
            "nothing is kept once a batch is formed"
        );
    }

    #[tokio::test]
    async fn a_batch_carries_at_most_max_keys_unless_one_lookup_has_more() {
        let (store, lookups) = (Store::default(), Arc::new(Lookups::new(3)));
        let (first, waiting) = one_in_flight_then(
            &store,
            &lookups,
            &[&["b", "c"], &["d", "e"], &["f", "g", "h", "i"]],
        )
        .await;
        store.gate.add_permits(4);
        first.await.unwrap().unwrap();
        for answer in futures::future::join_all(waiting).await {
            answer.unwrap().unwrap();
        }
        let sizes: Vec<usize> = store.sent.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 2, 2, 4]);
    }

    #[tokio::test]
    async fn a_leader_that_goes_away_hands_its_unanswered_lookups_on() {
        let (store, lookups) = (Store::default(), Arc::new(Lookups::new(100)));
        let (first, waiting) = one_in_flight_then(&store, &lookups, &[&["b"], &["c"]]).await;
        let [second, third] = <[Looking; 2]>::try_from(waiting).unwrap();

        // The first batch answers; the second lookup leads the next batch, for itself and the
        // third, and goes away (its client left) while that batch is in flight.
        store.gate.add_permits(1);
        first.await.unwrap().unwrap();
        until(|| store.batches_sent() == 2).await;
        store.version.store(3, Ordering::SeqCst);
        second.abort();
        assert!(second.await.unwrap_err().is_cancelled());

        // The third was carried, unanswered: it is sent again, by itself, and answered.
        store.gate.add_permits(2);
        assert_eq!(third.await.unwrap(), Ok(vec![3]));
        assert_eq!(store.sent.lock().unwrap()[2], ["c"]);

        // Nothing is left waiting for a lead that never comes.
        store.gate.add_permits(1);
        assert_eq!(store.lookup(&lookups, &["d"]).await.unwrap(), Ok(vec![3]));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_lookup_and_only_its_sender_sees_the_error() {
        let (store, lookups) = (Store::default(), Arc::new(Lookups::new(100)));
        let (first, waiting) = one_in_flight_then(&store, &lookups, &[&["b"], &["c"]]).await;
        let [second, third] = <[Looking; 2]>::try_from(waiting).unwrap();

        store.fail.store(true, Ordering::SeqCst);
        store.gate.add_permits(1);
        assert_eq!(first.await.unwrap(), Ok(vec![0]), "sent before the failure");
        store.gate.add_permits(1);
        let answers = [second.await.unwrap(), third.await.unwrap()];
        assert!(
            matches!(
                answers,
                [Err(Some(_)), Err(None)] | [Err(None), Err(Some(_))]
            ),
            "one lookup sent the failed batch and reports its error: {answers:?}"
        );
        assert_eq!(store.batches_sent(), 2);
    }
}
