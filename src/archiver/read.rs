//! Readers: a small pool of threads that scan folders (`scan.rs`: list, stat, detect unchanged
//! files, read single-chunk changed files), read, chunk, hash and deduplicate larger changed
//! files, and hash and deduplicate batches of a stream's chunks, so the walker only builds
//! trees while several folders and files are worked on at once.
//!
//! The walker hands over a task and gets a [`Pending`] back; it takes the outcomes in tree
//! order, so trees do not depend on which reader finished first. At most
//! `Budget::files_in_flight` tasks wait for a reader, so memory is bounded by that many tasks
//! plus, per reader, one chunker buffer (`max` chunk size) and one batch of new blobs.
//!
//! A reader stores each new chunk as it goes. A file that cannot be read completely fails with
//! `InputUnreadable`, and the walker turns that into a failed backup: chunks already stored
//! are then only unreferenced blobs, never part of a snapshot.

use super::pipeline::{BATCH_BYTES, Budget, Job, Submitter, internal};
use super::scan::{Excludes, Indexed, Prefetch, Scan, Scanned, Todo, scan_dir, unreadable};
use crate::blob::BlobType;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded, unbounded};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

/// How one file's read ended.
pub(super) enum FileOutcome {
    Stored {
        content: Vec<BlobId>,
        size: u64,
    },
    /// Gone between listing and opening: left out of the snapshot.
    Vanished,
    Failed(Error),
}

enum Task {
    File {
        path: PathBuf,
        size: u64,
        reply: Sender<FileOutcome>,
    },
    Chunks {
        chunks: Vec<Vec<u8>>,
        reply: Sender<Result<Vec<BlobId>>>,
    },
    /// `slot` is set for a scan ahead of need: it holds the scan's share of the budget.
    Scan {
        path: PathBuf,
        old: Option<BlobId>,
        reply: Sender<Result<Scan>>,
        slot: Option<AheadSlot>,
    },
}

/// Folders scanned ahead of the walk, per reader, at most: every scanned folder queues its
/// subfolders ([`AheadQueue`]), so the walker, which takes folders depth first, rarely waits for
/// the next one. Bounded, because each finished scan (entries, parent tree) is held until the
/// walker takes it; what they hold in all is bounded by [`AHEAD_ENTRIES`] too. With the queue
/// taken in walk order, an unchanged backup of the bench tree (3,210 folders) took 257, 217-224
/// and 207-214 ms at 16, 64 and 256 (hyperfine, 20-30 runs), with the same peak memory (61 MB,
/// most of it Argon2's); 256 made no difference to a first backup (2.59 against 2.63 s).
/// One in unit tests, so that the walker claims queued scans (see [`AheadQueue::claim`]).
const AHEAD_PER_READER: usize = if cfg!(test) { 1 } else { 256 };

/// Entries (in folder listings, and in the parent snapshot's trees for them) that finished
/// scans ahead of the walk may hold in all, until the walker takes them. A scan ahead that
/// would go over leaves its folder, before stat'ing, reading or storing anything in it, for the
/// walker to scan when it gets there ([`Scan::left`]). So what scans ahead hold is bounded by
/// this setting, whatever the folders' sizes (about 280 bytes an entry, going by the 5 MB of
/// the bench tree's 18k-entry folder: some 70 MB at most). A fixed limit of 2,048 entries per
/// scan instead made a tree of 40 folders of 4,000 files 31% slower (1.08 -> 1.41 s): those
/// folders were no longer scanned ahead. A few in unit tests, so that they take this path.
pub(super) const AHEAD_ENTRIES: usize = if cfg!(test) { 12 } else { 256 * 1024 };

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
pub(super) struct AheadSlot {
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
    fn entries_only(budget: &Arc<AheadBudget>) -> AheadSlot {
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
struct AheadQueue {
    queued: Arc<Mutex<BinaryHeap<Queued>>>,
    /// Its bell rings once per queued scan and per place freed: readers wait on it beside the
    /// walker's tasks. A ring promises nothing; a reader that finds nothing to take waits again.
    budget: Arc<AheadBudget>,
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
    fn new(scan_limit: usize) -> (AheadQueue, Receiver<()>) {
        let (bell, rung) = unbounded();
        (AheadQueue { queued: Arc::default(), budget: AheadBudget::new(scan_limit, bell) }, rung)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Queued>> {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the scans of `scan`'s subfolders while the queue has room.
    fn start_subfolders(&self, scan: &mut Scan) {
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
    fn next(&self) -> Option<Task> {
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
    fn claim(&self, path: &Path) -> Option<Task> {
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

/// The outcome of a task handed to the readers; `wait` blocks until it is there.
pub(super) struct Pending<T>(Receiver<T>);

/// An outcome that can say "the reader stopped before answering".
pub(super) trait Outcome {
    fn stopped() -> Self;
}

impl Outcome for FileOutcome {
    fn stopped() -> Self {
        FileOutcome::Failed(stopped())
    }
}

impl<T> Outcome for Result<T> {
    fn stopped() -> Self {
        Err(stopped())
    }
}

impl<T: Outcome> Pending<T> {
    pub(super) fn wait(self) -> T {
        self.0.recv().unwrap_or_else(|_| T::stopped())
    }

    /// True once the outcome is there (`wait` will not block).
    pub(super) fn is_ready(&self) -> bool {
        !self.0.is_empty()
    }
}

fn stopped() -> Error {
    internal("a reader thread stopped")
}

/// A failed read is the input's fault; a failed store is the repository's.
pub(super) enum Failure {
    Read(std::io::Error),
    Store(Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Read(e)
    }
}

impl Failure {
    pub(super) fn into_error(self, path: &Path) -> Error {
        match self {
            Failure::Read(source) => unreadable(path, source),
            Failure::Store(e) => e,
        }
    }
}

/// The reader threads. Dropping it stops them (abandoning unfinished files) and joins them.
pub(super) struct Readers<'scope> {
    tasks: Option<Sender<Task>>,
    ahead: AheadQueue,
    cancel: Arc<AtomicBool>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Readers<'scope> {
    pub(super) fn start<'env: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'env Repository,
        excludes: &'env Excludes,
        indexed: Indexed<'env>,
        sub: &Submitter<'scope>,
        budget: Budget,
    ) -> Self {
        let (tx, rx) = bounded::<Task>(budget.files_in_flight.max(1));
        let (ahead, rung) = AheadQueue::new(budget.readers.max(1) * AHEAD_PER_READER);
        let cancel = Arc::new(AtomicBool::new(false));
        let chunker = Chunker::new(repo.config().chunker_files, repo.key().chunker_seed());
        let handles = (0..budget.readers.max(1))
            .map(|_| {
                let (rx, rung, sub, cancel) = (rx.clone(), rung.clone(), sub.clone(), cancel.clone());
                let ahead = ahead.clone();
                let ctx = Context { repo, excludes, indexed, chunker, readers: budget.readers.max(1) };
                scope.spawn(move || {
                    // After a cancel the queued tasks are dropped unrun (their walker is gone).
                    while let Some(task) = next_task(&rx, &rung, &ahead) {
                        if cancel.load(Ordering::SeqCst) {
                            break;
                        }
                        ctx.run(task, &sub, &cancel, &ahead);
                    }
                })
            })
            .collect();
        Readers { tasks: Some(tx), ahead, cancel, handles }
    }

    fn send(&self, task: Task) -> Result<()> {
        match &self.tasks {
            Some(tx) => tx.send(task).map_err(|_| stopped()),
            None => Err(stopped()),
        }
    }

    /// Hands a changed file to the readers.
    pub(super) fn read_file(&self, path: PathBuf, size: u64) -> Result<Pending<FileOutcome>> {
        let (reply, rx) = bounded(1);
        self.send(Task::File { path, size, reply })?;
        Ok(Pending(rx))
    }

    /// Has the readers list and stat a directory; `old` is the parent snapshot's tree for it.
    /// A scan `ahead` of need takes its entries from the budget of [`AHEAD_ENTRIES`], and
    /// leaves its folder for later if they are not there (see [`Scan::left`]).
    pub(super) fn scan(&self, path: PathBuf, old: Option<BlobId>, ahead: bool) -> Result<Pending<Result<Scan>>> {
        let (reply, rx) = bounded(1);
        let slot = ahead.then(|| AheadSlot::entries_only(&self.ahead.budget));
        self.send(Task::Scan { path, old, reply, slot })?;
        Ok(Pending(rx))
    }

    /// Asks for the scan of `path` now if it is still queued ahead: the walker is about to
    /// wait for it ([`AheadQueue::claim`]).
    pub(super) fn claim(&self, path: &Path) -> Result<()> {
        match self.ahead.claim(path) {
            Some(task) => self.send(task),
            None => Ok(()),
        }
    }

    /// Hands a batch of a stream's chunks to the readers; the outcome is their ids, in order.
    pub(super) fn hash_chunks(&self, chunks: Vec<Vec<u8>>) -> Result<Pending<Result<Vec<BlobId>>>> {
        let (reply, rx) = bounded(1);
        self.send(Task::Chunks { chunks, reply })?;
        Ok(Pending(rx))
    }
}

impl Drop for Readers<'_> {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        drop(self.tasks.take());
        for h in self.handles.drain(..) {
            // A reader that panicked has already dropped its reply sender, so the walker saw
            // an error for its file; nothing more to report here.
            let _ = h.join();
        }
    }
}

/// The next task for a reader: what the walker asked for first, then scans ahead of it; `None`
/// once the walker has stopped asking (what is left ahead is not needed then).
fn next_task(walker: &Receiver<Task>, rung: &Receiver<()>, ahead: &AheadQueue) -> Option<Task> {
    loop {
        match walker.try_recv() {
            Ok(task) => return Some(task),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        if let Some(task) = ahead.next() {
            return Some(task);
        }
        // Tokens rung since the queue was looked at stay in the channel: no wake-up is lost.
        crossbeam_channel::select! {
            recv(walker) -> task => return task.ok(),
            recv(rung) -> token => if token.is_err() { return walker.recv().ok() },
        }
    }
}

/// What every reader thread shares.
#[derive(Clone, Copy)]
struct Context<'env> {
    repo: &'env Repository,
    excludes: &'env Excludes,
    indexed: Indexed<'env>,
    chunker: Chunker,
    /// Reader threads in all (they share the budget of files opened ahead).
    readers: usize,
}

impl Context<'_> {
    fn run(&self, task: Task, sub: &Submitter<'_>, cancel: &AtomicBool, ahead: &AheadQueue) {
        // A walker that stopped waiting has dropped the receiver: the send failing is expected.
        match task {
            Task::File { path, size, reply } => {
                let mut batch = Batch::default();
                let outcome = match read_file(&path, None, size, sub, self.chunker, cancel, &mut batch) {
                    FileOutcome::Stored { content, size } => match batch.flush(sub) {
                        Ok(()) => FileOutcome::Stored { content, size },
                        Err(e) => FileOutcome::Failed(e),
                    },
                    other => other,
                };
                let _ = reply.send(outcome);
            }
            Task::Chunks { chunks, reply } => {
                let _ = reply.send(store_chunks(chunks, sub));
            }
            Task::Scan { path, old, reply, mut slot } => {
                let mut batch = Batch::default();
                // Single-chunk files are read right here: handing each to its own task would
                // cost more in thread hand-overs than reading it.
                let limit = u64::from(self.chunker.params.min);
                let mut small = |path: &Path, size: u64, opened: Option<std::fs::File>| {
                    (size <= limit).then(|| read_file(path, opened, size, sub, self.chunker, cancel, &mut batch))
                };
                let prefetch = Prefetch::new(limit, self.readers);
                // A scan ahead of need holds its entries only within the budget.
                let mut reserve = |n: usize| slot.as_mut().is_none_or(|s| s.reserve(n));
                let scan = scan_dir(
                    self.repo,
                    self.excludes,
                    &path,
                    old.as_ref(),
                    self.indexed,
                    prefetch,
                    &mut reserve,
                    &mut small,
                );
                let scan = scan.and_then(|mut scan| {
                    batch.flush(sub)?;
                    // A folder left for the walker holds nothing: its share goes back now.
                    if scan.left.is_none() {
                        scan.slot = slot;
                        ahead.start_subfolders(&mut scan);
                    }
                    Ok(scan)
                });
                let _ = reply.send(scan);
            }
        }
    }
}

/// New blobs of one input, handed to the pipeline about [`BATCH_BYTES`] at a time.
#[derive(Default)]
pub(super) struct Batch {
    jobs: Vec<Job>,
    bytes: usize,
}

impl Batch {
    /// Hashes a chunk, and queues it if new; returns its id.
    pub(super) fn add(&mut self, sub: &Submitter<'_>, data: Vec<u8>) -> Result<BlobId> {
        let id = sub.blob_id(&data);
        if sub.is_new(BlobType::Data, &id)? {
            self.bytes += data.len();
            self.jobs.push(Job { kind: BlobType::Data, id, data });
            if self.bytes >= BATCH_BYTES {
                self.flush(sub)?;
            }
        }
        Ok(id)
    }

    pub(super) fn flush(&mut self, sub: &Submitter<'_>) -> Result<()> {
        self.bytes = 0;
        sub.submit(std::mem::take(&mut self.jobs))
    }
}

/// Reads, chunks and stores one file (from `opened` if the caller already opened it); its new
/// blobs go into `batch`, which the caller flushes.
pub(super) fn read_file(
    path: &Path,
    opened: Option<std::fs::File>,
    size: u64,
    sub: &Submitter<'_>,
    chunker: Chunker,
    cancel: &AtomicBool,
    batch: &mut Batch,
) -> FileOutcome {
    let file = match opened.map_or_else(|| std::fs::File::open(path), Ok) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileOutcome::Vanished,
        Err(source) => return FileOutcome::Failed(unreadable(path, source)),
    };
    let mut content = Vec::new();
    let read = chunker.chunk::<_, Failure>(file, Some(size), |chunk| {
        if cancel.load(Ordering::Relaxed) {
            return Err(Failure::Store(internal("backup cancelled")));
        }
        content.push(batch.add(sub, chunk).map_err(Failure::Store)?);
        Ok(())
    });
    match read {
        Ok(size) => FileOutcome::Stored { content, size },
        Err(e) => FileOutcome::Failed(e.into_error(path)),
    }
}

fn store_chunks(chunks: Vec<Vec<u8>>, sub: &Submitter<'_>) -> Result<Vec<BlobId>> {
    let mut batch = Batch::default();
    let ids = chunks.into_iter().map(|c| batch.add(sub, c)).collect::<Result<Vec<_>>>()?;
    batch.flush(sub)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn path(task: Option<Task>) -> PathBuf {
        match task {
            Some(Task::Scan { path, .. }) => path,
            _ => panic!("a scan"),
        }
    }

    fn queue(q: &AheadQueue, names: &[&str]) -> Vec<Pending<Result<Scan>>> {
        let mut queued = q.lock();
        names.iter().map(|n| q.queue(&mut queued, Path::new(n), None).unwrap()).collect()
    }

    #[test]
    fn readers_take_the_walkers_tasks_first_then_scans_ahead_in_walk_order() {
        let (walker_tx, walker) = bounded::<Task>(4);
        let (q, rung) = AheadQueue::new(2);
        let _pending = queue(&q, &["b", "a/b", "a", "a/b/c"]);
        let (reply, _) = bounded(1);
        walker_tx.send(Task::Scan { path: PathBuf::from("asked"), old: None, reply, slot: None }).unwrap();
        assert_eq!(path(next_task(&walker, &rung, &q)), PathBuf::from("asked"));
        // Depth first, names in byte order; each scan ahead holds a place until dropped.
        let Some(Task::Scan { path: first, slot: _held, .. }) = next_task(&walker, &rung, &q) else { panic!() };
        assert_eq!(first, PathBuf::from("a"));
        let Some(Task::Scan { path: p, slot, .. }) = next_task(&walker, &rung, &q) else { panic!("a scan") };
        assert_eq!(p, PathBuf::from("a/b"));
        assert!(q.next().is_none(), "both places are taken");
        // A place given back lets the next one go (and rings the bell for a waiting reader).
        drop(slot);
        assert_eq!(path(next_task(&walker, &rung, &q)), PathBuf::from("a/b/c"));
        // The walker stopping stops the readers, whatever is left ahead.
        drop(walker_tx);
        assert!(next_task(&walker, &rung, &q).is_none());
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
