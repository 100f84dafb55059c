//! The service's data path, read through its load balancer: `verify`'s last step.
//!
//! Healthy targets only say that each task answers `/healthz`, which the load balancer checks
//! on purpose without touching MongoDB or Redis (an outage of one must not take every task
//! out). Whether the tasks reach their data is what the public `/readyz` says: a word per
//! dependency (`{"status":"ready","mongodb":"ok","redis":"ok"}`, and `queue` with
//! write-behind), 200 only when all are fine, else 503. The app answers it from a snapshot
//! refreshed at most once a second, so a few retries cover a task that started a moment ago;
//! what stays broken is reported by name ([`DeployError::DataPath`]), with where to look.
//!
//! An image older than the public `/readyz` answers 404: that is a warning, not a failure.

use std::time::Duration;

use serde::Deserialize;

use crate::{console::Console, error::DeployError, pace::Pace};

/// How many times `/readyz` is read before its answer stands.
const ATTEMPTS: u32 = 6;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The public `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Readiness {
    pub status: String,
    pub mongodb: String,
    pub redis: String,
    pub queue: Option<String>,
}

impl Readiness {
    /// `(component, state)` for every component that is not `ok`.
    pub fn broken(&self) -> Vec<(&'static str, &str)> {
        let mut components = vec![
            ("MongoDB", self.mongodb.as_str()),
            ("Redis", self.redis.as_str()),
        ];
        if let Some(queue) = &self.queue {
            components.push(("the write-behind queue", queue.as_str()));
        }
        components
            .into_iter()
            .filter(|(_, state)| *state != "ok")
            .collect()
    }
}

/// One reading of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    Ready(Readiness),
    Broken(Readiness),
    /// 404: the running image predates the public `/readyz`.
    NotServed,
    /// No answer, or one that is not the `/readyz` body (a proxy's error page).
    Unreadable(String),
}

/// Reads `<url>/readyz` until it says ready, at most [`ATTEMPTS`] times `pace.interval`
/// apart, printing each new answer; the last answer decides.
pub async fn check(url: &str, console: &Console, pace: Pace) -> Result<(), DeployError> {
    let endpoint = format!("{}/readyz", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|error| DeployError::Unhealthy {
            what: endpoint.clone(),
            detail: format!("cannot build an HTTP client: {error}"),
        })?;
    let mut last_line = String::new();
    let mut reading = Reading::Unreadable("not read".into());
    for attempt in 1..=ATTEMPTS {
        reading = read(&client, &endpoint).await;
        let line = describe(&reading);
        if line != last_line {
            console.line(format!("  readyz: {line}"));
            last_line = line;
        }
        if matches!(reading, Reading::Ready(_) | Reading::NotServed) || attempt == ATTEMPTS {
            break;
        }
        tokio::time::sleep(pace.interval).await;
    }
    match reading {
        Reading::Ready(_) => Ok(()),
        Reading::NotServed => {
            console.line(format!(
                "  WARNING: {endpoint} answered 404: the running image predates the public \
                 /readyz, so the data path was not checked (the next release serves it)"
            ));
            Ok(())
        }
        Reading::Broken(readiness) => Err(data_path(&endpoint, &readiness)),
        Reading::Unreadable(detail) => Err(DeployError::Unhealthy {
            what: endpoint,
            detail,
        }),
    }
}

async fn read(client: &reqwest::Client, endpoint: &str) -> Reading {
    let response = match client.get(endpoint).send().await {
        Ok(response) => response,
        Err(error) => return Reading::Unreadable(unreachable(&crate::error::causes(&error))),
    };
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Reading::NotServed;
    }
    match response.json::<Readiness>().await {
        Ok(readiness) if status.is_success() && readiness.broken().is_empty() => {
            Reading::Ready(readiness)
        }
        Ok(readiness) if !readiness.broken().is_empty() => Reading::Broken(readiness),
        Ok(readiness) => Reading::Unreadable(format!(
            "HTTP {status} with status {:?} and every component ok",
            readiness.status
        )),
        Err(_) => Reading::Unreadable(format!("HTTP {status}, not a /readyz answer")),
    }
}

/// Why `/readyz` could not be read, with the likely fix when the TLS handshake refused the
/// certificate: a certificate of your own serves the name it covers, not the load balancer's
/// (deployer/README.md, "HTTPS").
fn unreachable(causes: &str) -> String {
    if causes.to_lowercase().contains("certificate") {
        format!(
            "{causes}; if the certificate is your own (certificate_arn), set [service] domain to \
             the name it covers, so that the Url output is that name"
        )
    } else {
        causes.to_owned()
    }
}

fn describe(reading: &Reading) -> String {
    match reading {
        Reading::Ready(readiness) => format!(
            "{} (MongoDB ok, Redis ok{})",
            readiness.status,
            readiness
                .queue
                .as_ref()
                .map(|queue| format!(", queue {queue}"))
                .unwrap_or_default()
        ),
        Reading::Broken(readiness) => readiness
            .broken()
            .iter()
            .map(|(component, state)| format!("{component} {state}"))
            .collect::<Vec<_>>()
            .join(", "),
        Reading::NotServed => "not served (404)".into(),
        Reading::Unreadable(detail) => format!("no answer ({detail})"),
    }
}

/// The error naming each broken component, with where to look for each.
fn data_path(endpoint: &str, readiness: &Readiness) -> DeployError {
    let broken = readiness.broken();
    let down = broken
        .iter()
        .map(|(component, state)| format!("{component} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    let advice = broken
        .iter()
        .map(|(component, _)| {
            let hint = match *component {
                "MongoDB" => {
                    "the secrets.mongodb_uri secret's URI, and that the database allows the \
                     instances' address (MongoDB Atlas: with [network] nat = true, the network \
                     stack's NatPublicIp output; deployer/README.md, \"Reaching MongoDB Atlas\")"
                }
                "Redis" => {
                    "the Redis URL secret (secrets.redis_url, or the cache stack's), and that \
                     the Redis admits the instances' security group"
                }
                _ => "`deployer logs`: the worker's errors say why changes are not persisted",
            };
            format!("\n  {component}: check {hint}")
        })
        .collect::<String>();
    DeployError::DataPath {
        endpoint: endpoint.to_owned(),
        down,
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readiness(mongodb: &str, redis: &str, queue: Option<&str>) -> Readiness {
        Readiness {
            status: "unavailable".into(),
            mongodb: mongodb.into(),
            redis: redis.into(),
            queue: queue.map(Into::into),
        }
    }

    #[test]
    fn every_component_not_ok_is_named() {
        assert!(readiness("ok", "ok", None).broken().is_empty());
        assert_eq!(
            readiness("down", "ok", None).broken(),
            [("MongoDB", "down")]
        );
        assert_eq!(
            readiness("ok", "down", Some("lagging")).broken(),
            [("Redis", "down"), ("the write-behind queue", "lagging")]
        );
    }

    #[test]
    fn a_refused_certificate_says_to_name_the_domain_it_covers() {
        let detail =
            unreachable("error sending request: invalid peer certificate: NotValidForName");
        assert!(detail.contains("set [service] domain"), "{detail}");
        assert_eq!(unreachable("connection refused"), "connection refused");
    }

    #[test]
    fn the_error_names_the_broken_component_and_where_to_look() {
        let error = data_path("http://lb/readyz", &readiness("down", "ok", None)).to_string();
        assert!(error.contains("MongoDB down"), "{error}");
        assert!(error.contains("NatPublicIp"), "{error}");
        assert!(!error.contains("Redis:"), "{error}");
    }
}
