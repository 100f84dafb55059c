//! A value that is expensive to compute (a readiness probe: a MongoDB and a Redis round
//! trip), shared by every request of the process and recomputed at most once per interval.
//!
//! Invariants:
//! * at most one computation runs at a time (single flight): the lock is held across it, so
//!   requests arriving meanwhile wait for its result instead of starting their own;
//! * a value is served while younger than the interval, counted from when its computation
//!   ended, so the rate of computations is bounded whatever the rate of requests.
//!
//! A computation cancelled half-way (its request dropped) leaves the previous value in place,
//! and the next request computes again.

use std::{future::Future, time::Duration};

use tokio::{sync::Mutex, time::Instant};

pub struct Snapshot<T> {
    every: Duration,
    latest: Mutex<Option<(Instant, T)>>,
}

impl<T: Clone> Snapshot<T> {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            latest: Mutex::new(None),
        }
    }

    /// The current value, or a fresh one from `compute` when there is none younger than the
    /// interval.
    pub async fn get_or_refresh<F, Fut>(&self, compute: F) -> T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut latest = self.latest.lock().await;
        if let Some((taken, value)) = latest.as_ref() {
            if taken.elapsed() < self.every {
                return value.clone();
            }
        }
        let value = compute().await;
        *latest = Some((Instant::now(), value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use super::*;

    async fn slow_count(computed: &AtomicU32) -> u32 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        computed.fetch_add(1, Ordering::SeqCst) + 1
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_readers_share_one_computation() {
        let snapshot = Arc::new(Snapshot::new(Duration::from_secs(1)));
        let computed = Arc::new(AtomicU32::new(0));
        let readers: Vec<_> = (0..100)
            .map(|_| {
                let (snapshot, computed) = (snapshot.clone(), computed.clone());
                tokio::spawn(async move { snapshot.get_or_refresh(|| slow_count(&computed)).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(
                reader.await.expect("reader"),
                1,
                "every reader got the one value"
            );
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_value_is_computed_again_only_once_the_interval_has_passed() {
        let snapshot = Snapshot::new(Duration::from_secs(1));
        let computed = AtomicU32::new(0);
        assert_eq!(snapshot.get_or_refresh(|| slow_count(&computed)).await, 1);
        tokio::time::advance(Duration::from_millis(900)).await;
        assert_eq!(snapshot.get_or_refresh(|| slow_count(&computed)).await, 1);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(snapshot.get_or_refresh(|| slow_count(&computed)).await, 2);
        assert_eq!(computed.load(Ordering::SeqCst), 2);
    }
}
