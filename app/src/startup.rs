//! Building and running the service: settings in, a bound listener and a router out.
//!
//! [`Application::build`] binds the public port and the operations port (use `127.0.0.1:0` in
//! tests and read [`Application::port`] and [`Application::ops_port`]), connects MongoDB and
//! Redis lazily, creates indexes, and wires the routers. [`Application::run_until`] serves until the given future resolves, then stops taking
//! new connections and lets in-flight requests finish (ECS sends SIGTERM before it kills).

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    cache::Cache,
    config::{QueueKind, Settings, SqsSettings, WriteMode, WriteSettings},
    datastore::{AuditCursor, Behind, Datastore},
    graphql::{build_schema, persisted::PersistedQueries},
    http::{ops_router, router, AppState, PublicReadiness, Shared, Tokens, PUBLIC_READINESS_EVERY},
    metrics::Metrics,
    queue::{
        sqs::{Sqs, SqsQueueSettings},
        streams::{RedisStreams, StreamSettings},
        Queue,
    },
    store::Store,
    worker::Worker,
};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    ops_listener: TcpListener,
    ops_router: axum::Router,
    datastore: Datastore,
    metrics: Metrics,
    /// How long a stopping server keeps trying to hand its pending cache repairs to Redis.
    settle: Duration,
    writes: WriteSettings,
    /// Whether this process also runs the write-behind worker (`serve --with-worker`).
    with_worker: bool,
    /// How often the consistency sampler runs, and how many records of each entity it takes.
    audit: (Duration, usize),
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let metrics = Metrics::new();
        let datastore = connect(&settings, &metrics).await?;
        datastore
            .store()
            .ensure_indexes()
            .await
            .context("creating MongoDB indexes (is MongoDB reachable?)")?;
        if settings.api_tokens.is_empty() {
            tracing::warn!("OPONN_API_TOKENS is empty: every mutation will be refused");
        }
        let persisted = match &settings.http.safelist {
            Some(path) => {
                let safelist = PersistedQueries::safelist(path).context("OPONN_SAFELIST")?;
                tracing::info!(path = %path.display(), "safelist mode: only its documents run");
                safelist
            }
            None => PersistedQueries::default(),
        };
        let state = AppState::new(Shared {
            schema: build_schema(datastore.clone(), &settings.http),
            datastore: datastore.clone(),
            metrics: metrics.clone(),
            tokens: Arc::new(Tokens::new(settings.api_tokens.clone())),
            settings: Arc::new(settings.http.clone()),
            persisted,
            lag_degraded: settings.writes.lag_degraded,
            readiness: Arc::new(PublicReadiness::new(PUBLIC_READINESS_EVERY)),
        });
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let ops_listener = TcpListener::bind(settings.ops_listen)
            .await
            .with_context(|| format!("binding {} (OPONN_OPS_LISTEN)", settings.ops_listen))?;
        Ok(Self {
            listener,
            router: router(state.clone()),
            ops_listener,
            ops_router: ops_router(state),
            datastore,
            metrics,
            settle: settings.cache.settle,
            writes: settings.writes.clone(),
            with_worker: false,
            audit: (settings.cache.audit_every, settings.cache.audit_sample),
        })
    }

    /// Also runs the write-behind worker in this process (`serve --with-worker`); in
    /// write-through mode there is nothing for it to do and it is not started.
    pub fn with_worker(mut self) -> Self {
        self.with_worker = true;
        self
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// The operations server's port (`/metrics`, `/readyz`).
    pub fn ops_port(&self) -> u16 {
        self.ops_listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    pub fn datastore(&self) -> &Datastore {
        &self.datastore
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            ops_listener,
            ops_router,
            datastore,
            settle,
            metrics,
            writes,
            with_worker,
            audit,
        } = self;
        let repairs = tokio::spawn(datastore.cache().clone().run_repairs());
        let sampler = (!audit.0.is_zero()).then(|| {
            tokio::spawn(sample_consistency(
                datastore.clone(),
                metrics.clone(),
                audit.0,
                audit.1,
            ))
        });
        // The worker stops after the HTTP server has drained: the last mutations get persisted.
        let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = match datastore.queue().filter(|_| with_worker) {
            Some(queue) => {
                let worker = Worker::new(
                    queue,
                    datastore.cache().clone(),
                    datastore.store().clone(),
                    writes,
                    metrics,
                );
                Some(tokio::spawn(async move {
                    worker
                        .run(async move {
                            let _ = worker_stopped.await;
                        })
                        .await
                }))
            }
            None => None,
        };
        let ops_address = ops_listener.local_addr()?;
        // The operations server lives as long as the public one; it needs no draining.
        let ops = tokio::spawn(async move {
            if let Err(error) = axum::serve(ops_listener, ops_router).await {
                tracing::error!(%error, "the operations server stopped");
            }
        });
        tracing::info!(
            address = %listener.local_addr()?,
            %ops_address,
            "serving"
        );
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_worker.send(());
        if let Some(worker) = worker {
            if let Err(error) = worker.await {
                tracing::error!(%error, "the write-behind worker failed");
            }
        }
        repairs.abort();
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        // Pending repairs live in this process: hand them to Redis before it ends, or say
        // what is left (the records stay right in MongoDB; see `Cache::settle`).
        match datastore.cache().settle(settle).await {
            Ok(()) => {}
            Err(unsettled) => tracing::error!(
                error = %unsettled,
                "stopping with cache writes Redis did not take"
            ),
        }
        ops.abort();
        tracing::info!("stopped");
        served.context("serving HTTP")
    }
}

/// The datastore for `settings`: MongoDB and Redis clients, both connecting lazily; in
/// write-behind mode also the queue, which needs Redis now (see [`open_queue`]).
pub async fn connect(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Datastore> {
    let store = Store::connect(&settings.mongodb, metrics)
        .await
        .context("configuring the MongoDB client")?;
    let cache = Arc::new(
        Cache::connect(&settings.redis, &settings.cache, metrics)
            .context("configuring the Redis client")?,
    );
    let datastore = Datastore::new(store, cache.clone());
    if settings.writes.mode == WriteMode::Through {
        return Ok(datastore);
    }
    let queue = open_queue(settings, &cache).await?;
    Ok(datastore.writing_behind(Behind::new(queue, settings.writes.barrier)))
}

/// The write-behind queue (`OPONN_QUEUE`): refuses a Redis that may evict pending records,
/// warns about one without an append-only file, then opens the Redis stream (creating its
/// consumer group) or SQS (checking that both queues answer).
pub async fn open_queue(settings: &Settings, cache: &Cache) -> anyhow::Result<Arc<dyn Queue>> {
    let durability = cache
        .durability()
        .await
        .context("write-behind needs Redis at start-up (reading INFO memory and persistence)")?;
    if let Some(refusal) = durability.refusal() {
        anyhow::bail!(refusal);
    }
    if !durability.append_only {
        tracing::warn!(
            "write-behind on a Redis without an append-only file: a Redis restart loses every \
             acknowledged write the worker has not persisted yet (see README, Write-behind)"
        );
    }
    let client = crate::cache::redis_client(&settings.redis)
        .context("configuring the Redis client for the queue")?;
    match &settings.writes.queue {
        QueueKind::Redis => {
            let streams = RedisStreams::new(
                client,
                StreamSettings {
                    key: format!("{}{}", settings.cache.key_prefix, settings.writes.stream),
                    consumer: consumer_name(),
                    timeout: settings.redis.write_timeout,
                    claim_idle: settings.writes.claim_idle,
                    max_deliveries: settings.writes.max_deliveries,
                },
            );
            streams
                .ensure_group()
                .await
                .context("creating the write-behind consumer group")?;
            Ok(Arc::new(streams))
        }
        QueueKind::Sqs(sqs) => open_sqs(settings, sqs, client).await,
    }
}

/// The SQS queue, its endpoint, region and credentials from the AWS SDK's chain.
async fn open_sqs(
    settings: &Settings,
    sqs: &SqsSettings,
    redis: redis::Client,
) -> anyhow::Result<Arc<dyn Queue>> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(settings.redis.write_timeout)
        .build();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let queue = Sqs::new(
        aws_sdk_sqs::Client::new(&sdk),
        redis,
        SqsQueueSettings {
            queue_url: sqs.queue_url.clone(),
            dead_letter_url: sqs.dead_letter_url.clone(),
            queued_key: format!("{}queued", settings.cache.key_prefix),
            timeout: settings.redis.write_timeout,
            visibility: settings.writes.claim_idle,
        },
    );
    queue
        .check()
        .await
        .context("write-behind on SQS: the queues do not answer (OPONN_SQS_QUEUE_URL, OPONN_SQS_DEAD_LETTER_URL, AWS credentials and region)")?;
    Ok(Arc::new(queue))
}

/// A consumer name no other process has: host, process id and a random suffix.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "oponn".into());
    format!("{host}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// Runs the write-behind worker until `stop` resolves (`oponn worker`).
pub async fn run_worker(
    settings: Settings,
    stop: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if settings.writes.mode != WriteMode::Behind {
        anyhow::bail!("oponn worker needs OPONN_WRITE_MODE=behind");
    }
    let metrics = Metrics::new();
    let datastore = connect(&settings, &metrics).await?;
    let queue = datastore.queue().expect("write-behind mode opens a queue");
    let ops_listener = TcpListener::bind(settings.ops_listen)
        .await
        .with_context(|| format!("binding {} (OPONN_OPS_LISTEN)", settings.ops_listen))?;
    let ops_address = ops_listener.local_addr()?;
    let ops = tokio::spawn(crate::http::worker_ops(ops_listener, metrics.clone()));
    tracing::info!(%ops_address, "worker serving /metrics");
    Worker::new(
        queue,
        datastore.cache().clone(),
        datastore.store().clone(),
        settings.writes,
        metrics,
    )
    .run(stop)
    .await;
    ops.abort();
    Ok(())
}

/// The consistency sampler: every `every`, about `count` cached records of each entity
/// compared with MongoDB (see `datastore::audit`), into the metrics.
async fn sample_consistency(datastore: Datastore, metrics: Metrics, every: Duration, count: usize) {
    let mut cursor = AuditCursor::default();
    loop {
        tokio::time::sleep(every).await;
        match datastore.audit_step(&mut cursor, count).await {
            Ok(audited) => {
                for (entity, checked) in &audited.checked {
                    metrics
                        .audit_checked
                        .with_label_values(&[entity])
                        .inc_by(*checked as u64);
                }
                for finding in &audited.findings {
                    tracing::error!(?finding, "the cache and MongoDB disagree");
                    metrics
                        .cache_inconsistent
                        .with_label_values(&[finding.entity, finding.kind.label()])
                        .inc();
                }
            }
            Err(error) => tracing::debug!(%error, "consistency sample skipped"),
        }
    }
}

/// Resolves on SIGTERM (what ECS sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
