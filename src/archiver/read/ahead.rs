//! Scans ahead of the walk: their budget (places and entries, [`AheadBudget`], [`AheadSlot`])
//! and the readers' queue of them in walk order ([`AheadQueue`]). What finished scans ahead hold
//! is bounded by [`AHEAD_PER_READER`] places a reader and [`AHEAD_ENTRIES`] entries in all; a
//! queued scan takes its place when a reader starts it, and the walker claims a queued scan it
//! is about to wait for, so it never waits for a place that only scans after it hold.

use super::{Pending, Task};
use crate::archiver::scan::{Scan, Scanned, Todo};
use crate::error::Result;
use crate::id::BlobId;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Folders scanned ahead of the walk, per reader, at most: every scanned folder queues its
/// subfolders ([`AheadQueue`]), so the walker, which takes folders depth first, rarely waits for
/// the next one. Bounded, because each finished scan (entries, parent tree) is held until the
/// walker takes it; what they hold in all is bounded by [`AHEAD_ENTRIES`] too. With the queue
/// taken in walk order, an unchanged backup of the bench tree (3,210 folders) took 257, 217-224
/// and 207-214 ms at 16, 64 and 256 (hyperfine, 20-30 runs), with the same peak memory (61 MB,
/// most of it Argon2's); 256 made no difference to a first backup (2.59 against 2.63 s).
/// One in unit tests, so that the walker claims queued scans (see [`AheadQueue::claim`]).
pub(super) const AHEAD_PER_READER: usize = if cfg!(test) { 1 } else { 256 };

/// Entries (in folder listings, and in the parent snapshot's trees for them) that finished
/// scans ahead of the walk may hold in all, until the walker takes them. A scan ahead that
/// would go over leaves its folder, before stat'ing, reading or storing anything in it, for the
/// walker to scan when it gets there ([`Scan::left`]). So what scans ahead hold is bounded by
/// this setting, whatever the folders' sizes (about 280 bytes an entry, going by the 5 MB of
/// the bench tree's 18k-entry folder: some 70 MB at most). A fixed limit of 2,048 entries per
/// scan instead made a tree of 40 folders of 4,000 files 31% slower (1.08 -> 1.41 s): those
/// folders were no longer scanned ahead. A few in unit tests, so that they take this path.
pub(in crate::archiver) const AHEAD_ENTRIES: usize = if cfg!(test) { 12 } else { 256 * 1024 };

/// What scans ahead of the walk hold: scans (the readers' own, at most `readers x
/// AHEAD_PER_READER`) and entries (at most [`AHEAD_ENTRIES`]).
pub(super) struct AheadBudget {
    scans: AtomicUsize,
    scan_limit: usize,
    entries: AtomicUsize,
    /// Rung when a scan is queued or a place among the scans frees up (see [`AheadQueue`]).
    bell: Sender<()>,
}

impl AheadBudget {
    pub(super) fn new(scan_limit: usize, bell: Sender<()>) -> Arc<AheadBudget> {
        Arc::new(AheadBudget { scans: AtomicUsize::new(0), scan_limit, entries: AtomicUsize::new(0), bell })
    }
}

/// A scan ahead of the walk's share of the budget: a place among the readers' scans ahead (if
/// `counted`) and the entries it reserved; given back when the walker takes the scan, when it
/// is dropped untaken, or when the scan leaves its folder.
pub(in crate::archiver) struct AheadSlot {
    budget: Arc<AheadBudget>,
    counted: bool,
    entries: usize,
}

impl AheadSlot {
    /// A place among the readers' scans ahead, if one is free.
    fn take(budget: &Arc<AheadBudget>) -> Option<AheadSlot> {
        let limit = budget.scan_limit;
        budget.scans.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(AheadSlot { budget: budget.clone(), counted: true, entries: 0 })
    }

    /// A share of the entries only (the walker's own scans of the subfolders ahead).
    pub(super) fn entries_only(budget: &Arc<AheadBudget>) -> AheadSlot {
        AheadSlot { budget: budget.clone(), counted: false, entries: 0 }
    }

    /// Reserves `n` more entries; false (and nothing reserved) if that would pass the budget.
    pub(super) fn reserve(&mut self, n: usize) -> bool {
        let reserved = self
            .budget
            .entries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |e| e.checked_add(n).filter(|&t| t <= AHEAD_ENTRIES));
        if reserved.is_ok() {
            self.entries += n;
        }
        reserved.is_ok()
    }
}

impl Drop for AheadSlot {
    fn drop(&mut self) {
        self.budget.entries.fetch_sub(self.entries, Ordering::AcqRel);
        if self.counted {
            self.budget.scans.fetch_sub(1, Ordering::AcqRel);
            // A reader may be waiting for this place; none listening is fine.
            let _ = self.budget.bell.send(());
        }
    }
}

/// Subfolders queued for scans ahead of the walk, at most this many (a queued scan is its path,
/// its parent tree id and a reply channel: a few hundred bytes). Past it, the walker asks for
/// the rest itself, a few at a time (`walk::Ahead`).
const AHEAD_QUEUED: usize = if cfg!(test) { 4 } else { 16 * 1024 };

/// The readers' own queue of scans ahead of the walk, and its budget. Every scanned folder
/// queues its subfolders; a reader takes the queued scan that the walk will need first (the
/// smallest path, compared component by component: the walk's own order, depth first and names
/// in byte order), once a place among the scans ahead is free ([`AheadBudget`]). A queue taken
/// first in, first out, with places taken when queuing, went breadth first: the places filled
/// with folders far ahead of the walk, a folder that found no place was left for the walker to
/// ask for, one at a time, and in an unchanged backup of the bench tree the walker asked for
/// 1,493 of 3,210 folders itself and waited on many of them.
#[derive(Clone)]
pub(super) struct AheadQueue {
    queued: Arc<Mutex<BinaryHeap<Queued>>>,
    /// Its bell rings once per queued scan and per place freed: readers wait on it beside the
    /// walker's tasks. A ring promises nothing; a reader that finds nothing to take waits again.
    pub(super) budget: Arc<AheadBudget>,
}

/// A queued scan ahead; the heap's greatest is the smallest path.
struct Queued {
    path: PathBuf,
    old: Option<BlobId>,
    reply: Sender<Result<Scan>>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.path.cmp(&self.path)
    }
}

impl AheadQueue {
    pub(super) fn new(scan_limit: usize) -> (AheadQueue, Receiver<()>) {
        let (bell, rung) = unbounded();
        (AheadQueue { queued: Arc::default(), budget: AheadBudget::new(scan_limit, bell) }, rung)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Queued>> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the scans of `scan`'s subfolders while the queue has room.
    pub(super) fn start_subfolders(&self, scan: &mut Scan) {
        let mut queued = self.lock();
        for entry in &mut scan.entries {
            let Ok(Scanned { path, todo: Todo::Dir { old, ahead }, .. }) = entry else { continue };
            match self.queue(&mut queued, path, *old) {
                Some(pending) => *ahead = Some(pending),
                None => break,
            }
        }
    }

    /// Queues the scan of `path`, if the queue has room.
    fn queue(
        &self,
        queued: &mut BinaryHeap<Queued>,
        path: &Path,
        old: Option<BlobId>,
    ) -> Option<Pending<Result<Scan>>> {
        if queued.len() >= AHEAD_QUEUED {
            return None;
        }
        let (reply, rx) = bounded(1);
        queued.push(Queued { path: path.to_path_buf(), old, reply });
        let _ = self.budget.bell.send(());
        Some(Pending(rx))
    }

    /// The queued scan the walk needs first, with a place among the scans ahead, if one is free.
    pub(super) fn next(&self) -> Option<Task> {
        let mut queued = self.lock();
        if queued.is_empty() {
            return None;
        }
        let slot = AheadSlot::take(&self.budget)?;
        let Queued { path, old, reply } = queued.pop()?;
        Some(Task::Scan { path, old, reply, slot: Some(slot) })
    }

    /// Takes the scan of `path` out of the queue, if it is still there, for the walker, which
    /// is about to wait for it: it is then asked for like the walker's own scans, so it never
    /// waits for a place that only the scans after it in the walk hold.
    pub(super) fn claim(&self, path: &Path) -> Option<Task> {
        let mut queued = self.lock();
        let found = if queued.peek().is_some_and(|q| q.path == path) {
            queued.pop()
        } else {
            // Not expected (the walk takes folders in the queue's order), but cheap to cover.
            let mut all = std::mem::take(&mut *queued).into_vec();
            let found = all.iter().position(|q| q.path == path).map(|at| all.swap_remove(at));
            *queued = all.into();
            found
        };
        found.map(|Queued { path, old, reply }| Task::Scan { path, old, reply, slot: None })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::archiver::read) fn path(task: Option<Task>) -> PathBuf {
        match task {
            Some(Task::Scan { path, .. }) => path,
            _ => panic!("a scan"),
        }
    }

    pub(in crate::archiver::read) fn queue(q: &AheadQueue, names: &[&str]) -> Vec<Pending<Result<Scan>>> {
        let mut queued = q.lock();
        names.iter().map(|n| q.queue(&mut queued, Path::new(n), None).unwrap()).collect()
    }

    #[test]
    fn scans_ahead_stay_within_their_budget_and_give_it_back() {
        let (bell, rung) = unbounded();
        let budget = AheadBudget::new(3, bell);
        let mut slots: Vec<AheadSlot> = (0..5).filter_map(|_| AheadSlot::take(&budget)).collect();
        assert_eq!(slots.len(), 3);
        assert!(AheadSlot::take(&budget).is_none());
        // Entries: reserved while they fit, by counted slots and the walker's alike.
        let mut walker = AheadSlot::entries_only(&budget);
        assert!(slots[0].reserve(AHEAD_ENTRIES - 2) && walker.reserve(2));
        assert!(!slots[1].reserve(1) && !walker.reserve(1));
        drop(walker);
        assert!(slots[1].reserve(2) && !slots[2].reserve(1));
        drop(slots);
        // Each counted place given back rang the bell once.
        assert_eq!(rung.try_iter().count(), 3);
        assert_eq!(budget.scans.load(Ordering::SeqCst), 0);
        assert_eq!(budget.entries.load(Ordering::SeqCst), 0);
        assert!(AheadSlot::take(&budget).is_some_and(|mut s| s.reserve(AHEAD_ENTRIES)));
    }

    #[test]
    fn the_walker_claims_a_queued_scan_it_is_about_to_wait_for() {
        let (q, _rung) = AheadQueue::new(0);
        let _pending = queue(&q, &["x", "y", "z"]);
        assert!(q.next().is_none(), "no place for scans ahead");
        // Claimed without a place: the first in walk order, or any other still queued.
        let Some(Task::Scan { path: p, slot, .. }) = q.claim(Path::new("x")) else { panic!("x is queued") };
        assert_eq!((p, slot.is_none()), (PathBuf::from("x"), true));
        assert_eq!(path(q.claim(Path::new("z"))), PathBuf::from("z"));
        assert!(q.claim(Path::new("z")).is_none() && q.claim(Path::new("w")).is_none());
        assert_eq!(path(q.claim(Path::new("y"))), PathBuf::from("y"));
    }

    #[test]
    fn the_queue_of_scans_ahead_is_bounded() {
        let (q, _rung) = AheadQueue::new(1);
        let mut queued = q.lock();
        let n = (0..AHEAD_QUEUED + 3).filter_map(|i| q.queue(&mut queued, Path::new(&format!("d{i}")), None)).count();
        assert_eq!(n, AHEAD_QUEUED);
    }
}
