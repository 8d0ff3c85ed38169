//! `--read-data`: every stored, indexed pack downloaded in 4 MiB pieces, `workers` at a time,
//! and verified: its BLAKE3 against its name, its header against the index object's list, and
//! every blob the index places in it taken from its opened (authenticated, decompressed)
//! bundle and re-hashed. A pack's problems and
//! lost blobs go into its one [`Damage`] entry.

use super::damage::{Damage, PACK_DAMAGED, Target};
use super::{Checker, Finding, INDEX_DAMAGED, damage_text};
use crate::backend::object_path;
use crate::blob;
use crate::error::{BackendError, ObjectKind, ObjectRef, Result};
use crate::id::{BlobId, Id, PackId};
use crate::pack::{self, PackBlob};
use crate::repo::{Repository, blob_kind};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// One pack read whole by `read_data`.
struct Verdict {
    pack: PackId,
    problems: Vec<String>,
    missing: bool,
    lost: Vec<BlobId>,
    blobs_read: u64,
    bytes_read: u64,
}

impl Checker<'_> {
    /// Reads every stored, indexed pack whole on `workers` threads, with its blob list from the
    /// index object that names it (index objects are opened again, one at a time). Packs flow
    /// through a bounded queue, so a worker never waits for a slower one to finish a batch, and
    /// at most `2 × workers` packs' blob lists are queued or being read.
    pub(super) fn read_packs(&mut self) -> Result<()> {
        let repo = self.repo;
        let (packs_tx, packs_rx) = crossbeam_channel::bounded::<(PackId, Vec<PackBlob>, u64)>(self.workers);
        let (verdicts_tx, verdicts_rx) = crossbeam_channel::unbounded::<Result<Verdict>>();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..self.workers {
                let (rx, tx, stop) = (packs_rx.clone(), verdicts_tx.clone(), &stop);
                scope.spawn(move || {
                    for (id, blobs, size) in rx {
                        let verdict = read_pack(repo, id, &blobs, size);
                        if verdict.is_err() {
                            stop.store(true, Ordering::SeqCst);
                        }
                        if tx.send(verdict).is_err() {
                            return;
                        }
                    }
                });
            }
            drop((packs_rx, verdicts_tx));
            let queued = self.queue_packs(&packs_tx, &verdicts_rx, &stop);
            drop(packs_tx);
            queued
        })?;
        for verdict in verdicts_rx {
            self.note_verdict(verdict?);
        }
        Ok(())
    }

    /// Sends every stored pack the good index objects name to the workers, once, taking in
    /// the verdicts that are ready as it goes.
    fn queue_packs(
        &mut self,
        packs: &crossbeam_channel::Sender<(PackId, Vec<PackBlob>, u64)>,
        verdicts: &crossbeam_channel::Receiver<Result<Verdict>>,
        stop: &AtomicBool,
    ) -> Result<()> {
        let mut queued: HashSet<PackId> = HashSet::new();
        for id in self.seen.good.clone() {
            let file = match self.repo.load_index_file(&id) {
                Ok(file) => file,
                Err(e) => {
                    let problem = format!("changed during the check: {}", damage_text(e)?);
                    self.emit(Finding {
                        object: ObjectRef::new(ObjectKind::Index, id.to_hex()),
                        problem,
                        hint: INDEX_DAMAGED.into(),
                    });
                    continue;
                }
            };
            for p in file.packs {
                if stop.load(Ordering::SeqCst) {
                    return Ok(()); // a worker failed; its error comes with the verdicts
                }
                if let Some(&size) = self.stored.get(&p.id)
                    && queued.insert(p.id)
                    && packs.send((p.id, p.blobs, size)).is_err()
                {
                    return Ok(());
                }
                for verdict in verdicts.try_iter() {
                    self.note_verdict(verdict?);
                }
            }
        }
        Ok(())
    }

    fn note_verdict(&mut self, v: Verdict) {
        self.report.blobs_read += v.blobs_read;
        self.report.bytes_read += v.bytes_read;
        if v.problems.is_empty() {
            return;
        }
        let d = self.damage.entry(Target::Pack(v.pack)).or_insert_with(|| Damage::pack(v.pack, PACK_DAMAGED));
        d.problems.extend(v.problems);
        d.all_lost |= v.missing;
        d.lost.extend(v.lost);
    }
}

/// Bytes of a pack read at once (plus at most one blob reaching past them).
const READ_CHUNK: u64 = 4 << 20;

/// Reads one pack front to back in chunks, hashing every byte, and verifies its name, its
/// header against the index, and every blob the index places in it (the blobs restore would
/// read). Memory: one chunk and one blob, whatever the pack's size.
fn read_pack(repo: &Repository, pack: PackId, index: &[PackBlob], size: u64) -> Result<Verdict> {
    read_pack_in(repo, pack, index, size, READ_CHUNK)
}

fn read_pack_in(repo: &Repository, pack: PackId, index: &[PackBlob], size: u64, chunk: u64) -> Result<Verdict> {
    let mut v = Verdict { pack, problems: Vec::new(), missing: false, lost: Vec::new(), blobs_read: 0, bytes_read: 0 };
    let path = object_path(ObjectKind::Pack, &pack.to_hex());
    let mut order: Vec<&PackBlob> = index.iter().collect();
    order.sort_by_key(|b| (b.offset, b.raw_offset));
    let mut bundle = LastBundle::default();
    let mut hasher = blake3::Hasher::new();
    let (mut at, mut next, mut first) = (0u64, 0usize, None);
    let mut last = bytes::Bytes::new();
    while at < size {
        let end = chunk_end(&order[next..], at, size, chunk);
        let Some(bytes) = read_or_vanished(repo, &path, at..end, &mut v)? else { return Ok(v) };
        hasher.update(&bytes);
        v.bytes_read += bytes.len() as u64;
        // Every blob starting in this chunk; chunks end between blobs, so only an index that
        // overlaps blobs needs a read of its own.
        while let Some(b) = order.get(next).filter(|b| u64::from(b.offset) < end) {
            next += 1;
            let std::ops::Range { start: s, end: e } = b.bundle_range();
            let sealed = if s >= at && e <= end {
                bytes.slice((s - at) as usize..(e - at) as usize)
            } else if e <= size {
                match read_or_vanished(repo, &path, s..e, &mut v)? {
                    Some(sealed) => sealed,
                    None => return Ok(v),
                }
            } else {
                verify_blob(b, Err(past_the_end()), &mut v, &mut first);
                continue;
            };
            verify_blob(b, verify(repo, &mut bundle, b, &sealed), &mut v, &mut first);
        }
        (at, last) = (end, bytes);
    }
    for b in &order[next..] {
        verify_blob(b, Err(past_the_end()), &mut v, &mut first);
    }
    let mut problems = Vec::new();
    if Id(*hasher.finalize().as_bytes()) != pack.0 {
        problems.push("its content does not match its name (the bytes were changed)".into());
    }
    match read_header(repo, &path, size, &last, &mut v)? {
        Some(Ok(header)) => problems.extend(compare_header(&header, index)),
        Some(Err(e)) => problems.push(format!("its header cannot be read: {e}")),
        None => return Ok(v),
    }
    if let Some(first) = first {
        problems.push(format!("{} of its {} blobs fail verification (first: {first})", v.lost.len(), index.len()));
    }
    v.problems = problems;
    Ok(v)
}

/// The bundle opened last, by offset, length and associated data: blobs go by offset, so the
/// blobs of one bundle are verified one after another and it is opened once.
type LastBundle = blob::LastBundle<(u32, u32, blob::Aad)>;

/// Verifies blob `b`, whose bundle's sealed bytes are `sealed`.
fn verify(
    repo: &Repository,
    bundle: &mut LastBundle,
    b: &PackBlob,
    sealed: &[u8],
) -> std::result::Result<(), crate::error::FormatError> {
    let aad = repo.sealing().aad(b.kind, &b.id);
    let plain = bundle.get((b.offset, b.length, aad), |out| blob::open_bundle(repo.key(), &aad, sealed, out))?;
    blob::blob_in(repo.key(), repo.sealing(), &b.id, b.raw_offset, b.raw_length, plain).map(|_| ())
}

fn past_the_end() -> crate::error::FormatError {
    crate::error::FormatError::invalid("blob", "lies past the end of the pack")
}

/// Where the chunk read from `at` ends: about `chunk` bytes on, moved to a blob boundary so that
/// no blob starting in it reaches past it (a blob longer than a chunk gets a chunk of its own).
/// `rest` are the blobs not yet verified, by offset.
fn chunk_end(rest: &[&PackBlob], at: u64, size: u64, chunk: u64) -> u64 {
    let mut end = at.saturating_add(chunk).min(size);
    for b in rest.iter().take_while(|b| u64::from(b.offset) < end) {
        let bundle = b.bundle_range();
        if bundle.end > end {
            end = if bundle.start > at { bundle.start } else { bundle.end.min(size) };
            break;
        }
    }
    end.max(at + 1).min(size)
}

/// Counts one blob read, and records it as lost if it failed.
fn verify_blob(
    b: &PackBlob,
    opened: std::result::Result<(), crate::error::FormatError>,
    v: &mut Verdict,
    first: &mut Option<String>,
) {
    v.blobs_read += 1;
    if let Err(e) = opened {
        first.get_or_insert_with(|| format!("{} {}: {e}", blob_kind(b.kind), b.id.short()));
        v.lost.push(b.id);
    }
}

/// A range of the pack; `None` (recorded in the verdict) if the pack vanished meanwhile.
fn read_or_vanished(
    repo: &Repository,
    path: &str,
    range: std::ops::Range<u64>,
    v: &mut Verdict,
) -> Result<Option<bytes::Bytes>> {
    match repo.backend().get_range(path, range) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(BackendError::NotFound(_)) => {
            v.problems.push("vanished from the storage during the check".into());
            v.missing = true;
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The pack's header, decoded; its bytes come from the last chunk read when they lie inside
/// it. `None` if the pack vanished meanwhile.
fn read_header(
    repo: &Repository,
    path: &str,
    size: u64,
    last: &bytes::Bytes,
    v: &mut Verdict,
) -> Result<Option<std::result::Result<Vec<PackBlob>, crate::error::FormatError>>> {
    let last_start = size - last.len() as u64;
    let get = |r: std::ops::Range<u64>, v: &mut Verdict| {
        if r.start >= last_start {
            return Ok(Some(last.slice((r.start - last_start) as usize..(r.end - last_start) as usize)));
        }
        read_or_vanished(repo, path, r, v)
    };
    let Some(tail) = get(size.saturating_sub(4)..size, v)? else { return Ok(None) };
    let range = match pack::header_range(size, &tail) {
        Ok(range) => range,
        Err(e) => return Ok(Some(Err(e))),
    };
    let Some(sealed) = get(range.clone(), v)? else { return Ok(None) };
    Ok(Some(pack::decode_header(repo.key(), &sealed, range.start)))
}

fn compare_header(header: &[PackBlob], index: &[PackBlob]) -> Option<String> {
    let key = |b: &PackBlob| (b.offset, b.length, b.raw_offset, b.raw_length, b.kind, b.id);
    let in_header: HashSet<_> = header.iter().map(key).collect();
    let in_index: HashSet<_> = index.iter().map(key).collect();
    let only_index = in_index.difference(&in_header).count();
    let only_header = in_header.difference(&in_index).count();
    (only_index + only_header > 0)
        .then(|| format!("its header and the index disagree: {only_index} entries only in the index, {only_header} only in the header"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{BlobType, seal_blob, seal_bundle};
    use crate::pack::PackWriter;
    use crate::repo::testing::memory_repo;
    use bytes::Bytes;

    /// Blobs in bundles of 2, 1 and 2: every read size verifies all five; a flipped byte in a
    /// bundle loses exactly the blobs in it.
    #[test]
    fn chunked_reads_verify_bundles_that_straddle_chunks() {
        let t = memory_repo();
        let repo = &t.repo;
        let mut w = PackWriter::new(repo.sealing());
        let data: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i) * 37]).collect();
        for group in [&data[..2], &data[2..3], &data[3..]] {
            let ids: Vec<(BlobId, u32)> = group.iter().map(|d| (repo.key().blob_id(d), d.len() as u32)).collect();
            let parts: Vec<&[u8]> = group.iter().map(|d| d.as_slice()).collect();
            let sealed = seal_bundle(repo.key(), &repo.sealing().aad(BlobType::Data, &ids[0].0), &parts, 3);
            w.add_bundle(BlobType::Data, &ids, &sealed).unwrap();
        }
        let p = w.finish(repo.key()).unwrap();
        repo.put_pack(&p).unwrap();
        let size = p.bytes.len() as u64;
        for chunk in [1, 7, 64, 1 << 20] {
            let v = read_pack_in(repo, p.id, &p.blobs, size, chunk).unwrap();
            assert!(v.problems.is_empty(), "chunk {chunk}: {:?}", v.problems);
            assert_eq!((v.blobs_read, v.bytes_read), (5, size));
        }
        let path = object_path(ObjectKind::Pack, &p.id.to_hex());
        // One flipped byte inside the lone blob's bundle, then inside the last bundle: the name
        // and the blobs of that bundle fail, nothing else.
        for (damaged, lost) in [(2, vec![2]), (4, vec![3, 4])] {
            let mut bytes = p.bytes.clone();
            bytes[p.blobs[damaged].offset as usize + 20] ^= 1;
            repo.backend().delete(&path).unwrap();
            repo.backend().put_new(&path, Bytes::from(bytes)).unwrap();
            for chunk in [7, 1 << 20] {
                let v = read_pack_in(repo, p.id, &p.blobs, size, chunk).unwrap();
                let want: Vec<BlobId> = lost.iter().map(|&i| p.blobs[i].id).collect();
                assert_eq!(v.lost, want, "chunk {chunk}");
                assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
            }
        }
    }

    /// Format 1's single blobs verify the same way.
    #[test]
    fn format_one_packs_verify() {
        let t = crate::repo::testing::memory_repo_of(crate::repo::config::RepoConfig::format_1());
        let repo = &t.repo;
        let mut w = PackWriter::new(repo.sealing());
        for i in 0..3u8 {
            let data = vec![i; 100];
            let id = repo.key().blob_id(&data);
            w.add(BlobType::Data, id, &seal_blob(repo.key(), repo.sealing(), BlobType::Data, &id, &data, 3), 100)
                .unwrap();
        }
        let p = w.finish(repo.key()).unwrap();
        repo.put_pack(&p).unwrap();
        let v = read_pack_in(repo, p.id, &p.blobs, p.bytes.len() as u64, 64).unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.blobs_read, 3);
    }
}
