//! How often to poll and how long to wait, for every wait on AWS (stack operations, service
//! deployments, pipeline runs). Tests poll without pause.

use std::time::Duration;

use crate::error::DeployError;

#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Pace {
    pub const AWS: Pace = Pace {
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(45 * 60),
    };

    /// No pause between polls (test doubles answer at once; moto is in-process fast).
    pub fn immediate(timeout: Duration) -> Self {
        Self {
            interval: Duration::from_millis(1),
            timeout,
        }
    }

    pub fn deadline(&self) -> Deadline {
        Deadline {
            pace: *self,
            start: tokio::time::Instant::now(),
        }
    }
}

pub struct Deadline {
    pace: Pace,
    start: tokio::time::Instant,
}

impl Deadline {
    /// Waits one interval, or fails once the timeout has passed.
    pub async fn tick(&self, what: impl FnOnce() -> String) -> Result<(), DeployError> {
        if self.start.elapsed() >= self.pace.timeout {
            return Err(DeployError::Timeout {
                what: what(),
                after: self.pace.timeout,
            });
        }
        tokio::time::sleep(self.pace.interval).await;
        Ok(())
    }
}
