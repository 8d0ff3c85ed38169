//! The checker's tests: one small repository, damaged in each way `check` must name.

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
    let sealed = blob::seal_blob(repo.key(), repo.sealing(), kind, &id, data, 3);
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
    let mut data = PackWriter::new(repo.sealing());
    let x = add_blob(repo, &mut data, BlobType::Data, &[7u8; 3000]);
    let y = add_blob(repo, &mut data, BlobType::Data, b"second file, not compressible much");
    let mut trees = PackWriter::new(repo.sealing());
    let uploads = add_tree(repo, &mut trees, vec![node("x.pdf", NodeKind::File { content: vec![x] })]);
    let app_tree = add_tree(
        repo,
        &mut trees,
        vec![node("uploads", NodeKind::Dir { subtree: uploads }), node("y.txt", NodeKind::File { content: vec![y] })],
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
    let mut w = PackWriter::new(repo.sealing());
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
