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
use super::scan::{Excludes, Indexed, Scan, scan_dir, unreadable};
use crate::blob::BlobType;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::repo::Repository;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    File { path: PathBuf, size: u64, reply: Sender<FileOutcome> },
    Chunks { chunks: Vec<Vec<u8>>, reply: Sender<Result<Vec<BlobId>>> },
    Scan { path: PathBuf, old: Option<BlobId>, reply: Sender<Result<Scan>> },
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
        let cancel = Arc::new(AtomicBool::new(false));
        let chunker = Chunker::new(repo.config().chunker_files, repo.key().chunker_seed());
        let handles = (0..budget.readers.max(1))
            .map(|_| {
                let (rx, sub, cancel) = (rx.clone(), sub.clone(), cancel.clone());
                let ctx = Context { repo, excludes, indexed, chunker };
                scope.spawn(move || {
                    // After a cancel the queued tasks are dropped unrun (their walker is gone).
                    for task in rx.iter().take_while(|_| !cancel.load(Ordering::SeqCst)) {
                        ctx.run(task, &sub, &cancel);
                    }
                })
            })
            .collect();
        Readers { tasks: Some(tx), cancel, handles }
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
    pub(super) fn scan(&self, path: PathBuf, old: Option<BlobId>) -> Result<Pending<Result<Scan>>> {
        let (reply, rx) = bounded(1);
        self.send(Task::Scan { path, old, reply })?;
        Ok(Pending(rx))
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

/// What every reader thread shares.
#[derive(Clone, Copy)]
struct Context<'env> {
    repo: &'env Repository,
    excludes: &'env Excludes,
    indexed: Indexed<'env>,
    chunker: Chunker,
}

impl Context<'_> {
    fn run(&self, task: Task, sub: &Submitter<'_>, cancel: &AtomicBool) {
        // A walker that stopped waiting has dropped the receiver: the send failing is expected.
        match task {
            Task::File { path, size, reply } => {
                let mut batch = Batch::default();
                let outcome = match read_file(&path, size, sub, self.chunker, cancel, &mut batch) {
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
            Task::Scan { path, old, reply } => {
                let mut batch = Batch::default();
                // Single-chunk files are read right here: handing each to its own task would
                // cost more in thread hand-overs than reading it.
                let limit = u64::from(self.chunker.params.min);
                let mut small = |path: &Path, size: u64| {
                    (size <= limit).then(|| read_file(path, size, sub, self.chunker, cancel, &mut batch))
                };
                let scan = scan_dir(self.repo, self.excludes, &path, old.as_ref(), self.indexed, &mut small);
                let _ = reply.send(scan.and_then(|scan| batch.flush(sub).map(|()| scan)));
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

/// Reads, chunks and stores one file; its new blobs go into `batch`, which the caller flushes.
pub(super) fn read_file(
    path: &Path,
    size: u64,
    sub: &Submitter<'_>,
    chunker: Chunker,
    cancel: &AtomicBool,
    batch: &mut Batch,
) -> FileOutcome {
    let file = match std::fs::File::open(path) {
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
