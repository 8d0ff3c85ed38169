//! Readers: a small pool of threads that read, chunk, hash and deduplicate changed files, and
//! hash and deduplicate batches of a stream's chunks, so the walker only lists, stats and
//! builds trees while several files are read at once.
//!
//! The walker hands over a file (or a batch of chunks) and gets a [`Pending`] back; it takes the
//! outcomes in tree order, so trees do not depend on which reader finished first. At most
//! `Budget::files_in_flight` tasks wait for a reader, so memory is bounded by that many tasks
//! plus, per reader, one chunker buffer (`max` chunk size) and one batch of new blobs.
//!
//! A reader stores each new chunk as it goes. A file that cannot be read completely fails with
//! `InputUnreadable`, and the walker turns that into a failed backup: chunks already stored
//! are then only unreferenced blobs, never part of a snapshot.

use super::pipeline::{BATCH_BYTES, Budget, Job, Submitter};
use crate::blob::BlobType;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::BlobId;
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
}

/// The outcome of a task handed to the readers; `wait` blocks until it is there.
pub(super) struct Pending<T>(Receiver<T>);

impl Pending<FileOutcome> {
    pub(super) fn wait(self) -> FileOutcome {
        self.0.recv().unwrap_or_else(|_| FileOutcome::Failed(stopped()))
    }
}

impl Pending<Result<Vec<BlobId>>> {
    pub(super) fn wait(self) -> Result<Vec<BlobId>> {
        self.0.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> Error {
    Error::Usage("internal: a reader thread stopped".into())
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
            Failure::Read(source) => Error::InputUnreadable { path: path.to_path_buf(), source },
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
    pub(super) fn start(
        scope: &'scope Scope<'scope, '_>,
        sub: &Submitter<'scope>,
        chunker: Chunker,
        budget: Budget,
    ) -> Self {
        let (tx, rx) = bounded::<Task>(budget.files_in_flight.max(1));
        let cancel = Arc::new(AtomicBool::new(false));
        let handles = (0..budget.readers.max(1))
            .map(|_| {
                let (rx, sub, cancel) = (rx.clone(), sub.clone(), cancel.clone());
                scope.spawn(move || {
                    for task in rx {
                        run(task, &sub, chunker, &cancel);
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

fn run(task: Task, sub: &Submitter<'_>, chunker: Chunker, cancel: &AtomicBool) {
    // A walker that stopped waiting has dropped the receiver: the send failing is expected.
    match task {
        Task::File { path, size, reply } => {
            let _ = reply.send(read_file(&path, size, sub, chunker, cancel));
        }
        Task::Chunks { chunks, reply } => {
            let _ = reply.send(store_chunks(chunks, sub));
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

fn read_file(path: &Path, size: u64, sub: &Submitter<'_>, chunker: Chunker, cancel: &AtomicBool) -> FileOutcome {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileOutcome::Vanished,
        Err(source) => return FileOutcome::Failed(Error::InputUnreadable { path: path.to_path_buf(), source }),
    };
    let (mut content, mut batch) = (Vec::new(), Batch::default());
    let read = chunker.chunk::<_, Failure>(file, Some(size), |chunk| {
        if cancel.load(Ordering::Relaxed) {
            return Err(Failure::Store(Error::Usage("internal: backup cancelled".into())));
        }
        content.push(batch.add(sub, chunk).map_err(Failure::Store)?);
        Ok(())
    });
    match read.map_err(|e| e.into_error(path)).and_then(|size| batch.flush(sub).map(|()| size)) {
        Ok(size) => FileOutcome::Stored { content, size },
        Err(e) => FileOutcome::Failed(e),
    }
}

fn store_chunks(chunks: Vec<Vec<u8>>, sub: &Submitter<'_>) -> Result<Vec<BlobId>> {
    let mut batch = Batch::default();
    let ids = chunks.into_iter().map(|c| batch.add(sub, c)).collect::<Result<Vec<_>>>()?;
    batch.flush(sub)?;
    Ok(ids)
}
