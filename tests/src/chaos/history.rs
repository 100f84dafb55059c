//! The checker: which reads returned a record older than a write acknowledged before they began.
//!
//! Every instant comes from one monotonic clock in the test process, and each is taken on the
//! side that can only make the check more lenient: a read's start just *before* its request is
//! sent, a write's acknowledgement just *after* its whole response arrived. So a read flagged
//! here really began after the write was acknowledged; scheduling delays in the test process can
//! hide a stale read, never invent one.
//!
//! Per record, the acknowledged versions are sorted by acknowledgement instant with their running
//! maximum (concurrent writers can be acknowledged out of version order); a read's start is then
//! binary-searched in them to find the newest version it must see.

use std::{collections::HashMap, time::Instant};

/// A write the service acknowledged: `id` is at `version` or newer from `at` on.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: String,
    pub version: i64,
    pub at: Instant,
}

/// Which query a read ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// `book(id)`.
    Book,
    /// `booksByIds(ids)` over the hot set.
    BooksByIds,
    /// A filtered `books(filter, first)` page: the query-result cache's path.
    List,
}

/// A read that succeeded: when it began, through which instance, and the versions it returned.
#[derive(Debug, Clone)]
pub struct Read {
    pub began: Instant,
    pub kind: ReadKind,
    pub instance: usize,
    pub versions: Vec<(String, i64)>,
}

/// A read that returned at least one record older than an acknowledged write.
#[derive(Debug, Clone)]
pub struct StaleRead {
    pub read: Read,
    /// `(id, returned, acknowledged before the read began)` for each stale record.
    pub records: Vec<(String, i64, i64)>,
}

/// Every acknowledged write, per record, in acknowledgement order.
#[derive(Debug, Default)]
pub struct History {
    timelines: HashMap<String, Timeline>,
}

#[derive(Debug, Default)]
struct Timeline {
    acknowledged_at: Vec<Instant>,
    /// The newest version acknowledged up to and including the same index.
    newest: Vec<i64>,
}

impl History {
    pub fn new(acks: &[Ack]) -> Self {
        let mut per_record: HashMap<&str, Vec<(Instant, i64)>> = HashMap::new();
        for ack in acks {
            per_record
                .entry(&ack.id)
                .or_default()
                .push((ack.at, ack.version));
        }
        let timelines = per_record
            .into_iter()
            .map(|(id, mut acks)| {
                acks.sort_by_key(|(at, _)| *at);
                let mut timeline = Timeline::default();
                for (at, version) in acks {
                    let newest = timeline
                        .newest
                        .last()
                        .map_or(version, |n| (*n).max(version));
                    timeline.acknowledged_at.push(at);
                    timeline.newest.push(newest);
                }
                (id.to_owned(), timeline)
            })
            .collect();
        Self { timelines }
    }

    /// The newest version of `id` acknowledged strictly before `instant`, if any.
    pub fn acknowledged_before(&self, id: &str, instant: Instant) -> Option<i64> {
        let timeline = self.timelines.get(id)?;
        let count = timeline.acknowledged_at.partition_point(|at| *at < instant);
        count.checked_sub(1).map(|last| timeline.newest[last])
    }

    /// The reads that returned some record older than a write acknowledged before they began.
    pub fn stale_reads(&self, reads: &[Read]) -> Vec<StaleRead> {
        reads
            .iter()
            .filter_map(|read| {
                let records: Vec<(String, i64, i64)> = read
                    .versions
                    .iter()
                    .filter_map(|(id, returned)| {
                        let acknowledged = self.acknowledged_before(id, read.began)?;
                        (*returned < acknowledged).then(|| (id.clone(), *returned, acknowledged))
                    })
                    .collect();
                (!records.is_empty()).then(|| StaleRead {
                    read: read.clone(),
                    records,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    fn ack(id: &str, version: i64, at: Instant) -> Ack {
        Ack {
            id: id.to_owned(),
            version,
            at,
        }
    }

    fn read(began: Instant, versions: &[(&str, i64)]) -> Read {
        Read {
            began,
            kind: ReadKind::BooksByIds,
            instance: 0,
            versions: versions
                .iter()
                .map(|(id, version)| ((*id).to_owned(), *version))
                .collect(),
        }
    }

    #[test]
    fn a_read_that_began_after_an_acknowledgement_and_returned_an_older_version_is_stale() {
        let start = Instant::now();
        let history = History::new(&[ack("a", 2, at(start, 10)), ack("a", 3, at(start, 20))]);
        let stale = history.stale_reads(&[read(at(start, 25), &[("a", 2)])]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].records, vec![("a".to_owned(), 2, 3)]);
    }

    #[test]
    fn a_read_that_began_before_the_acknowledgement_may_return_the_older_version() {
        let start = Instant::now();
        let history = History::new(&[ack("a", 2, at(start, 10)), ack("a", 3, at(start, 20))]);
        let reads = [
            read(at(start, 15), &[("a", 2)]),
            // Not strictly after: the write may have been acknowledged after the read began.
            read(at(start, 20), &[("a", 2)]),
            read(at(start, 30), &[("a", 3)]),
            read(at(start, 30), &[("a", 4)]),
        ];
        assert!(history.stale_reads(&reads).is_empty());
    }

    #[test]
    fn acknowledgements_out_of_version_order_keep_the_newest_version() {
        let start = Instant::now();
        let history = History::new(&[ack("a", 5, at(start, 10)), ack("a", 4, at(start, 20))]);
        assert_eq!(history.acknowledged_before("a", at(start, 30)), Some(5));
        assert_eq!(
            history
                .stale_reads(&[read(at(start, 30), &[("a", 4)])])
                .len(),
            1
        );
    }

    #[test]
    fn records_are_checked_separately_and_unwritten_records_never_are() {
        let start = Instant::now();
        // Given out of instant order: the history sorts them.
        let history = History::new(&[ack("b", 7, at(start, 20)), ack("a", 1, at(start, 10))]);
        let stale = history.stale_reads(&[read(at(start, 30), &[("a", 1), ("b", 6), ("c", 0)])]);
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].records, vec![("b".to_owned(), 6, 7)]);
        assert_eq!(history.acknowledged_before("c", at(start, 30)), None);
    }
}
