//! The backup pipeline: named stages joined by bounded channels, and the one place that sets
//! thread and in-flight budgets.
//!
//! ```text
//! walker + readers (`read.rs`): read, chunk, hash, dedup  --jobs-->  [seal x N]: bundle,
//!   zstd + seal  --sealed-->  [packer]: PackWriter, finish + verify  --packs-->  [upload x M]:
//!   put_new  --uploaded-->  [indexer]: index object every BLOBS_PER_INDEX blobs, and a last one
//!   at finish
//! ```
//! Blobs travel in batches (a file's new chunks, a folder's small files, or about
//! [`BATCH_BYTES`] of a stream's), so small chunks do not pay a channel hand-over and a thread
//! wake-up each. A sealer cuts each batch into bundles (format 2: neighbouring data blobs
//! sealed together up to the configured bundle size, see [`bundles`]). Memory is bounded by
//! the channel capacities times the largest batch, plus the packs in flight. The first error
//! from any stage is kept; every stage then stops and the next `submit` fails, so errors travel
//! back as `Result`s. An index object is written only after every pack it names was stored, and
//! `finish` returns only after the last index object is.

use crate::blob::{BlobType, Sealing, seal_bundle};
use crate::error::{Error, Result};
use crate::id::BlobId;
use crate::index::BlobIndex;
use crate::index::file::{BLOBS_PER_INDEX, IndexFile, IndexPack};
use crate::pack::{FinishedPack, PackWriter};
use crate::repo::Repository;
use crossbeam_channel::{Receiver, Sender, bounded};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

/// A batch is handed on once its blobs reach this many bytes (a single larger blob is a batch
/// of its own).
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Threads and queue depths.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub seal_threads: usize,
    pub uploads: usize,
    /// Batches waiting to be sealed.
    pub to_seal: usize,
    /// Sealed batches waiting for the packer.
    pub to_pack: usize,
    /// Threads reading, chunking and hashing changed files and stream batches.
    pub readers: usize,
    /// Files (or stream batches) handed to the readers and not yet taken back by the walker.
    pub files_in_flight: usize,
}

impl Budget {
    /// Every core seals and reads; `uploads` is the backend's own figure (one on local disk, where
    /// a second writer only holds another 16 MiB pack in memory).
    pub fn for_machine(parallel_puts: usize) -> Budget {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Budget {
            seal_threads: cores,
            uploads: parallel_puts.max(1),
            to_seal: cores,
            // Four sealed batches a core. At one, the sealers of a first backup of the bench
            // tree waited 0.15-0.25 s each on the packer (which takes none while it finishes a
            // pack) and the readers 0.5 s each on the sealers, with both cores busy only 1.5-1.7
            // of the time. Medians of 6-7 interleaved runs: 2.62 -> 2.52-2.525 s at the same
            // peak memory; db1 1.61 -> 1.59 s. Four batches a core waiting to be sealed as well
            // made it no faster (2.54 s) and 11 MB bigger; that queue deeper alone, 2.65 s.
            to_pack: cores * 4,
            readers: cores,
            files_in_flight: cores * 4,
        }
    }
}

/// One blob to seal and pack.
pub struct Job {
    pub kind: BlobType,
    pub id: BlobId,
    pub data: Vec<u8>,
}

/// One sealed bundle: its blobs (ids and plaintext lengths, in bundle order) and its bytes.
struct Sealed {
    kind: BlobType,
    blobs: Vec<(BlobId, u32)>,
    sealed: Vec<u8>,
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
    /// Blobs queued in this run and not yet in an index object, so two files with one chunk
    /// store it once.
    queued: Mutex<HashSet<(BlobType, BlobId)>>,
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
    submitter: Option<Submitter<'scope>>,
    handles: Vec<ScopedJoinHandle<'scope, ()>>,
}

/// A handle for queueing blobs, one per thread that stores. Every clone must be dropped before
/// [`Pipeline::finish`] can return.
#[derive(Clone)]
pub struct Submitter<'env> {
    repo: &'env Repository,
    jobs: Sender<Vec<Job>>,
    shared: Arc<Shared>,
}

impl Submitter<'_> {
    /// The keyed id of a blob's plaintext.
    pub fn blob_id(&self, data: &[u8]) -> BlobId {
        self.repo.key().blob_id(data)
    }

    /// True (and remembered) if neither the index nor this run has the blob yet.
    pub fn is_new(&self, kind: BlobType, id: &BlobId) -> Result<bool> {
        let queued = || self.shared.queued.lock().map_err(|_| internal("dedup set poisoned"));
        // The index lookup runs unlocked so that readers look up in parallel; the insert
        // decides which of two racing readers stores the blob.
        if queued()?.contains(&(kind, *id)) || self.repo.index()?.lookup(kind, id)?.is_some() {
            return Ok(false);
        }
        Ok(queued()?.insert((kind, *id)))
    }

    /// Queues new blobs (already deduplicated) for sealing and packing. Fails once any stage
    /// has failed.
    pub fn submit(&self, batch: Vec<Job>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.shared.failed.load(Ordering::SeqCst) && self.jobs.send(batch).is_ok() {
            return Ok(());
        }
        Err(self.shared.take_error().unwrap_or_else(|| internal("backup pipeline stopped")))
    }

    /// Deduplicates and queues one blob.
    pub fn store(&self, kind: BlobType, id: BlobId, data: Vec<u8>) -> Result<()> {
        if self.is_new(kind, &id)? { self.submit(vec![Job { kind, id, data }]) } else { Ok(()) }
    }
}

/// A failure that is cairn's own bug, not the input's or the repository's.
pub(super) fn internal(what: &str) -> Error {
    Error::Usage(format!("internal: {what}"))
}

impl<'scope> Pipeline<'scope> {
    pub fn start<'env: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        repo: &'env Repository,
        budget: Budget,
    ) -> Pipeline<'scope> {
        let shared = Arc::new(Shared::default());
        let (jobs_tx, jobs_rx) = bounded::<Vec<Job>>(budget.to_seal);
        let (sealed_tx, sealed_rx) = bounded::<Vec<Sealed>>(budget.to_pack);
        // A rendezvous: a finished pack waits in the packer until an uploader is free, so at
        // most `uploads + 1` packs are in memory (plus the one being filled).
        let (packs_tx, packs_rx) = bounded::<FinishedPack>(0);
        let (done_tx, done_rx) = bounded::<IndexPack>(64);
        // Uploaded packs' buffers go back to the packer (see `pack_buffer`).
        let (spare_tx, spare_rx) = bounded::<Vec<u8>>(1);
        let mut handles = Vec::new();
        let level = repo.config().zstd_level;
        for _ in 0..budget.seal_threads.max(1) {
            let (rx, tx, shared) = (jobs_rx.clone(), sealed_tx.clone(), shared.clone());
            handles.push(scope.spawn(move || seal_stage(repo, level, rx, tx, &shared)));
        }
        drop((jobs_rx, sealed_tx));
        let s = shared.clone();
        handles.push(scope.spawn(move || pack_stage(repo, sealed_rx, packs_tx, spare_rx, &s)));
        for _ in 0..budget.uploads.max(1) {
            let (rx, tx, spare, shared) = (packs_rx.clone(), done_tx.clone(), spare_tx.clone(), shared.clone());
            handles.push(scope.spawn(move || upload_stage(repo, rx, tx, spare, &shared)));
        }
        drop((packs_rx, done_tx, spare_tx));
        let s = shared.clone();
        handles.push(scope.spawn(move || index_stage(repo, done_rx, &s)));
        Pipeline { submitter: Some(Submitter { repo, jobs: jobs_tx, shared }), handles }
    }

    /// A handle for a thread that stores blobs.
    pub fn submitter(&self) -> Result<Submitter<'scope>> {
        self.submitter.clone().ok_or_else(|| internal("backup pipeline finished"))
    }

    /// Flushes the last pack, waits for every upload and writes the last index object.
    pub fn finish(mut self) -> Result<Stored> {
        let Some(sub) = self.submitter.take() else { return Err(internal("backup pipeline finished")) };
        let shared = sub.shared.clone();
        drop(sub);
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                shared.fail(internal("a backup pipeline thread panicked"));
            }
        }
        if let Some(e) = shared.take_error() {
            return Err(e);
        }
        Ok(Stored {
            blobs: shared.blobs.load(Ordering::SeqCst),
            bytes: shared.bytes.load(Ordering::SeqCst),
            packs: shared.packs.load(Ordering::SeqCst),
        })
    }
}

fn seal_stage(repo: &Repository, level: i32, rx: Receiver<Vec<Job>>, tx: Sender<Vec<Sealed>>, shared: &Shared) {
    let sealing = repo.sealing();
    let bundle_size = repo.config().bundle_size as usize;
    for batch in rx {
        let mut out = Vec::new();
        for range in bundles(&batch, sealing, bundle_size) {
            let jobs = &batch[range];
            let mut blobs = Vec::with_capacity(jobs.len());
            for job in jobs {
                let Ok(raw_len) = u32::try_from(job.data.len()) else {
                    shared.fail(internal("blob over 4 GiB"));
                    return;
                };
                blobs.push((job.id, raw_len));
            }
            let (Some(first), Some(&(id, _))) = (jobs.first(), blobs.first()) else { continue };
            let parts: Vec<&[u8]> = jobs.iter().map(|j| j.data.as_slice()).collect();
            let sealed = seal_bundle(repo.key(), &sealing.aad(first.kind, &id), &parts, level);
            out.push(Sealed { kind: first.kind, blobs, sealed });
        }
        if shared.failed.load(Ordering::SeqCst) || tx.send(out).is_err() {
            return;
        }
    }
}

/// Cuts a batch into bundles, as ranges of its jobs: neighbouring data blobs go together until
/// the next would take the bundle past `bundle_size` bytes (a blob that large is a bundle of its
/// own). Trees are always alone: the next backup loads each tree of its parent by itself, and
/// would otherwise decompress its neighbours with it. In format 1 every blob is alone.
fn bundles(jobs: &[Job], sealing: Sealing, bundle_size: usize) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut bytes = 0usize;
    for (i, job) in jobs.iter().enumerate() {
        let joins = sealing == Sealing::Bundles
            && job.kind == BlobType::Data
            && out.last().is_some_and(|r| r.end == i && jobs[r.start].kind == BlobType::Data)
            && bytes + job.data.len() <= bundle_size;
        match out.last_mut() {
            Some(last) if joins => {
                last.end = i + 1;
                bytes += job.data.len();
            }
            _ => {
                out.push(i..i + 1);
                bytes = job.data.len();
            }
        }
    }
    out
}

fn pack_stage(
    repo: &Repository,
    rx: Receiver<Vec<Sealed>>,
    tx: Sender<FinishedPack>,
    spare: Receiver<Vec<u8>>,
    shared: &Shared,
) {
    let target = repo.config().pack_size as usize;
    let sealing = repo.sealing();
    let fresh = || PackWriter::with_buffer(sealing, pack_buffer(&spare, pack_capacity(target)));
    let mut writer = fresh();
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
    // Trees go into packs of their own, as restic's do: the next backup loads every tree of
    // its parent snapshot, and reads them from a few packs (kept in the page cache, see
    // `upload_stage`) instead of one small read from each of many data packs written past the
    // cache (files1-again after files1: 0.29-0.31 s with the packs out of the cache, 0.22-0.25
    // in). They fill slowly, so they are a quarter of the pack size.
    let tree_target = (target / 4).max(1);
    let mut trees = PackWriter::new(sealing);
    for s in rx.iter().flatten() {
        if shared.failed.load(Ordering::SeqCst) {
            return;
        }
        let (w, full) = match s.kind {
            BlobType::Tree => (&mut trees, tree_target),
            BlobType::Data => (&mut writer, target),
        };
        if let Err(e) = w.add_bundle(s.kind, &s.blobs, &s.sealed) {
            shared
                .fail(Error::corrupt(crate::error::ObjectRef::new(crate::error::ObjectKind::Pack, "being written"), e));
            return;
        }
        if w.len() >= full {
            let next = if s.kind == BlobType::Tree { PackWriter::new(sealing) } else { fresh() };
            if !finish(std::mem::replace(w, next)) {
                return;
            }
        }
    }
    for w in [writer, trees] {
        if !w.is_empty() && !shared.failed.load(Ordering::SeqCst) && !finish(w) {
            return;
        }
    }
}

/// A pack's buffer, reserved once at its final size instead of grown by doubling, and never
/// under 33 MiB: glibc serves that from a fresh mmap and unmaps it on free without raising its
/// mmap threshold (which it does for freed blocks up to 32 MiB), so a finished pack's memory
/// goes back to the system instead of staying in a thread's arena. Measured: peak RSS of a
/// 700 MB stream backup 171 -> 90 MB, of the 1.2 GB tree 150 -> 115 MB. Only the pages written
/// count in RSS, so the unused reserve costs address space only. While a backup runs, one
/// uploaded pack's buffer at most is kept for the next pack ([`pack_buffer`]).
fn pack_capacity(target: usize) -> usize {
    const MIB: usize = 1 << 20;
    // Room for the blob that crosses the target (at most a largest chunk) and the header.
    let needed = target.saturating_add(target / 8).saturating_add(4 * MIB);
    needed.max(33 * MIB)
}

/// A pack buffer: an uploaded pack's, emptied, if one is waiting, else a new one. A new buffer's
/// pages are faulted in and zeroed by the kernel as the pack fills (a third of the minor page
/// faults of a first backup); a reused one's are already there.
fn pack_buffer(spare: &Receiver<Vec<u8>>, capacity: usize) -> Vec<u8> {
    match spare.try_recv() {
        Ok(mut buf) if buf.capacity() >= capacity => {
            buf.clear();
            buf
        }
        _ => Vec::with_capacity(capacity),
    }
}

fn upload_stage(
    repo: &Repository,
    rx: Receiver<FinishedPack>,
    tx: Sender<IndexPack>,
    spare: Sender<Vec<u8>>,
    shared: &Shared,
) {
    for pack in rx {
        if shared.failed.load(Ordering::SeqCst) {
            return;
        }
        let FinishedPack { id, bytes, blobs } = pack;
        let len = bytes.len() as u64;
        let bytes = bytes::Bytes::from(bytes);
        let trees = blobs.iter().all(|b| b.kind == BlobType::Tree);
        if let Err(e) = repo.put_pack_bytes(&id, bytes.clone(), trees) {
            shared.fail(e);
            return;
        }
        // The storage is done with it: hand the buffer back unless something still holds it
        // (then it is freed when that lets go), or a spare is already waiting (then it is freed).
        if let Ok(buf) = bytes.try_into_mut() {
            let _ = spare.try_send(Vec::from(buf));
        }
        shared.packs.fetch_add(1, Ordering::Relaxed);
        shared.blobs.fetch_add(blobs.len() as u64, Ordering::Relaxed);
        shared.bytes.fetch_add(len, Ordering::Relaxed);
        if tx.send(IndexPack { id, blobs }).is_err() {
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
            && let Err(e) = save_index(repo, &std::mem::take(&mut file), shared)
        {
            shared.fail(e);
            return;
        }
    }
    if !file.packs.is_empty()
        && let Err(e) = save_index(repo, &file, shared)
    {
        shared.fail(e);
    }
}

/// Stores an index object, then forgets its blobs from the run's dedup set: the index cache
/// answers for them from now on (it has them before the set lets go), so the set holds only
/// blobs not yet indexed and stays bounded by the pipeline's budget, not by the input's size.
fn save_index(repo: &Repository, file: &IndexFile, shared: &Shared) -> Result<()> {
    repo.save_index(file)?;
    let mut queued = shared.queued.lock().map_err(|_| internal("dedup set poisoned"))?;
    for pack in &file.packs {
        for b in &pack.blobs {
            queued.remove(&(b.kind, b.id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
