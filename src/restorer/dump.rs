//! `dump`: one file's content to a writer, in order, every blob verified before any of its bytes
//! are written.
//!
//! Three things overlap: this thread looks blobs up in sorted batches and cuts them into *runs*
//! (neighbouring blobs of one pack, read with one request); worker threads read runs and open
//! (authenticate, decompress, re-hash) their blobs; this thread writes finished runs in order
//! while the workers go on. At most [`IN_FLIGHT_PER_WORKER`] runs per worker are planned but
//! not yet written, and a run holds at most [`RUN_SEALED`] sealed and [`RUN_RAW`] plain bytes,
//! so memory follows these settings, not the size of the file. Everything before the first bad
//! or missing blob is written; nothing after it.

use super::PackSource;
use super::plan::TreeSource;
use crate::error::{Error, ObjectKind, ObjectRef, Result};
use crate::id::BlobId;
use crate::index::IndexEntry;
use crate::tree::{Node, NodeKind};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;

/// Blob ids looked up in one sorted batch.
const LOOKUP_BATCH: usize = 8192;
/// Neighbouring blobs of one pack closer than this are fetched in one read.
const MAX_GAP: u64 = 1 << 20;
/// A run grows no longer than this in sealed bytes (one blob alone may be longer)...
const RUN_SEALED: u64 = 2 << 20;
/// ...nor in plaintext bytes.
const RUN_RAW: u64 = 8 << 20;
/// Runs planned but not yet written, per worker.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// Neighbouring blobs of one pack, read with one request.
struct Run {
    blobs: Vec<(BlobId, IndexEntry)>,
}

/// What comes next in the file: a run to read, or a blob no index entry is known for.
enum Item {
    Run(Run),
    Missing(BlobId),
}

/// A run's verified plaintexts in order, and why the run stopped early, if it did.
type Opened = (Vec<Vec<u8>>, Option<Error>);

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
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            s.spawn(move || {
                for (seq, run) in job_rx {
                    if done_tx.send((seq, open_run(packs, &run))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let mut planner = Planner { trees, rest: content, items: VecDeque::new() };
        // Dropping `job_tx` on any return lets the workers finish their queue and stop.
        write_in_order(&mut planner, job_tx, &done_rx, workers * IN_FLIGHT_PER_WORKER, out)
    })?;
    out.flush().map_err(|e| Error::io("writing the dumped file", e))
}

/// Hands runs to the workers, at most `limit` ahead of the writer, and writes their results in
/// file order.
fn write_in_order(
    planner: &mut Planner<'_>,
    jobs: crossbeam_channel::Sender<(usize, Run)>,
    done: &crossbeam_channel::Receiver<(usize, Opened)>,
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
        let (plains, failed) = loop {
            if let Some(opened) = ready.remove(&written) {
                break opened;
            }
            let (seq, opened) = done.recv().map_err(|_| worker_gone())?;
            ready.insert(seq, opened);
        };
        for plain in &plains {
            out.write_all(plain).map_err(|e| Error::io("writing the dumped file", e))?;
        }
        if let Some(e) = failed {
            return Err(e);
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

/// Groups blobs, in file order, into runs of neighbours in one pack.
fn cut_runs(blobs: impl Iterator<Item = (BlobId, Option<IndexEntry>)>) -> VecDeque<Item> {
    let end = |e: &IndexEntry| u64::from(e.offset) + u64::from(e.length);
    let mut items = VecDeque::new();
    let mut run: Vec<(BlobId, IndexEntry)> = Vec::new();
    let mut raw = 0u64;
    for (id, entry) in blobs {
        let Some(entry) = entry else {
            if !run.is_empty() {
                items.push_back(Item::Run(Run { blobs: std::mem::take(&mut run) }));
            }
            items.push_back(Item::Missing(id));
            // Nothing after a missing blob is written, so nothing after it is planned.
            return items;
        };
        let joins = run.first().zip(run.last()).is_some_and(|((_, first), (_, last))| {
            entry.pack == last.pack
                && u64::from(entry.offset) >= end(last)
                && u64::from(entry.offset) - end(last) <= MAX_GAP
                && end(&entry) - u64::from(first.offset) <= RUN_SEALED
                && raw + u64::from(entry.raw_length) <= RUN_RAW
        });
        if !joins && !run.is_empty() {
            items.push_back(Item::Run(Run { blobs: std::mem::take(&mut run) }));
            raw = 0;
        }
        raw += u64::from(entry.raw_length);
        run.push((id, entry));
    }
    if !run.is_empty() {
        items.push_back(Item::Run(Run { blobs: run }));
    }
    items
}

/// Reads one run and opens its blobs in order, stopping at the first that fails.
fn open_run(packs: &dyn PackSource, run: &Run) -> Opened {
    let Some(((_, first), (_, last))) = run.blobs.first().zip(run.blobs.last()) else {
        return (Vec::new(), None);
    };
    let start = u64::from(first.offset);
    let bytes = match packs.read_range(&first.pack, start..u64::from(last.offset) + u64::from(last.length)) {
        Ok(b) => b,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut plains = Vec::with_capacity(run.blobs.len());
    for (id, e) in &run.blobs {
        let at = usize::try_from(u64::from(e.offset) - start).unwrap_or(usize::MAX);
        let sealed = at.checked_add(e.length as usize).and_then(|end| bytes.get(at..end));
        let opened = match sealed {
            Some(sealed) => packs.open_data(id, e, sealed).and_then(|plain| check_length(id, e, plain)),
            None => Err(Error::Missing { object: ObjectRef::new(ObjectKind::Pack, e.pack.to_hex()) }),
        };
        match opened {
            Ok(plain) => plains.push(plain),
            Err(err) => return (plains, Some(err)),
        }
    }
    (plains, None)
}

/// A blob must have the plaintext length the index promised.
fn check_length(id: &BlobId, e: &IndexEntry, plain: Vec<u8>) -> Result<Vec<u8>> {
    if plain.len() as u64 == u64::from(e.raw_length) {
        return Ok(plain);
    }
    let problem = crate::error::FormatError::invalid(
        "blob",
        format!("has {} bytes, the index says {}", plain.len(), e.raw_length),
    );
    Err(crate::repo::blob_damaged(crate::blob::BlobType::Data, id, &e.pack, problem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{Id, PackId};

    fn entry(pack: u8, offset: u32, length: u32) -> Option<IndexEntry> {
        Some(IndexEntry { pack: PackId(Id([pack; 32])), offset, length, raw_length: length * 3 })
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
    fn runs_join_neighbours_of_one_pack_in_file_order_only() {
        let id = |n: u8| BlobId(Id([n; 32]));
        let blobs = vec![
            (id(1), entry(1, 0, 100)),
            (id(2), entry(1, 100, 100)),
            (id(3), entry(1, 50, 10)),                            // backwards: new run
            (id(4), entry(2, 60, 10)),                            // other pack: new run
            (id(5), entry(2, 70 + (2 << 20), 10)),                // gap too large: new run
            (id(6), entry(2, 80 + (2 << 20), RUN_SEALED as u32)), // run too long: new run
        ];
        assert_eq!(shape(&cut_runs(blobs.into_iter())), vec![2, 1, 1, 1, 1]);
    }

    #[test]
    fn planning_stops_at_a_missing_blob() {
        let id = |n: u8| BlobId(Id([n; 32]));
        let blobs = vec![(id(1), entry(1, 0, 10)), (id(2), None), (id(3), entry(1, 10, 10))];
        assert_eq!(shape(&cut_runs(blobs.into_iter())), vec![1, 0]);
    }
}
