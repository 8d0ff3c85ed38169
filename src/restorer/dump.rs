//! `dump`: one file's content to a writer, in order, every blob verified before any of its bytes
//! are written.
//!
//! Three things overlap: this thread looks blobs up in sorted batches and cuts them into *runs*
//! (neighbouring blobs of one pack, read with one request); worker threads read runs, open
//! (authenticate, decompress) each bundle once and re-hash the blobs they take from it; this
//! thread writes finished runs in order while the workers go on. At most
//! [`IN_FLIGHT_PER_WORKER`] runs per worker are planned but not yet written, and a run holds at
//! most [`SEGMENT_SEALED`] sealed and [`SEGMENT_RAW`] plain bytes, so memory follows these
//! settings, not the size of the file. Everything before the first bad or missing blob is
//! written; nothing after it.

use super::plan::TreeSource;
use super::{KEEP_READ, LastBundle, PackSource, take_blob};
use crate::backend::ReadBuf;
use crate::error::{Error, ObjectKind, ObjectRef, Result};
use crate::id::BlobId;
use crate::index::IndexEntry;
use crate::tree::{Node, NodeKind};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;

/// Blob ids looked up in one sorted batch. A batch this large is dense among the index's keys
/// unless the repository holds millions of blobs, so the index cache answers it with one scan
/// on each core instead of point look-ups: 8,192 a batch took a third of the writing thread's
/// time in a dump of this corpus's 700 MB database (170k blobs), and the dump 2.36 -> 1.90 s.
/// Each batch scans the whole key range, and the writing thread waits for it: at 65,536 that
/// database took three scans, two of them in the middle of the dump, when the disk then ran out
/// of pieces to write. At 262,144 it takes one, before the first write (24 ms later than with
/// 65,536): medians of 10-12 interleaved dumps 0.795-0.82 against 0.81-0.84 s, user time -3 to
/// -5%, peak memory the same (94 MB). About 20 MB of ids and entries wait at a time.
const LOOKUP_BATCH: usize = 262_144;
/// Blobs of one pack closer than this (within one segment) are fetched in one read.
const MAX_GAP: u64 = 1 << 20;
/// A segment grows no longer than this in plaintext bytes (one blob alone may be longer)...
const SEGMENT_RAW: u64 = 4 << 20;
/// ...nor in sealed bytes.
const SEGMENT_SEALED: u64 = 4 << 20;
/// A run is handed to the kernel this many bytes at a time. Linux sizes the page-cache folios a
/// buffered write allocates by the write's length, and on these virtual machines large fresh
/// folios are slow to fill (their memory was handed back to the host): one 4 MiB write per run
/// took the kernel twice as long in all (0.65-1.0 s against 0.36-0.44 s for 700 MB).
const WRITE_PIECE: usize = 1 << 20;
/// Segments planned but not yet written, per worker.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// A stretch of the file's blobs, in file order; its worker reads them pack by pack (a
/// database dump interleaves blobs of older packs with new ones) in few coalesced reads.
pub(super) struct Run {
    pub(super) blobs: Vec<(BlobId, IndexEntry)>,
}

/// What comes next in the file: a run to read, or a blob no index entry is known for.
enum Item {
    Run(Run),
    Missing(BlobId),
}

/// A run's verified plaintext, its blobs back to back in file order up to the first that
/// failed, and why the run stopped early, if it did.
pub(super) struct Opened {
    pub(super) plain: Vec<u8>,
    pub(super) failed: Option<Error>,
}

/// Writes a file node's content to `out` (see the module doc), with `workers` threads opening
/// blobs. Errors if the node is not a regular file or a blob is missing or damaged; `out` then
/// holds the content up to that blob.
pub(crate) fn dump_from(
    trees: &dyn TreeSource,
    packs: &dyn PackSource,
    node: &Node,
    out: &mut dyn Write,
    workers: usize,
) -> Result<()> {
    let NodeKind::File { content } = &node.kind else {
        return Err(Error::Usage(format!("{} is not a regular file", String::from_utf8_lossy(&node.name))));
    };
    let workers = workers.max(1);
    let (job_tx, job_rx) = crossbeam_channel::bounded::<(usize, Run)>(workers * IN_FLIGHT_PER_WORKER);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, Opened)>();
    // Written runs' buffers go back to the workers: no run pays for fresh pages (which these
    // machines' hosts make dear) or the allocator. At most one buffer per run in flight exists.
    let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (job_rx, done_tx, spare_rx) = (job_rx.clone(), done_tx.clone(), spare_rx.clone());
            s.spawn(move || {
                let (mut bundle, mut read) = (LastBundle::default(), ReadBuf::default());
                for (seq, run) in job_rx {
                    let buf = spare_rx.try_recv().unwrap_or_default();
                    let opened = open_run(packs, &run, buf, &mut read, &mut bundle);
                    read.release_over(KEEP_READ);
                    if done_tx.send((seq, opened)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut planner = Planner { trees, rest: content, items: VecDeque::new() };
        // Dropping `job_tx` on any return lets the workers finish their queue and stop.
        write_in_order(&mut planner, job_tx, &done_rx, &spare_tx, workers * IN_FLIGHT_PER_WORKER, out)
    })?;
    out.flush().map_err(|e| Error::io("writing the dumped file", e))
}

/// Hands runs to the workers, at most `limit` ahead of the writer, and writes their results in
/// file order.
fn write_in_order(
    planner: &mut Planner<'_>,
    jobs: crossbeam_channel::Sender<(usize, Run)>,
    done: &crossbeam_channel::Receiver<(usize, Opened)>,
    spare: &crossbeam_channel::Sender<Vec<u8>>,
    limit: usize,
    out: &mut dyn Write,
) -> Result<()> {
    let (mut sent, mut written) = (0usize, 0usize);
    let mut stop: Option<Error> = None;
    let mut ready: BTreeMap<usize, Opened> = BTreeMap::new();
    loop {
        while stop.is_none() && sent - written < limit {
            match planner.next()? {
                Some(Item::Run(run)) => {
                    jobs.send((sent, run)).map_err(|_| worker_gone())?;
                    sent += 1;
                }
                Some(Item::Missing(id)) => stop = Some(missing(&id)),
                None => break,
            }
        }
        if written == sent {
            return stop.map_or(Ok(()), Err);
        }
        let Opened { plain, failed } = loop {
            if let Some(opened) = ready.remove(&written) {
                break opened;
            }
            let (seq, opened) = done.recv().map_err(|_| worker_gone())?;
            ready.insert(seq, opened);
        };
        for part in plain.chunks(WRITE_PIECE) {
            out.write_all(part).map_err(|e| Error::io("writing the dumped file", e))?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // A buffer grown past a run's usual size for one large blob is not kept.
        if plain.capacity() <= 2 * SEGMENT_RAW as usize {
            let _ = spare.send(plain);
        }
        written += 1;
    }
}

fn worker_gone() -> Error {
    Error::io("dumping", std::io::Error::other("a dump worker stopped"))
}

fn missing(id: &BlobId) -> Error {
    Error::Missing { object: ObjectRef::new(ObjectKind::Blob, id.to_hex()) }
}

/// Turns a file's blob ids into runs, looking ids up a batch at a time.
struct Planner<'a> {
    trees: &'a dyn TreeSource,
    rest: &'a [BlobId],
    items: VecDeque<Item>,
}

impl Planner<'_> {
    fn next(&mut self) -> Result<Option<Item>> {
        if self.items.is_empty() && !self.rest.is_empty() {
            let (batch, rest) = self.rest.split_at(self.rest.len().min(LOOKUP_BATCH));
            self.rest = rest;
            let entries = self.trees.locate_data_many(batch)?;
            self.items = cut_runs(batch.iter().copied().zip(entries));
        }
        Ok(self.items.pop_front())
    }
}

/// Cuts blobs, in file order, into segments of bounded size. A bundle's sealed bytes count
/// once for the blobs that follow each other in it.
fn cut_runs(blobs: impl Iterator<Item = (BlobId, Option<IndexEntry>)>) -> VecDeque<Item> {
    let mut items = VecDeque::new();
    let mut run: Vec<(BlobId, IndexEntry)> = Vec::new();
    let (mut raw, mut sealed) = (0u64, 0u64);
    let mut last_bundle = None;
    for (id, entry) in blobs {
        let Some(entry) = entry else {
            if !run.is_empty() {
                items.push_back(Item::Run(Run { blobs: std::mem::take(&mut run) }));
            }
            items.push_back(Item::Missing(id));
            // Nothing after a missing blob is written, so nothing after it is planned.
            return items;
        };
        let bundle = Some((entry.pack, entry.offset));
        let more_sealed = if bundle == last_bundle { 0 } else { u64::from(entry.length) };
        last_bundle = bundle;
        let full = raw + u64::from(entry.raw_length) > SEGMENT_RAW || sealed + more_sealed > SEGMENT_SEALED;
        if full && !run.is_empty() {
            items.push_back(Item::Run(Run { blobs: std::mem::take(&mut run) }));
            (raw, sealed) = (0, u64::from(entry.length) - more_sealed);
        }
        raw += u64::from(entry.raw_length);
        sealed += more_sealed;
        run.push((id, entry));
    }
    if !run.is_empty() {
        items.push_back(Item::Run(Run { blobs: run }));
    }
    items
}

/// A segment's blobs (positions in it) grouped into reads: per pack, by offset, neighbours
/// closer than [`MAX_GAP`] together. Each read is (pack, start, end, positions).
fn plan_reads(run: &Run) -> Vec<(crate::id::PackId, u64, u64, Vec<usize>)> {
    let mut order: Vec<usize> = (0..run.blobs.len()).collect();
    order.sort_by_key(|&i| (run.blobs[i].1.pack, run.blobs[i].1.offset));
    let mut reads: Vec<(crate::id::PackId, u64, u64, Vec<usize>)> = Vec::new();
    for i in order {
        let e = &run.blobs[i].1;
        let std::ops::Range { start, end } = e.range();
        match reads.last_mut() {
            Some((pack, _, last_end, at)) if *pack == e.pack && start <= last_end.saturating_add(MAX_GAP) => {
                *last_end = (*last_end).max(end);
                at.push(i);
            }
            _ => reads.push((e.pack, start, end, vec![i])),
        }
    }
    reads
}

/// Reads one segment (through `read`) and copies its blobs, each verified, into `buf` (reused:
/// its old contents are overwritten, or cut off), each at its place in file order; returns the
/// plaintext up to the first blob that fails, and why it failed. Reads go by offset, so the blobs
/// of one bundle come one after another and `bundle` opens it once.
pub(super) fn open_run(
    packs: &dyn PackSource,
    run: &Run,
    mut buf: Vec<u8>,
    read: &mut ReadBuf,
    bundle: &mut LastBundle,
) -> Opened {
    // The first failure in file order: (position, error). Blobs from it on are not opened.
    let mut first: Option<(usize, Error)> = None;
    // Where each blob starts in `buf`, and where the last one ends.
    let mut starts = Vec::with_capacity(run.blobs.len() + 1);
    let mut total = 0usize;
    for (i, (id, e)) in run.blobs.iter().enumerate() {
        // The index cache is local and unauthenticated: a length no blob can have is damage,
        // not a size to allocate.
        if u64::from(e.raw_length) > crate::blob::MAX_BLOB_LEN {
            let (size, limit) = (u64::from(e.raw_length), crate::blob::MAX_BLOB_LEN);
            let problem = crate::error::FormatError::TooLarge { what: "blob", size, limit };
            first = Some((i, crate::repo::blob_damaged(crate::blob::BlobType::Data, id, &e.pack, problem)));
            break;
        }
        starts.push(total);
        total += e.raw_length as usize;
    }
    starts.push(total);
    // A reused buffer's old bytes are not zeroed first (that was 5% of a dump's CPU): every
    // blob's place is written before the run is kept, and the run is cut before the first blob
    // that was not (see `prefix`). `resize` cuts a longer buffer and zero-fills only a tail
    // beyond the old length.
    buf.resize(total, 0);
    let fail = |at: usize, err: Error, first: &mut Option<(usize, Error)>| {
        if first.as_ref().is_none_or(|(pos, _)| at < *pos) {
            *first = Some((at, err));
        }
    };
    for (pack, start, end, at) in plan_reads(run) {
        match packs.read_range(&pack, start..end, read) {
            Ok(()) => {
                let bytes = read.bytes();
                for i in at {
                    if first.as_ref().is_some_and(|(pos, _)| *pos <= i) {
                        continue; // nothing from a failed blob on is written
                    }
                    let (id, e) = &run.blobs[i];
                    let from = usize::try_from(u64::from(e.offset) - start).unwrap_or(usize::MAX);
                    let sealed = from.checked_add(e.length as usize).and_then(|to| bytes.get(from..to));
                    let opened = match sealed {
                        Some(sealed) => take_blob(packs, bundle, id, e, sealed).and_then(|plain| {
                            let to = buf.get_mut(starts[i]..starts[i + 1]).filter(|to| to.len() == plain.len());
                            let to = to.ok_or_else(|| Error::Usage("internal: a blob's place in its run".into()))?;
                            to.copy_from_slice(plain);
                            Ok(())
                        }),
                        None => Err(Error::Missing { object: ObjectRef::new(ObjectKind::Pack, pack.to_hex()) }),
                    };
                    if let Err(err) = opened {
                        fail(i, err, &mut first);
                    }
                }
            }
            // Only the first failure in file order is reported; this read's first blob stands for it.
            Err(err) => fail(at.iter().copied().min().unwrap_or(0), err, &mut first),
        }
    }
    match first {
        Some((pos, err)) => Opened { plain: prefix(buf, &starts, pos), failed: Some(err) },
        None => Opened { plain: buf, failed: None },
    }
}

/// `buf` cut to the blobs before position `pos`.
fn prefix(mut buf: Vec<u8>, starts: &[usize], pos: usize) -> Vec<u8> {
    buf.truncate(starts.get(pos).copied().unwrap_or(0));
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Id, PackId};

    fn entry(pack: u8, offset: u32, length: u32) -> Option<IndexEntry> {
        Some(IndexEntry { pack: PackId(Id([pack; 32])), offset, length, raw_offset: 0, raw_length: length * 3 })
    }

    fn shape(items: &VecDeque<Item>) -> Vec<usize> {
        items
            .iter()
            .map(|i| match i {
                Item::Run(r) => r.blobs.len(),
                Item::Missing(_) => 0,
            })
            .collect()
    }

    #[test]
    fn segments_are_bounded_and_read_pack_by_pack() {
        let id = |n: u8| BlobId(Id([n; 32]));
        let big = (SEGMENT_RAW / 3) as u32;
        // raw_length is 3 x length: a segment holds at most one blob of `big / 3` ... see entry().
        let blobs = vec![
            (id(1), entry(1, 0, big / 3)),
            (id(2), entry(2, 500, 10)),
            (id(3), entry(1, big / 3 + 5, 10)),
            (id(4), entry(2, 510, big)),
            (id(5), entry(1, 0, 10)),
        ];
        let items = cut_runs(blobs.into_iter());
        assert_eq!(shape(&items), vec![3, 1, 1]);
        let Some(Item::Run(first)) = items.front() else { panic!("a run first") };
        let reads: Vec<(u8, u64, u64, Vec<usize>)> =
            plan_reads(first).into_iter().map(|(p, s, e, at)| (p.as_bytes()[0], s, e, at)).collect();
        let third = u64::from(big / 3);
        assert_eq!(reads, vec![(1, 0, third + 15, vec![0, 2]), (2, 500, 510, vec![1])]);
    }

    #[test]
    fn planning_stops_at_a_missing_blob() {
        let id = |n: u8| BlobId(Id([n; 32]));
        let blobs = vec![(id(1), entry(1, 0, 10)), (id(2), None), (id(3), entry(1, 10, 10))];
        assert_eq!(shape(&cut_runs(blobs.into_iter())), vec![1, 0]);
    }
}
