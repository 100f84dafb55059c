//! When to retry and how long to wait: exponential backoff with jitter, and `Retry-After`.
//!
//! The n-th retry (from 0) waits a random time in `[d/2, d]` where `d = backoff * 2^n`, capped
//! at `max_backoff`: the doubling backs off from a struggling server, the jitter keeps clients
//! that failed together from retrying together. A `Retry-After` from the server is a floor: we
//! never come back sooner than asked. One longer than `max_backoff` is not waited out; the page
//! fails instead, and says so.

use std::time::{Duration, SystemTime};

/// The backoff policy of one client.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

/// The server asked for a wait longer than the policy allows.
#[derive(Debug, PartialEq, Eq)]
pub struct WaitTooLong(pub Duration);

impl Backoff {
    /// The wait before retry number `retry` (0 for the first), at least `retry_after`.
    pub fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
    ) -> Result<Duration, WaitTooLong> {
        if let Some(asked) = retry_after.filter(|asked| *asked > self.max) {
            return Err(WaitTooLong(asked));
        }
        let exponential = self
            .base
            .saturating_mul(2_u32.saturating_pow(retry))
            .min(self.max);
        let half = exponential / 2;
        let jittered = half + half.mul_f64(fastrand::f64());
        Ok(jittered.max(retry_after.unwrap_or_default()))
    }
}

/// Reads a `Retry-After` value: delay-seconds, or an HTTP date (RFC 9110, 10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };

    #[test]
    fn delays_double_with_jitter_and_stop_at_the_cap() {
        for (retry, full) in [(0, 100), (1, 200), (2, 400), (5, 2_000), (40, 2_000)] {
            let full = Duration::from_millis(full);
            for _ in 0..50 {
                let delay = POLICY.delay(retry, None).expect("no Retry-After");
                assert!(
                    delay >= full / 2 && delay <= full,
                    "retry {retry}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_a_floor() {
        let delay = POLICY
            .delay(0, Some(Duration::from_secs(1)))
            .expect("within the cap");
        assert!(delay >= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_beyond_the_cap_is_refused() {
        assert_eq!(
            POLICY.delay(0, Some(Duration::from_secs(3600))),
            Err(WaitTooLong(Duration::from_secs(3600)))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
