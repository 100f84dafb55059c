//! After a Redis failure the cache is bypassed for a cool-down, so a dead Redis costs one
//! timeout, not one per request. The next call after the cool-down tries Redis again.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

pub(super) struct Breaker {
    open_until: Mutex<Option<Instant>>,
    cool_down: Duration,
}

impl Breaker {
    pub(super) fn new(cool_down: Duration) -> Self {
        Self {
            open_until: Mutex::new(None),
            cool_down,
        }
    }

    /// Whether Redis may be called now.
    pub(super) fn allows(&self) -> bool {
        let open_until = *self
            .open_until
            .lock()
            .expect("breaker lock is never poisoned");
        open_until.is_none_or(|until| Instant::now() >= until)
    }

    pub(super) fn trip(&self) {
        *self
            .open_until
            .lock()
            .expect("breaker lock is never poisoned") = Some(Instant::now() + self.cool_down);
    }

    pub(super) fn reset(&self) {
        *self
            .open_until
            .lock()
            .expect("breaker lock is never poisoned") = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tripped_breaker_reopens_after_the_cool_down() {
        let breaker = Breaker::new(Duration::from_secs(1));
        assert!(breaker.allows());
        breaker.trip();
        assert!(!breaker.allows());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!breaker.allows());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(breaker.allows());
    }
}
