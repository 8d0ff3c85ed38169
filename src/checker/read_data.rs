//! `--read-data`: every stored, indexed pack downloaded whole, `workers` at a time (so at most
//! that many packs are in memory), and verified: its BLAKE3 against its name, its header against
//! the index object's list, and every blob the index places in it opened, decompressed and
//! re-hashed. A pack's problems and lost blobs go into its one [`Damage`] entry.

use super::damage::{Damage, PACK_DAMAGED, Target};
use super::{Checker, Finding, INDEX_DAMAGED, damage_text};
use crate::backend::object_path;
use crate::blob;
use crate::error::{BackendError, ObjectKind, ObjectRef, Result};
use crate::id::{BlobId, Id, PackId};
use crate::pack::{self, PackBlob};
use crate::repo::{Repository, blob_kind};
use rayon::prelude::*;
use std::collections::HashSet;

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
    /// Reads every stored, indexed pack whole, `workers` at a time, with its blob list from the
    /// index object that names it (index objects are opened again, one at a time).
    pub(super) fn read_packs(&mut self) -> Result<()> {
        let mut queued: HashSet<PackId> = HashSet::new();
        let mut batch: Vec<(PackId, Vec<PackBlob>)> = Vec::new();
        for id in self.good_indexes.clone() {
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
                if self.stored.contains_key(&p.id) && queued.insert(p.id) {
                    batch.push((p.id, p.blobs));
                }
                if batch.len() >= self.workers * 2 {
                    self.read_batch(std::mem::take(&mut batch))?;
                }
            }
        }
        self.read_batch(batch)
    }

    fn read_batch(&mut self, batch: Vec<(PackId, Vec<PackBlob>)>) -> Result<()> {
        let repo = self.repo;
        let verdicts: Vec<Result<Verdict>> =
            self.pool.install(|| batch.into_par_iter().map(|(id, blobs)| read_pack(repo, id, &blobs)).collect());
        for verdict in verdicts {
            let v = verdict?;
            self.report.blobs_read += v.blobs_read;
            self.report.bytes_read += v.bytes_read;
            if v.problems.is_empty() {
                continue;
            }
            let d = self.damage.entry(Target::Pack(v.pack)).or_insert_with(|| Damage::pack(v.pack, PACK_DAMAGED));
            d.problems.extend(v.problems);
            d.all_lost |= v.missing;
            d.lost.extend(v.lost);
        }
        Ok(())
    }
}

/// Downloads one pack and verifies its name, its header against the index, and every blob the
/// index places in it (the blobs restore would read).
fn read_pack(repo: &Repository, pack: PackId, index: &[PackBlob]) -> Result<Verdict> {
    let mut v = Verdict { pack, problems: Vec::new(), missing: false, lost: Vec::new(), blobs_read: 0, bytes_read: 0 };
    let bytes = match repo.backend().get(&object_path(ObjectKind::Pack, &pack.to_hex())) {
        Ok(bytes) => bytes,
        Err(BackendError::NotFound(_)) => {
            v.problems.push("vanished from the storage during the check".into());
            v.missing = true;
            return Ok(v);
        }
        Err(e) => return Err(e.into()),
    };
    v.bytes_read = bytes.len() as u64;
    if Id::of_stored(&bytes) != pack.0 {
        v.problems.push("its content does not match its name (the bytes were changed)".into());
    }
    match pack::read_header(repo.key(), &bytes) {
        Ok(header) => v.problems.extend(compare_header(&header, index)),
        Err(e) => v.problems.push(format!("its header cannot be read: {e}")),
    }
    let mut first = None;
    for b in index {
        let end = u64::from(b.offset) + u64::from(b.length);
        let sealed = usize::try_from(end).ok().and_then(|end| bytes.get(b.offset as usize..end));
        let opened = match sealed {
            Some(sealed) => blob::open_blob(repo.key(), b.kind, &b.id, sealed).map(|_| ()).map_err(|e| e.to_string()),
            None => Err("lies past the end of the pack".to_string()),
        };
        v.blobs_read += 1;
        if let Err(e) = opened {
            first.get_or_insert_with(|| format!("{} {}: {e}", blob_kind(b.kind), b.id.short()));
            v.lost.push(b.id);
        }
    }
    if let Some(first) = first {
        v.problems.push(format!("{} of its {} blobs fail verification (first: {first})", v.lost.len(), index.len()));
    }
    Ok(v)
}

fn compare_header(header: &[PackBlob], index: &[PackBlob]) -> Option<String> {
    let key = |b: &PackBlob| (b.offset, b.length, b.raw_length, b.kind, b.id);
    let in_header: HashSet<_> = header.iter().map(key).collect();
    let in_index: HashSet<_> = index.iter().map(key).collect();
    let only_index = in_index.difference(&in_header).count();
    let only_header = in_header.difference(&in_index).count();
    (only_index + only_header > 0)
        .then(|| format!("its header and the index disagree: {only_index} entries only in the index, {only_header} only in the header"))
}
