//! Readers: a small pool of threads that scan folders (`scan.rs`: list, stat, detect unchanged
//! files, read single-chunk changed files), read, chunk, hash and deduplicate larger changed
//! files, and hash and deduplicate batches of a stream's chunks, so the walker only builds
//! trees while several folders and files are worked on at once.
//!
//! The walker hands over a task and gets a [`Pending`] back; it takes the outcomes in tree
//! order, so trees do not depend on which reader finished first. At most
//! `Budget::files_in_flight` tasks wait for a reader, so memory is bounded by that many tasks
//! plus, per reader, one chunker buffer (`max` chunk size) and one batch of new blobs. Readers
//! also scan folders ahead of the walk, within a budget and in the walk's order ([`ahead`]).
//!
//! A reader stores each new chunk as it goes. A file that cannot be read completely fails with
//! `InputUnreadable`, and the walker turns that into a failed backup: chunks already stored
//! are then only unreferenced blobs, never part of a snapshot.

use super::pipeline::{BATCH_BYTES, Budget, Job, Submitter, internal};
use super::scan::{Excludes, Indexed, Prefetch, Scan, scan_dir, unreadable};
use crate::blob::BlobType;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crossbeam_channel::{Receiver, Sender, TryRecvError, bounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

mod ahead;
pub(super) use ahead::AheadSlot;
use ahead::{AHEAD_PER_READER, AheadQueue};

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

    use ahead::tests::{path, queue};

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
}
