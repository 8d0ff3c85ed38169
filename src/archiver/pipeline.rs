//! The backup pipeline: named stages joined by bounded channels, and the one place that sets
//! thread and in-flight budgets.
//!
//! ```text
//! walker (caller's thread): read, chunk, hash, dedup  --jobs-->  [seal x N]: zstd + seal
//!   --sealed-->  [packer]: PackWriter, finish + verify  --packs-->  [upload x M]: put_new
//!   --uploaded-->  [indexer]: index object every BLOBS_PER_INDEX blobs, and a last one at finish
//! ```
//! Memory is bounded by the channel capacities times the largest chunk, plus the packs in
//! flight. The first error from any stage is kept; every stage then stops and the walker's next
//! `submit` fails, so errors travel back as `Result`s. An index object is written only after
//! every pack it names was stored, and `finish` returns only after the last index object is.

use crate::blob::{BlobType, seal_blob};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::file::{BLOBS_PER_INDEX, IndexFile, IndexPack};
use crate::pack::{FinishedPack, PackWriter};
use crate::repo::Repository;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// Threads and queue depths.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub seal_threads: usize,
    pub uploads: usize,
    /// Chunks waiting to be sealed.
    pub queue: usize,
}

impl Budget {
    pub fn for_machine() -> Budget {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Budget { seal_threads: cores, uploads: 2, queue: cores * 4 }
    }
}

struct Job {
    kind: BlobType,
    id: BlobId,
    data: Vec<u8>,
}

struct Sealed {
    kind: BlobType,
    id: BlobId,
    sealed: Vec<u8>,
    raw_len: u32,
}

/// What the pipeline stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stored {
    pub blobs: u64,
    pub bytes: u64,
    pub packs: u64,
}

#[derive(Default)]
struct Shared {
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
    blobs: AtomicU64,
    bytes: AtomicU64,
    packs: AtomicU64,
}

impl Shared {
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = self.error.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
    }

    fn take_error(&self) -> Option<Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

pub struct Pipeline<'scope> {
    jobs: Option<Sender<Job>>,
    shared: Arc<Shared>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Pipeline<'scope> {
    pub fn start<'env>(scope: &'scope Scope<'scope, 'env>, repo: &'env Repository, budget: Budget) -> Pipeline<'scope> {
        let shared = Arc::new(Shared::default());
        let (jobs_tx, jobs_rx) = bounded::<Job>(budget.queue);
        let (sealed_tx, sealed_rx) = bounded::<Sealed>(budget.queue);
        let (packs_tx, packs_rx) = bounded::<FinishedPack>(budget.uploads);
        let (done_tx, done_rx) = bounded::<IndexPack>(64);
        let mut handles = Vec::new();
        let level = repo.config().zstd_level;
        for _ in 0..budget.seal_threads.max(1) {
            let (rx, tx, shared) = (jobs_rx.clone(), sealed_tx.clone(), shared.clone());
            handles.push(scope.spawn(move || seal_stage(repo, level, rx, tx, &shared)));
        }
        drop((jobs_rx, sealed_tx));
        let s = shared.clone();
        handles.push(scope.spawn(move || pack_stage(repo, sealed_rx, packs_tx, &s)));
        for _ in 0..budget.uploads.max(1) {
            let (rx, tx, shared) = (packs_rx.clone(), done_tx.clone(), shared.clone());
            handles.push(scope.spawn(move || upload_stage(repo, rx, tx, &shared)));
        }
        drop((packs_rx, done_tx));
        let s = shared.clone();
        handles.push(scope.spawn(move || index_stage(repo, done_rx, &s)));
        Pipeline { jobs: Some(jobs_tx), shared, handles }
    }

    /// Queues a new blob for sealing and packing. Fails once any stage has failed.
    pub fn submit(&self, kind: BlobType, id: BlobId, data: Vec<u8>) -> Result<()> {
        let sent = match &self.jobs {
            Some(tx) if !self.shared.failed.load(Ordering::SeqCst) => tx.send(Job { kind, id, data }).is_ok(),
            _ => false,
        };
        if sent { Ok(()) } else { Err(self.stage_error()) }
    }

    fn stage_error(&self) -> Error {
        self.shared.take_error().unwrap_or_else(|| Error::Usage("internal: backup pipeline stopped".into()))
    }

    /// Flushes the last pack, waits for every upload and writes the last index object.
    pub fn finish(mut self) -> Result<Stored> {
        drop(self.jobs.take());
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                self.shared.fail(Error::Usage("internal: a backup pipeline thread panicked".into()));
            }
        }
        if let Some(e) = self.shared.take_error() {
            return Err(e);
        }
        Ok(Stored {
            blobs: self.shared.blobs.load(Ordering::SeqCst),
            bytes: self.shared.bytes.load(Ordering::SeqCst),
            packs: self.shared.packs.load(Ordering::SeqCst),
        })
    }
}

fn seal_stage(repo: &Repository, level: i32, rx: Receiver<Job>, tx: Sender<Sealed>, shared: &Shared) {
    for job in rx {
        let Ok(raw_len) = u32::try_from(job.data.len()) else {
            shared.fail(Error::Usage("internal: blob over 4 GiB".into()));
            return;
        };
        let sealed = seal_blob(repo.key(), job.kind, &job.id, &job.data, level);
        if shared.failed.load(Ordering::SeqCst)
            || tx.send(Sealed { kind: job.kind, id: job.id, sealed, raw_len }).is_err()
        {
            return;
        }
    }
}

fn pack_stage(repo: &Repository, rx: Receiver<Sealed>, tx: Sender<FinishedPack>, shared: &Shared) {
    let target = repo.config().pack_size as usize;
    let mut writer = PackWriter::new();
    let finish = |w: PackWriter| -> bool {
        match w.finish(repo.key()) {
            Ok(p) => tx.send(p).is_ok(),
            Err(e) => {
                shared.fail(Error::corrupt(
                    crate::error::ObjectRef::new(crate::error::ObjectKind::Pack, "being written"),
                    e,
                ));
                false
            }
        }
    };
    for s in rx {
        if shared.failed.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = writer.add(s.kind, s.id, &s.sealed, s.raw_len) {
            shared
                .fail(Error::corrupt(crate::error::ObjectRef::new(crate::error::ObjectKind::Pack, "being written"), e));
            return;
        }
        if writer.len() >= target && !finish(std::mem::take(&mut writer)) {
            return;
        }
    }
    if !writer.is_empty() && !shared.failed.load(Ordering::SeqCst) {
        finish(writer);
    }
}

fn upload_stage(repo: &Repository, rx: Receiver<FinishedPack>, tx: Sender<IndexPack>, shared: &Shared) {
    for pack in rx {
        if shared.failed.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = repo.put_pack(&pack) {
            shared.fail(e);
            return;
        }
        shared.packs.fetch_add(1, Ordering::Relaxed);
        shared.blobs.fetch_add(pack.blobs.len() as u64, Ordering::Relaxed);
        shared.bytes.fetch_add(pack.bytes.len() as u64, Ordering::Relaxed);
        if tx.send(IndexPack { id: pack.id, blobs: pack.blobs }).is_err() {
            return;
        }
    }
}

/// Writes index objects for stored packs. Runs to the end even after a failure elsewhere, so
/// the packs that did reach storage are indexed and the next backup reuses them.
fn index_stage(repo: &Repository, rx: Receiver<IndexPack>, shared: &Shared) {
    let mut file = IndexFile::default();
    for pack in rx {
        file.packs.push(pack);
        if file.blob_count() >= BLOBS_PER_INDEX
            && let Err(e) = repo.save_index(&std::mem::take(&mut file))
        {
            shared.fail(e);
            return;
        }
    }
    if !file.packs.is_empty()
        && let Err(e) = repo.save_index(&file)
    {
        shared.fail(e);
    }
}
