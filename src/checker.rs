//! The checker: proves a repository whole without trusting the storage, and says which snapshot
//! paths need each damaged object.
//!
//! Order: index objects (each opened and verified), the packs in storage against the packs they
//! name, the snapshots; with `read_data` every indexed pack read whole (name, header, every
//! blob); then the sweep, which proves all trees and blobs whole on all workers (or gives up);
//! then one walk of every snapshot's trees, skipping those the sweep proved. The walk finds blobs
//! missing from the index and damaged trees, and records the paths that need each damaged
//! object; a tree with nothing damaged below it is never walked twice. There is one [`Finding`]
//! per damaged object; damage never stops the check, only failures to reach the storage or the
//! index cache do.
//! Memory: per pack a few numbers, the ids of trees walked, the damaged objects, and at most
//! `workers` whole packs; never every blob entry. Here: the API and the index, pack and snapshot
//! checks; `damage.rs` (what is lost, what needs it), `read_data.rs`, `sweep.rs`, `walk.rs`,
//! `tests.rs`.

mod damage;
mod read_data;
mod sweep;
mod walk;

use crate::error::{Error, ObjectKind, ObjectRef, Result};
use crate::id::{BlobId, IndexId, PackId, SnapshotId};
use crate::index::file::IndexFile;
use crate::index::{BlobIndex, IndexSummary};
use crate::pack;
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use damage::{Damage, PACK_DAMAGED, PACK_MISSING, Target};

const INDEX_DAMAGED: &str = "this check left it out: blobs only it lists show as not in the index, packs only it names as \
     not indexed; keep those packs, their headers still list their blobs";
const SNAPSHOT_DAMAGED: &str = "this snapshot cannot be listed or restored; other snapshots are unaffected";

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Also download every pack and verify every byte of it.
    pub read_data: bool,
    /// Packs read at once with `read_data` (each is held whole in memory while it is verified);
    /// without it, the threads of the sweep (at most one per core).
    pub workers: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { read_data: false, workers: 4 }
    }
}

/// One damaged or missing object, what is wrong with it, and what depends on it or what to do.
#[derive(Debug, Clone)]
pub struct Finding {
    pub object: ObjectRef,
    pub problem: String,
    pub hint: String,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// Harmless observations, e.g. packs no index object names.
    pub notes: Vec<String>,
    /// Snapshot objects in the repository.
    pub snapshots: usize,
    /// Packs named by the readable index objects.
    pub packs: usize,
    /// Blobs opened and verified by `read_data`.
    pub blobs_read: u64,
    /// Pack bytes downloaded by `read_data`.
    pub bytes_read: u64,
}

/// Loads the index cache for [`check`]: call it instead of `Repository::load_index`. A damaged
/// index object is left out of the cache rather than failing (check reports it).
pub fn load_index(repo: &mut Repository, cache_root: &Path) -> Result<()> {
    repo.load_index_skipping_damaged(cache_root).map(|_| ())
}

/// Runs every check, never stopping at the first problem; `on_finding` is called as each is
/// found (findings about packs and blobs come after the tree walk, which names what needs them).
/// Err only for failures that stop checking altogether: the storage cannot be listed or read,
/// the index cache fails, or it was not loaded (see [`load_index`]).
pub fn check(
    repo: &Repository,
    opts: &CheckOptions,
    on_finding: &mut (dyn FnMut(&Finding) + Send),
) -> Result<CheckReport> {
    let mut c = Checker::new(repo, opts, on_finding)?;
    c.check_index_objects()?;
    c.check_packs()?;
    let snaps = c.load_snapshots()?;
    if opts.read_data {
        c.read_packs()?;
    }
    // The sweep proves the trees whole fast, or leaves them to the walk, which names the
    // paths that need whatever is damaged.
    let roots: Vec<BlobId> = snaps.iter().map(|(_, snap)| snap.tree).collect();
    c.sweep(&roots)?;
    for (i, (_, snap)) in snaps.iter().enumerate() {
        c.walk_snapshot(i, snap.tree)?;
    }
    c.report_damage(&snaps);
    c.report.packs = c.seen.packs.len();
    Ok(c.report)
}

/// What the index objects say about one pack.
type Indexed = crate::index::PackSummary;

struct Checker<'a> {
    repo: &'a Repository,
    index: &'a dyn BlobIndex,
    pool: rayon::ThreadPool,
    workers: usize,
    on_finding: &'a mut (dyn FnMut(&Finding) + Send),
    report: CheckReport,
    /// Index objects that opened and what they say about each pack.
    seen: IndexSummary,
    damaged_indexes: usize,
    /// Packs in storage, with their sizes.
    stored: HashMap<PackId, u64>,
    damage: BTreeMap<Target, Damage>,
    /// Trees walked, and whether anything below them is damaged.
    trees: HashMap<BlobId, bool>,
}

impl<'a> Checker<'a> {
    fn new(
        repo: &'a Repository,
        opts: &CheckOptions,
        on_finding: &'a mut (dyn FnMut(&Finding) + Send),
    ) -> Result<Checker<'a>> {
        // Without --read-data the work is CPU-bound (the sweep): one worker per core. More only
        // cost memory: each thread that allocates gets its own malloc arena (measured: 4 workers
        // on 2 cores, 72-79 MB peak against 60-64 MB, for no gain in time).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = if opts.read_data { opts.workers.max(1) } else { opts.workers.clamp(1, cores) };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("cairn-check-{i}"))
            .build()
            .map_err(|e| Error::io("starting check workers", std::io::Error::other(e.to_string())))?;
        Ok(Checker {
            repo,
            index: repo.index()?,
            pool,
            workers,
            on_finding,
            report: CheckReport::default(),
            seen: IndexSummary::default(),
            damaged_indexes: 0,
            stored: HashMap::new(),
            damage: BTreeMap::new(),
            trees: HashMap::new(),
        })
    }

    fn emit(&mut self, finding: Finding) {
        (self.on_finding)(&finding);
        self.report.findings.push(finding);
    }

    /// Opens every index object; remembers per pack only what the size check needs. When the
    /// index was loaded with [`load_index`], that pass already opened each one: its summary is
    /// used, and only the damaged ones are opened again (to say what is wrong).
    fn check_index_objects(&mut self) -> Result<()> {
        let repo = self.repo;
        let ids: Vec<IndexId> = match repo.index_summary() {
            Some(summary) => {
                self.seen = IndexSummary { damaged: Vec::new(), ..summary.clone() };
                summary.damaged.clone()
            }
            None => repo.list_ids(ObjectKind::Index)?.into_iter().map(IndexId).collect(),
        };
        for batch in ids.chunks(self.workers * 2) {
            let loaded: Vec<(IndexId, Result<IndexFile>)> =
                self.pool.install(|| batch.par_iter().map(|id| (*id, repo.load_index_file(id))).collect());
            for (id, result) in loaded {
                match result {
                    Ok(file) => self.seen.note(id, &file),
                    Err(e) => {
                        let problem = damage_text(e)?;
                        self.damaged_indexes += 1;
                        let object = ObjectRef::new(ObjectKind::Index, id.to_hex());
                        self.emit(Finding { object, problem, hint: INDEX_DAMAGED.into() });
                    }
                }
            }
        }
        Ok(())
    }

    /// Packs in storage against packs named by index objects: missing, too short, too long.
    fn check_packs(&mut self) -> Result<()> {
        let mut odd_names = 0;
        for listed in self.repo.backend().list("packs")? {
            match PackId::from_hex(&listed.name) {
                Some(id) => {
                    self.stored.insert(id, listed.size);
                }
                None => odd_names += 1,
            }
        }
        for (id, info) in &self.seen.packs {
            if let Some(d) = pack_damage(id, info, self.stored.get(id).copied(), self.repo.sealing()) {
                self.damage.insert(Target::Pack(*id), d);
            }
        }
        let unindexed = self.stored.keys().filter(|id| !self.seen.packs.contains_key(id)).count();
        let notes = &mut self.report.notes;
        if unindexed > 0 && self.damaged_indexes > 0 {
            notes.push(format!(
                "{unindexed} packs are not named by any readable index object (see the damaged index objects)"
            ));
        } else if unindexed > 0 {
            notes.push(format!(
                "{unindexed} packs are not named by any index object (left by an interrupted backup; harmless)"
            ));
        }
        if self.seen.listed_twice > 0 {
            notes.push(format!("{} packs are named by more than one index object (harmless)", self.seen.listed_twice));
        }
        if odd_names > 0 {
            notes.push(format!("{odd_names} objects under packs/ are not named like packs; ignored"));
        }
        Ok(())
    }

    /// Opens every snapshot; damaged ones are findings. The rest come back oldest first.
    fn load_snapshots(&mut self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let ids: Vec<SnapshotId> = self.repo.list_ids(ObjectKind::Snapshot)?.into_iter().map(SnapshotId).collect();
        self.report.snapshots = ids.len();
        let repo = self.repo;
        let loaded: Vec<(SnapshotId, Result<Snapshot>)> =
            self.pool.install(|| ids.par_iter().map(|id| (*id, repo.load_snapshot(id))).collect());
        let mut snaps = Vec::with_capacity(loaded.len());
        for (id, result) in loaded {
            match result {
                Ok(snap) => snaps.push((id, snap)),
                Err(e) => {
                    let problem = damage_text(e)?;
                    let object = ObjectRef::new(ObjectKind::Snapshot, id.to_hex());
                    self.emit(Finding { object, problem, hint: SNAPSHOT_DAMAGED.into() });
                }
            }
        }
        snaps.sort_by_key(|(id, s)| (s.time.secs, s.time.nanos, *id));
        Ok(snaps)
    }

    fn report_damage(&mut self, snaps: &[(SnapshotId, Snapshot)]) {
        for (_, d) in std::mem::take(&mut self.damage) {
            let finding = d.finding(snaps);
            self.emit(finding);
        }
    }
}

/// What is wrong with an indexed pack, from its stored size alone (`None`: not stored).
fn pack_damage(id: &PackId, info: &Indexed, stored: Option<u64>, sealing: crate::blob::Sealing) -> Option<Damage> {
    let index = info.index.short();
    let Some(size) = stored else {
        let problem = format!("is missing from the storage; index object {index} names it ({} blobs)", info.blobs);
        return Some(Damage::pack(*id, PACK_MISSING).with(problem, true));
    };
    // Packs are written whole: blobs back to back, then the sealed header and its length.
    let header = pack::sealed_header_len(sealing, info.blobs);
    let expected = info.end + header + 4;
    if size < expected {
        let problem = format!("is truncated: {size} bytes, but index object {index} needs {expected}");
        let mut d = Damage::pack(*id, PACK_DAMAGED).with(problem, false);
        d.lost_past = Some(size);
        Some(d)
    } else if size > expected {
        let problem =
            format!("is {size} bytes, but its blobs and header in index object {index} account for {expected}");
        Some(Damage::pack(*id, PACK_DAMAGED).with(problem, false))
    } else {
        None
    }
}

/// The problem text if `e` says an object is damaged or gone. Any other failure (storage
/// unreachable, cache broken) stops the check: nothing more could be proved.
fn damage_text(e: Error) -> Result<String> {
    match e {
        Error::Corrupt { problem, .. } => Ok(problem.to_string()),
        Error::Unsupported { problem, .. } => Ok(format!("cannot be verified: {problem}")),
        Error::Missing { object } => Ok(format!("{object} is missing from the storage")),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests;
