//! The pace: at most `rate` requests started per second, across every task sharing the client.
//!
//! Each caller reserves the next free start time, then sleeps until it; reservations are spaced
//! by `1 / rate` and never overlap, so a burst of callers is spread out rather than let through.
//! The clock is tokio's, so tests can run it paused.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

pub struct Pace {
    /// `None`: no limit.
    interval: Option<Duration>,
    next_start: Mutex<Instant>,
}

impl Pace {
    /// `rate_per_second` of 0 means no limit.
    pub fn new(rate_per_second: f64) -> Self {
        let interval =
            (rate_per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / rate_per_second));
        Self {
            interval,
            next_start: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's turn.
    pub async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let start = {
            // A poisoned lock only means another caller panicked mid-update of an Instant,
            // which cannot leave it inconsistent.
            let mut next_start = self
                .next_start
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let start = (*next_start).max(Instant::now());
            *next_start = start + interval;
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn callers_are_spaced_by_the_interval() {
        let pace = Pace::new(10.0);
        let started = Instant::now();
        for _ in 0..5 {
            pace.wait().await;
        }
        // The first goes at once, the next four 100 ms apart.
        assert_eq!(started.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_pace() {
        let pace = std::sync::Arc::new(Pace::new(4.0));
        let started = Instant::now();
        let waits: Vec<_> = (0..4)
            .map(|_| {
                let pace = pace.clone();
                tokio::spawn(async move { pace.wait().await })
            })
            .collect();
        for wait in waits {
            wait.await.expect("no panic");
        }
        assert_eq!(started.elapsed(), Duration::from_millis(750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_of_zero_never_waits() {
        let pace = Pace::new(0.0);
        let started = Instant::now();
        for _ in 0..100 {
            pace.wait().await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
