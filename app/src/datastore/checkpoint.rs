//! Pause points: a test seam for forcing interleavings deterministically.
//!
//! A test arms a point; the next task to pass it signals "reached" and waits until the test
//! resumes it. Unarmed points cost one uncontended lock. This is how the no-stale-fill test
//! holds a reader between its MongoDB read and its cache fill while a writer commits.
//!
//! Compiled with the `test-hooks` feature only, which every test build of this package turns
//! on; the service's build has the empty `Checkpoints` in `datastore/mod.rs` instead: no lock,
//! and no way to stop a reader.

use std::sync::Mutex;

use tokio::sync::oneshot;

#[derive(Default)]
pub struct Checkpoints {
    before_fill: Point,
    before_result_fill: Point,
}

/// One pause point, armed for at most one passing task.
#[derive(Default)]
struct Point(Mutex<Option<Pause>>);

struct Pause {
    reached: oneshot::Sender<()>,
    resume: oneshot::Receiver<()>,
}

/// The test's side of an armed pause point.
pub struct PauseHandle {
    reached: oneshot::Receiver<()>,
    resume: oneshot::Sender<()>,
}

impl Checkpoints {
    /// Arms the point between a read's MongoDB query and its entity-cache fill, for the next
    /// read.
    pub fn pause_before_fill(&self) -> PauseHandle {
        self.before_fill.arm()
    }

    /// Arms the point between a list query's MongoDB query and its result-cache fill, for the
    /// next list query that misses.
    pub fn pause_before_result_fill(&self) -> PauseHandle {
        self.before_result_fill.arm()
    }

    pub(super) async fn before_fill(&self) {
        self.before_fill.pass().await;
    }

    pub(super) async fn before_result_fill(&self) {
        self.before_result_fill.pass().await;
    }
}

impl Point {
    fn arm(&self) -> PauseHandle {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        *self.0.lock().expect("checkpoint lock is never poisoned") = Some(Pause {
            reached: reached_tx,
            resume: resume_rx,
        });
        PauseHandle {
            reached: reached_rx,
            resume: resume_tx,
        }
    }

    async fn pass(&self) {
        let armed = self
            .0
            .lock()
            .expect("checkpoint lock is never poisoned")
            .take();
        if let Some(pause) = armed {
            let _ = pause.reached.send(());
            // A dropped handle resumes the task rather than leaving it stuck.
            let _ = pause.resume.await;
        }
    }
}

impl PauseHandle {
    /// Resolves when a task has reached the point and is waiting.
    pub async fn reached(&mut self) {
        (&mut self.reached)
            .await
            .expect("the paused task holds the sender until it has signalled");
    }

    /// Resolves when the paused task was dropped while it waited (its work cancelled).
    pub async fn abandoned(&mut self) {
        self.resume.closed().await;
    }

    /// Lets the paused task go on.
    pub fn resume(self) {
        let _ = self.resume.send(());
    }
}
