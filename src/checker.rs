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
//! checks; `damage.rs` (what is lost, what needs it), `read_data.rs`, `sweep.rs`, `walk.rs`.

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
            if let Some(d) = pack_damage(id, info, self.stored.get(id).copied()) {
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
fn pack_damage(id: &PackId, info: &Indexed, stored: Option<u64>) -> Option<Damage> {
    let index = info.index.short();
    let Some(size) = stored else {
        let problem = format!("is missing from the storage; index object {index} names it ({} blobs)", info.blobs);
        return Some(Damage::pack(*id, PACK_MISSING).with(problem, true));
    };
    // Packs are written whole: blobs back to back, then the sealed header and its length.
    let header = 1 + 4 + info.blobs * pack::ENTRY_LEN as u64 + crate::crypto::SEAL_OVERHEAD as u64;
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
mod tests {
    use super::damage::Needed;
    use super::*;
    use crate::backend::object_path;
    use crate::blob::{self, BlobType};
    use crate::index::file::IndexPack;
    use crate::pack::PackWriter;
    use crate::repo::testing::{TestRepo, memory_repo};
    use crate::snapshot::Summary;
    use crate::tree::{Node, NodeKind};
    use crate::tree::{Timestamp, Tree};
    use bytes::Bytes;

    /// A repository with one snapshot of `/srv/app/{uploads/x.pdf, y.txt}`: file data in one
    /// pack, trees in another, one index object naming both.
    struct Fixture {
        t: TestRepo,
        data_pack: PackId,
        tree_pack: PackId,
        x: BlobId,
        y: BlobId,
        app_tree: BlobId,
        snap: SnapshotId,
    }

    fn node(name: &str, kind: NodeKind) -> Node {
        Node::bare(name.as_bytes(), kind)
    }

    fn add_blob(repo: &Repository, w: &mut PackWriter, kind: BlobType, data: &[u8]) -> BlobId {
        let id = repo.key().blob_id(data);
        let sealed = blob::seal_blob(repo.key(), kind, &id, data, 3);
        w.add(kind, id, &sealed, data.len() as u32).unwrap();
        id
    }

    fn add_tree(repo: &Repository, w: &mut PackWriter, nodes: Vec<Node>) -> BlobId {
        add_blob(repo, w, BlobType::Tree, &Tree::canonical(nodes).unwrap().encode())
    }

    fn store(repo: &Repository, w: PackWriter) -> IndexPack {
        let p = w.finish(repo.key()).unwrap();
        repo.put_pack(&p).unwrap();
        IndexPack { id: p.id, blobs: p.blobs }
    }

    fn snapshot(repo: &Repository, secs: i64, tree: BlobId) -> SnapshotId {
        repo.save_snapshot(&sample_snapshot(secs, tree)).unwrap()
    }

    fn sample_snapshot(secs: i64, tree: BlobId) -> Snapshot {
        Snapshot {
            time: Timestamp { secs, nanos: 0 },
            host: "h".into(),
            username: "u".into(),
            paths: vec!["/srv".into()],
            tags: Vec::new(),
            tree,
            parent: None,
            summary: Summary::default(),
            program_version: "cairn test".into(),
        }
    }

    fn fixture() -> Fixture {
        let t = memory_repo();
        let repo = &t.repo;
        let mut data = PackWriter::new();
        let x = add_blob(repo, &mut data, BlobType::Data, &[7u8; 3000]);
        let y = add_blob(repo, &mut data, BlobType::Data, b"second file, not compressible much");
        let mut trees = PackWriter::new();
        let uploads = add_tree(repo, &mut trees, vec![node("x.pdf", NodeKind::File { content: vec![x] })]);
        let app_tree = add_tree(
            repo,
            &mut trees,
            vec![
                node("uploads", NodeKind::Dir { subtree: uploads }),
                node("y.txt", NodeKind::File { content: vec![y] }),
            ],
        );
        let srv = add_tree(repo, &mut trees, vec![node("app", NodeKind::Dir { subtree: app_tree })]);
        let root = add_tree(repo, &mut trees, vec![node("srv", NodeKind::Dir { subtree: srv })]);
        let data = store(repo, data);
        let trees = store(repo, trees);
        let (data_pack, tree_pack) = (data.id, trees.id);
        repo.save_index(&IndexFile { packs: vec![data, trees] }).unwrap();
        let snap = snapshot(repo, 1_700_000_000, root);
        Fixture { t, data_pack, tree_pack, x, y, app_tree, snap }
    }

    fn run(repo: &Repository, read_data: bool) -> CheckReport {
        let mut streamed = 0;
        let report = check(repo, &CheckOptions { read_data, workers: 2 }, &mut |_| streamed += 1).unwrap();
        assert_eq!(streamed, report.findings.len());
        report
    }

    /// Replaces a stored object with `change(bytes)`, as damaged storage would.
    fn alter(repo: &Repository, path: &str, change: impl FnOnce(&mut Vec<u8>)) {
        let mut bytes = repo.backend().get(path).unwrap().to_vec();
        change(&mut bytes);
        repo.backend().delete(path).unwrap();
        repo.backend().put_new(path, Bytes::from(bytes)).unwrap();
    }

    fn pack_path(id: &PackId) -> String {
        object_path(ObjectKind::Pack, &id.to_hex())
    }

    /// Offset of a blob inside its pack, from the index.
    fn offset_of(repo: &Repository, kind: BlobType, id: &BlobId) -> usize {
        repo.index().unwrap().lookup(kind, id).unwrap().unwrap().offset as usize
    }

    #[test]
    fn clean_repository_has_no_findings() {
        let f = fixture();
        let report = run(&f.t.repo, false);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert!(report.notes.is_empty(), "{:?}", report.notes);
        assert_eq!((report.snapshots, report.packs, report.blobs_read), (1, 2, 0));

        let report = run(&f.t.repo, true);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.blobs_read, 6);
        let stored: u64 = f.t.repo.backend().list("packs").unwrap().iter().map(|l| l.size).sum();
        assert_eq!(report.bytes_read, stored);
    }

    /// The sweep, run as `check` runs it: after the index objects and packs are checked.
    fn sweep(repo: &Repository, root: BlobId) -> (bool, usize) {
        let mut ignore = |_: &Finding| {};
        let mut c = Checker::new(repo, &CheckOptions::default(), &mut ignore).unwrap();
        c.check_index_objects().unwrap();
        c.check_packs().unwrap();
        let proved = c.sweep(&[root, root]).unwrap();
        (proved, c.trees.len())
    }

    #[test]
    fn sweep_proves_whole_trees_and_leaves_any_doubt_to_the_walk() {
        let f = fixture();
        let repo = &f.t.repo;
        let root = repo.load_snapshot(&f.snap).unwrap().tree;
        assert_eq!(sweep(repo, root), (true, 4), "all four trees proved, the repeated root once");
        // A blob whose pack is truncated: nothing proved, nothing marked.
        let y = repo.index().unwrap().lookup(BlobType::Data, &f.y).unwrap().unwrap();
        alter(repo, &pack_path(&f.data_pack), |b| b.truncate(y.offset as usize + 5));
        assert_eq!(sweep(repo, root), (false, 0));
        // A tree that does not open, in a whole pack.
        let f = fixture();
        let repo = &f.t.repo;
        let at = offset_of(repo, BlobType::Tree, &f.app_tree) + 45;
        alter(repo, &pack_path(&f.tree_pack), |b| b[at] ^= 0x01);
        let root = repo.load_snapshot(&f.snap).unwrap().tree;
        assert_eq!(sweep(repo, root), (false, 0));
    }

    #[test]
    fn flipped_byte_in_a_pack_is_found_by_read_data_with_what_needs_it() {
        let f = fixture();
        let repo = &f.t.repo;
        let at = offset_of(repo, BlobType::Data, &f.x) + 30;
        alter(repo, &pack_path(&f.data_pack), |b| b[at] ^= 0x01);

        let structure = run(repo, false);
        assert!(structure.findings.is_empty(), "structure only reads no data: {:?}", structure.findings);

        let report = run(repo, true);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        let finding = &report.findings[0];
        assert_eq!(finding.object, ObjectRef::new(ObjectKind::Pack, f.data_pack.to_hex()));
        assert!(finding.problem.contains("does not match its name"), "{}", finding.problem);
        assert!(finding.problem.contains("1 of its 2 blobs fail"), "{}", finding.problem);
        assert!(finding.hint.contains(&format!("snapshot {}", f.snap.short())), "{}", finding.hint);
        assert!(finding.hint.contains("/srv/app/uploads/x.pdf"), "{}", finding.hint);
        assert!(!finding.hint.contains("y.txt"), "y.txt is intact: {}", finding.hint);
    }

    #[test]
    fn missing_pack_is_named_with_the_files_that_need_it() {
        let f = fixture();
        let repo = &f.t.repo;
        repo.backend().delete(&pack_path(&f.data_pack)).unwrap();
        for read_data in [false, true] {
            let report = run(repo, read_data);
            assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
            let finding = &report.findings[0];
            assert_eq!(finding.object, ObjectRef::new(ObjectKind::Pack, f.data_pack.to_hex()));
            assert!(finding.problem.contains("missing"), "{}", finding.problem);
            assert!(finding.hint.contains("/srv/app/uploads/x.pdf, /srv/app/y.txt"), "{}", finding.hint);
        }
    }

    #[test]
    fn truncated_pack_is_found_without_reading_data() {
        let f = fixture();
        let repo = &f.t.repo;
        // Cut inside the second blob (y.txt): the first (x.pdf) is still whole.
        let y = repo.index().unwrap().lookup(BlobType::Data, &f.y).unwrap().unwrap();
        alter(repo, &pack_path(&f.data_pack), |b| b.truncate(y.offset as usize + 5));
        for read_data in [false, true] {
            let report = run(repo, read_data);
            assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
            let finding = &report.findings[0];
            assert_eq!(finding.object, ObjectRef::new(ObjectKind::Pack, f.data_pack.to_hex()));
            assert!(finding.problem.contains("truncated"), "{}", finding.problem);
            assert!(finding.hint.contains("/srv/app/y.txt"), "{}", finding.hint);
            assert!(!finding.hint.contains("x.pdf"), "{}", finding.hint);
        }
    }

    #[test]
    fn tampered_snapshot_is_named() {
        let f = fixture();
        let repo = &f.t.repo;
        alter(repo, &object_path(ObjectKind::Snapshot, &f.snap.to_hex()), |b| b[20] ^= 0x80);
        let report = run(repo, true);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert_eq!(report.findings[0].object, ObjectRef::new(ObjectKind::Snapshot, f.snap.to_hex()));
        assert_eq!(report.snapshots, 1);
    }

    #[test]
    fn unindexed_pack_is_a_note_not_damage() {
        let f = fixture();
        let repo = &f.t.repo;
        let mut w = PackWriter::new();
        add_blob(repo, &mut w, BlobType::Data, b"left by an interrupted backup");
        store(repo, w);
        let report = run(repo, true);
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
        assert!(report.notes[0].starts_with("1 packs are not named by any index object"), "{}", report.notes[0]);
    }

    #[test]
    fn damaged_tree_is_one_finding_either_way() {
        let f = fixture();
        let repo = &f.t.repo;
        let at = offset_of(repo, BlobType::Tree, &f.app_tree) + 30;
        alter(repo, &pack_path(&f.tree_pack), |b| b[at] ^= 0x01);

        let report = run(repo, false);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert_eq!(report.findings[0].object, ObjectRef::new(ObjectKind::Tree, f.app_tree.to_hex()));
        assert!(report.findings[0].hint.contains("/srv/app/ (the whole directory)"), "{}", report.findings[0].hint);

        // read_data finds the pack first; the tree is then one of its lost blobs, not a second finding.
        let report = run(repo, true);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert_eq!(report.findings[0].object, ObjectRef::new(ObjectKind::Pack, f.tree_pack.to_hex()));
        assert!(report.findings[0].hint.contains("/srv/app/ (the whole directory)"), "{}", report.findings[0].hint);
    }

    #[test]
    fn damaged_index_object_is_skipped_and_named() {
        let mut f = fixture();
        let index_id = f.t.repo.list_ids(ObjectKind::Index).unwrap()[0];
        alter(&f.t.repo, &object_path(ObjectKind::Index, &index_id.to_hex()), |b| b[10] ^= 0x01);
        // The cache mirrored the index object before the damage: it must be rebuilt without it.
        load_index(&mut f.t.repo, f.t.cache.path()).unwrap();

        let report = run(&f.t.repo, false);
        let objects: Vec<ObjectKind> = report.findings.iter().map(|x| x.object.kind).collect();
        assert_eq!(objects, vec![ObjectKind::Index, ObjectKind::Tree], "{:?}", report.findings);
        assert_eq!(report.findings[0].object.name, index_id.to_hex());
        assert!(report.findings[1].problem.contains("not in the index"), "{}", report.findings[1].problem);
        assert!(report.findings[1].hint.contains("/ (the whole snapshot)"), "{}", report.findings[1].hint);
        assert!(report.notes[0].starts_with("2 packs are not named"), "{:?}", report.notes);
    }

    #[test]
    fn every_snapshot_that_needs_a_lost_pack_is_named() {
        let f = fixture();
        let repo = &f.t.repo;
        let root = repo.load_snapshot(&f.snap).unwrap().tree;
        let later = snapshot(repo, 1_700_086_400, root);
        repo.backend().delete(&pack_path(&f.data_pack)).unwrap();
        let report = run(repo, false);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        let hint = &report.findings[0].hint;
        assert!(
            hint.contains(&format!("snapshot {} (2023-11-14 22:13:20): /srv/app/uploads/x.pdf", f.snap.short())),
            "{hint}"
        );
        assert!(
            hint.contains(&format!("snapshot {} (2023-11-15 22:13:20): /srv/app/uploads/x.pdf", later.short())),
            "{hint}"
        );
    }

    #[test]
    fn many_dependents_are_counted_not_listed() {
        let mut needed = Needed::default();
        for i in 0..25 {
            needed.add(0, &format!("/f{i}"));
        }
        let snaps = vec![(SnapshotId::default(), sample_snapshot(0, BlobId::default()))];
        let text = needed.describe(&snaps).unwrap();
        assert!(text.ends_with("/f9 and 15 more"), "{text}");
    }
}
