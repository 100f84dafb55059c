//! The chaos suite: the cache's promise (a read that began after version *n* of a record was
//! acknowledged returns *n* or newer) checked from outside, on real processes, while each fault
//! is injected with real signals. Each fault is its own run with its own Redis and database (see
//! `oponn_tests::chaos`), so runs can go concurrently.
//!
//! * `restart-empty`: Redis SIGKILLed mid-run, restarted empty on its port a second later.
//! * `older-snapshot`: Redis saved mid-run, 3 s more of workload, then SIGKILLed and restarted
//!   from the save: a failover to a replica that lagged.
//! * `pause`: Redis SIGSTOPped for 1.5 s (past the instances' 200 ms Redis timeout, within the 5 s
//!   a mutation waits for its cache write), then SIGCONT.
//! * `instance-killed`: Redis saved and SIGKILLed; writes go on through both instances for 1 s
//!   (cache writes only their instance knows are pending); instance A SIGKILLed; Redis restarted
//!   from the save; reads and writes go on through B, then A is started again.
//!
//! Each run prints one line of figures and fails on any stale read, on any instance serving
//! another version than MongoDB's once the fault is over, and on errors beyond the requests in
//! flight to an instance when it is killed. `OPONN_CHAOS_PROFILE=full` (`make chaos`) runs each
//! fault several times for at least 10,000 reads; `OPONN_CHAOS_FAULT=<name>` runs one fault.
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "test code: a failed unwrap is a failed test, and figures are printed"
)]

use std::time::{Duration, Instant};

use oponn_tests::chaos::{
    prepare, Deployment, FinalState, History, Log, ReadKind, StaleRead, Target, Workload,
    WorkloadSettings,
};

/// How many sample books the workload writes and reads: few, so that writes and reads collide.
const HOT_BOOKS: usize = 16;
/// How many of them the filtered list page returns (see `oponn_tests::chaos::Target`).
const LISTED_BOOKS: usize = 8;
/// The author the listed books are given.
const AUTHOR: &str = "Chaos Monkey";
/// How long the instances may take, once a run is over, to say they are ready with nothing
/// left to repair.
const SETTLE_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_empty_serves_no_read_older_than_an_acknowledged_write() {
    run(Fault::RestartEmpty).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_failed_over_to_an_older_snapshot_serves_no_read_older_than_an_acknowledged_write() {
    run(Fault::OlderSnapshot).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_paused_past_its_timeout_serves_no_read_older_than_an_acknowledged_write() {
    run(Fault::Pause).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_killed_with_pending_cache_writes_leaves_no_read_older_than_an_acknowledged_write(
) {
    run(Fault::InstanceKilled).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    RestartEmpty,
    OlderSnapshot,
    Pause,
    InstanceKilled,
}

impl Fault {
    const ALL: [Self; 4] = [
        Self::RestartEmpty,
        Self::OlderSnapshot,
        Self::Pause,
        Self::InstanceKilled,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::RestartEmpty => "restart-empty",
            Self::OlderSnapshot => "older-snapshot",
            Self::Pause => "pause",
            Self::InstanceKilled => "instance-killed",
        }
    }

    /// Whether `OPONN_CHAOS_FAULT` (unset or empty: every fault) selects this fault.
    fn selected(self) -> bool {
        match std::env::var("OPONN_CHAOS_FAULT") {
            Ok(name) if !name.is_empty() => {
                let known = Self::ALL.iter().any(|fault| fault.name() == name);
                assert!(known, "OPONN_CHAOS_FAULT={name:?} names no fault");
                name == self.name()
            }
            _ => true,
        }
    }

    /// Injects the fault and returns once it is over (Redis and both instances up).
    async fn inject(self, deployment: &mut Deployment) {
        let sleep = tokio::time::sleep;
        match self {
            Self::RestartEmpty => {
                deployment.redis.kill();
                sleep(Duration::from_secs(1)).await;
                deployment.redis.restart_empty().await;
            }
            Self::OlderSnapshot => {
                let snapshot = deployment.redis.snapshot().await;
                sleep(Duration::from_secs(3)).await;
                deployment.redis.kill();
                deployment.redis.restart_from(&snapshot).await;
            }
            Self::Pause => {
                deployment.redis.pause();
                sleep(Duration::from_millis(1500)).await;
                deployment.redis.resume();
            }
            Self::InstanceKilled => {
                let snapshot = deployment.redis.snapshot().await;
                deployment.redis.kill();
                sleep(Duration::from_secs(1)).await;
                deployment.kill_instance(0).await;
                deployment.redis.restart_from(&snapshot).await;
                sleep(Duration::from_secs(1)).await;
                deployment.start_instance(0).await;
            }
        }
    }

    /// How many reads and writes may fail over `faults` injections. Only killing an instance
    /// fails requests: those in flight to it, at most one per worker (the workload sends no
    /// new ones to an instance it knows is down). A dead or stopped Redis must fail nothing:
    /// reads fall back to MongoDB and writes outlast it.
    fn error_bounds(self, settings: WorkloadSettings, faults: usize) -> (usize, usize) {
        match self {
            Self::InstanceKilled => (settings.readers * faults, settings.all_writers() * faults),
            _ => (0, 0),
        }
    }
}

/// How long and how hard a run goes: `OPONN_CHAOS_PROFILE` is `short` (the default, for
/// `cargo test`) or `full` (`make chaos`).
#[derive(Debug, Clone, Copy)]
struct Profile {
    workload: WorkloadSettings,
    /// Workload before the first fault.
    warm_up: Duration,
    /// Workload after each fault is over.
    recovery: Duration,
    /// How many times the fault is injected.
    faults: usize,
    /// After its last recovery, the run goes on until the readers have this many reads...
    reads: usize,
    /// ...or this long has passed since the run started.
    time_bound: Duration,
}

impl Profile {
    fn from_env() -> Self {
        match std::env::var("OPONN_CHAOS_PROFILE").as_deref() {
            Ok("full") => Self {
                workload: WorkloadSettings {
                    writers: 4,
                    write_interval: Duration::from_millis(200),
                    listed_writers: 1,
                    readers: 8,
                    requests_per_worker: 50_000,
                },
                warm_up: Duration::from_secs(5),
                recovery: Duration::from_secs(3),
                faults: 5,
                reads: 10_000,
                time_bound: Duration::from_secs(90),
            },
            Ok("short") | Err(_) => Self {
                workload: WorkloadSettings {
                    writers: 3,
                    write_interval: Duration::from_millis(150),
                    listed_writers: 1,
                    readers: 4,
                    requests_per_worker: 5_000,
                },
                warm_up: Duration::from_millis(1500),
                recovery: Duration::from_secs(2),
                faults: 1,
                reads: 0,
                time_bound: Duration::from_secs(30),
            },
            Ok(other) => panic!("OPONN_CHAOS_PROFILE is short or full, not {other:?}"),
        }
    }
}

async fn run(fault: Fault) {
    if !fault.selected() {
        return;
    }
    let profile = Profile::from_env();
    let started = Instant::now();
    let mut deployment = Deployment::start().await;
    let mut ids = deployment.environment().sample_ids().await;
    ids.sort();
    ids.truncate(HOT_BOOKS);
    let target = Target::new(deployment.routes(), ids.clone(), LISTED_BOOKS, AUTHOR);
    let prepared = prepare(&target).await;

    let workload = Workload::start(&target, profile.workload);
    tokio::time::sleep(profile.warm_up).await;
    for _ in 0..profile.faults {
        fault.inject(&mut deployment).await;
        tokio::time::sleep(profile.recovery).await;
    }
    let left = profile.time_bound.saturating_sub(started.elapsed());
    let _ = tokio::time::timeout(left, workload.reads_reached(profile.reads)).await;
    let mut log = workload.stop().await;
    log.acks.extend(prepared);

    let settled = deployment.wait_until_settled(SETTLE_BOUND).await;
    let final_state = deployment.final_state(&ids).await;
    let stale = History::new(&log.acks).stale_reads(&log.reads);
    let report = Report {
        fault,
        log: &log,
        stale: &stale,
        final_state: &final_state,
        settled,
        seconds: started.elapsed().as_secs_f64(),
    };
    println!("{}", report.figures());
    report.print_details(started);
    let (read_bound, write_bound) = fault.error_bounds(profile.workload, profile.faults);
    let mut failures = report.failures(read_bound, write_bound, LISTED_BOOKS);
    if log.reads.len() < profile.reads {
        failures.push(format!(
            "{} reads checked, fewer than the profile's {} within {:?}",
            log.reads.len(),
            profile.reads,
            profile.time_bound
        ));
    }
    assert!(
        failures.is_empty(),
        "{}: {}",
        fault.name(),
        failures.join("; ")
    );
}

/// What one run saw.
struct Report<'a> {
    fault: Fault,
    log: &'a Log,
    stale: &'a [StaleRead],
    final_state: &'a FinalState,
    settled: Option<Duration>,
    seconds: f64,
}

impl Report<'_> {
    /// The run's one line of figures.
    fn figures(&self) -> String {
        let settled = self.settled.map_or_else(
            || "never".to_owned(),
            |after| format!("{:.1}s", after.as_secs_f64()),
        );
        format!(
            "chaos fault={} reads={} writes={} stale_reads={} read_errors={} write_errors={} \
             final_mismatches={} older_redis_entries={} settled_after={settled} seconds={:.1}",
            self.fault.name(),
            self.log.reads.len(),
            self.log.acks.len(),
            self.stale.len(),
            self.log.read_errors.len(),
            self.log.write_errors.len(),
            self.final_state.mismatches.len(),
            self.final_state.older_cache_entries,
            self.seconds,
        )
    }

    /// A few examples of whatever went wrong, to start debugging from.
    fn print_details(&self, started: Instant) {
        for stale in self.stale.iter().take(3) {
            let read = &stale.read;
            println!(
                "  stale: {:?} through instance {} at {:.3}s returned (id, version, acknowledged \
                 before) {:?}",
                read.kind,
                read.instance,
                read.began.duration_since(started).as_secs_f64(),
                stale.records,
            );
        }
        let kinds = [ReadKind::Book, ReadKind::BooksByIds, ReadKind::List];
        if !self.stale.is_empty() {
            let per_kind = kinds.map(|kind| {
                let count = self.stale.iter().filter(|s| s.read.kind == kind).count();
                format!("{kind:?}={count}")
            });
            println!("  stale reads per kind: {}", per_kind.join(" "));
        }
        let errors = self.log.read_errors.iter().chain(&self.log.write_errors);
        for error in errors.take(3) {
            println!("  error: {error}");
        }
        for (instance, id, served, stored) in self.final_state.mismatches.iter().take(3) {
            println!("  final: instance {instance} serves {id} at {served}, MongoDB has {stored}");
        }
    }

    /// Why the run fails, if it does.
    fn failures(&self, read_bound: usize, write_bound: usize, listed: usize) -> Vec<String> {
        let mut failures = Vec::new();
        if !self.stale.is_empty() {
            failures.push(format!("{} stale reads", self.stale.len()));
        }
        if !self.final_state.mismatches.is_empty() {
            failures.push(format!(
                "{} final mismatches with MongoDB",
                self.final_state.mismatches.len()
            ));
        }
        if self.log.read_errors.len() > read_bound {
            failures.push(format!(
                "{} read errors (at most {read_bound})",
                self.log.read_errors.len()
            ));
        }
        if self.log.write_errors.len() > write_bound {
            failures.push(format!(
                "{} write errors (at most {write_bound})",
                self.log.write_errors.len()
            ));
        }
        // A run that checked nothing passes trivially: every kind of read must have been
        // checked, and the list page must have held every listed book.
        for kind in [ReadKind::Book, ReadKind::BooksByIds, ReadKind::List] {
            if !self.log.reads.iter().any(|read| read.kind == kind) {
                failures.push(format!("no {kind:?} read succeeded"));
            }
        }
        let full_page = self
            .log
            .reads
            .iter()
            .any(|read| read.kind == ReadKind::List && read.versions.len() == listed);
        if !full_page {
            failures.push("no list page held every listed book".to_owned());
        }
        failures
    }
}
