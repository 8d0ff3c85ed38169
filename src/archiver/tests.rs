//! The archiver's tests: backups of real temporary folders into in-memory repositories.

use super::*;
use crate::backend::testing::FailingPuts;
use crate::backend::{Backend, StoreBackend};
use crate::error::ObjectKind;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

fn source(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        let data: Vec<u8> = (0..300_000u64).map(|j| ((j * 7919 + i * 104_729) % 251) as u8 ^ (j >> 9) as u8).collect();
        std::fs::write(dir.path().join(format!("f{i}")), data).unwrap();
    }
    dir
}

fn opts(dir: &Path) -> BackupOptions {
    BackupOptions { paths: vec![dir.to_path_buf()], host: "h".into(), ..Default::default() }
}

/// A backup whose storage fails part-way writes no snapshot, indexes only stored packs, and
/// the next backup on the same storage succeeds and checks clean.
#[test]
fn failed_uploads_leave_a_consistent_repository() {
    let base: Arc<dyn Backend> = Arc::new(StoreBackend::memory().unwrap());
    let t = crate::repo::testing::repo_on(base.clone());
    let src = source(8);
    let failing: Arc<dyn Backend> =
        Arc::new(FailingPuts { inner: base.clone(), fail_from: 3, count: AtomicUsize::new(0) });
    let mut broken = Repository::open(failing, "memory", b"test").unwrap();
    broken.load_index(t.cache.path()).unwrap();
    assert!(backup(&broken, &opts(src.path())).is_err());
    drop(broken);
    assert!(t.repo.list_ids(ObjectKind::Snapshot).unwrap().is_empty());
    let stored: std::collections::HashSet<String> = base.list("packs").unwrap().into_iter().map(|l| l.name).collect();
    for id in t.repo.list_ids(ObjectKind::Index).unwrap() {
        for p in t.repo.load_index_file(&crate::id::IndexId(id)).unwrap().packs {
            assert!(stored.contains(&p.id.to_hex()), "index names a pack that is not stored");
        }
    }
    let mut repo = Repository::open(base, "memory", b"test").unwrap();
    repo.load_index(t.cache.path()).unwrap();
    let (_, snap, _) = backup(&repo, &opts(src.path())).unwrap();
    assert_eq!(snap.summary.files_new, 8);
    let report = crate::checker::check(
        &repo,
        &crate::checker::CheckOptions { read_data: true, ..Default::default() },
        &mut |_| {},
    )
    .unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[test]
fn unchanged_files_are_not_read_again() {
    let t = crate::repo::testing::memory_repo();
    let src = source(3);
    let (id, first, _) = backup(&t.repo, &opts(src.path())).unwrap();
    assert_eq!(first.summary.files_new, 3);
    let o = BackupOptions { parent: Some((id, first.tree)), ..opts(src.path()) };
    let (_, second, _) = backup(&t.repo, &o).unwrap();
    // Only trees may be new (the temporary folder's parents change as other tests run).
    assert_eq!((second.summary.files_unchanged, second.summary.bytes_read), (3, 0));
}

/// Folders, small (read while scanning) and large (read by a reader task, streamed past
/// the largest chunk) files, an excluded file.
fn tree_source() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in ["a", "a/b", "a/b/c", "d", "e"] {
        std::fs::create_dir(dir.path().join(d)).unwrap();
    }
    let data = |n: usize, salt: u64| -> Vec<u8> {
        (0..n as u64).map(|j| ((j * 7919 + salt * 104_729) % 251) as u8 ^ (j >> 11) as u8).collect()
    };
    let files = [("a/x", 10), ("a/b/y", 300_000), ("a/b/c/z", 5_000_000), ("d/w", 0), ("e/v", 100), ("top", 1)];
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(dir.path().join(name), data(*len, i as u64)).unwrap();
    }
    std::fs::write(dir.path().join("d/skip.tmp"), b"excluded").unwrap();
    dir
}

/// The tree id of the folder at `path` (components below the snapshot's root).
fn subtree(repo: &Repository, tree: &BlobId, path: &[&str]) -> BlobId {
    let mut id = *tree;
    for d in path {
        let t = repo.load_tree(&id).unwrap();
        let NodeKind::Dir { subtree } = &t.find(d.as_bytes()).unwrap().kind else { panic!("not a dir") };
        id = *subtree;
    }
    id
}

fn file_content(repo: &Repository, tree: &BlobId, path: &[&str]) -> Vec<u8> {
    let (last, dirs) = path.split_last().unwrap();
    let mut t = repo.load_tree(tree).unwrap();
    for d in dirs {
        let NodeKind::Dir { subtree } = &t.find(d.as_bytes()).unwrap().kind else { panic!("not a dir") };
        t = repo.load_tree(subtree).unwrap();
    }
    let NodeKind::File { content } = &t.find(last.as_bytes()).unwrap().kind else { panic!("not a file") };
    content.iter().flat_map(|id| repo.read_blob(BlobType::Data, id).unwrap()).collect()
}

/// Trees do not depend on which reader finished first, unchanged files are recognised
/// through scanned folders, and a changed file is read again.
#[test]
fn parallel_walk_is_deterministic_and_detects_changes() {
    let t = crate::repo::testing::memory_repo();
    let src = tree_source();
    let o = BackupOptions { excludes: vec!["*.tmp".into()], ..opts(src.path()) };
    let (id, first, _) = backup(&t.repo, &o).unwrap();
    assert_eq!((first.summary.files_new, first.summary.dirs), (6, 6));
    let (_, again, _) = backup(&t.repo, &o).unwrap();
    // The source's own tree (the temporary folder's parents change as other tests run).
    let root: Vec<&str> = src.path().iter().skip(1).map(|c| c.to_str().unwrap()).collect();
    let first_src = subtree(&t.repo, &first.tree, &root);
    assert_eq!(subtree(&t.repo, &again.tree, &root), first_src);
    let path = |rel: &[&'static str]| -> Vec<&str> { root.iter().copied().chain(rel.iter().copied()).collect() };
    assert_eq!(file_content(&t.repo, &first.tree, &path(&["a", "b", "c", "z"])).len(), 5_000_000);
    assert_eq!(file_content(&t.repo, &first.tree, &path(&["a", "x"])), std::fs::read(src.path().join("a/x")).unwrap());
    let with_parent = BackupOptions { parent: Some((id, first.tree)), ..o.clone() };
    let (_, same, _) = backup(&t.repo, &with_parent).unwrap();
    assert_eq!((same.summary.files_unchanged, same.summary.bytes_read), (6, 0));
    assert_eq!(subtree(&t.repo, &same.tree, &root), first_src);
    std::fs::write(src.path().join("a/b/y"), b"changed").unwrap();
    let (_, changed, _) = backup(&t.repo, &with_parent).unwrap();
    assert_eq!((changed.summary.files_changed, changed.summary.files_unchanged), (1, 5));
    assert_eq!(file_content(&t.repo, &changed.tree, &path(&["a", "b", "y"])), b"changed");
}

/// A folder large enough to be stat'ed on several threads keeps every entry with its own
/// metadata, in name order, without the excluded ones; a changed file among them is found.
#[test]
fn a_large_folder_is_scanned_whole_and_in_order() {
    let t = crate::repo::testing::memory_repo();
    let src = tempfile::tempdir().unwrap();
    let n = super::scan::PARALLEL_STAT_MIN + 500;
    for i in 0..n {
        let name = if i % 100 == 7 { format!("f{i:05}.tmp") } else { format!("f{i:05}") };
        std::fs::write(src.path().join(name), vec![b'a'; i % 13]).unwrap();
    }
    let o = BackupOptions { excludes: vec!["*.tmp".into()], ..opts(src.path()) };
    let (id, first, _) = backup(&t.repo, &o).unwrap();
    let kept = n - n.div_ceil(100);
    assert_eq!(first.summary.files_new, kept as u64);
    let root: Vec<&str> = src.path().iter().skip(1).map(|c| c.to_str().unwrap()).collect();
    let tree = t.repo.load_tree(&subtree(&t.repo, &first.tree, &root)).unwrap();
    let names: Vec<String> = tree.nodes.iter().map(|n| String::from_utf8(n.name.clone()).unwrap()).collect();
    let want: Vec<String> = (0..n).filter(|i| i % 100 != 7).map(|i| format!("f{i:05}")).collect();
    assert_eq!(names, want);
    for node in &tree.nodes {
        let i: usize = std::str::from_utf8(&node.name[1..]).unwrap().parse().unwrap();
        assert_eq!(node.size, (i % 13) as u64, "{i}");
    }
    std::fs::write(src.path().join("f01234"), b"changed, and longer").unwrap();
    let with_parent = BackupOptions { parent: Some((id, first.tree)), ..o };
    let (_, again, _) = backup(&t.repo, &with_parent).unwrap();
    assert_eq!((again.summary.files_changed, again.summary.files_unchanged), (1, kept as u64 - 1));
}

/// The walk goes on past folders whose files are still being read, and finishes them in
/// post order: every file lands in its own folder with its own content, and an unchanged
/// second backup yields the same root tree.
#[test]
fn folders_finished_after_the_walk_moved_on_keep_their_files() {
    let t = crate::repo::testing::memory_repo();
    let src = tempfile::tempdir().unwrap();
    let big = |seed: u8, len: usize| (0..len).map(|i| (i as u8).wrapping_mul(seed) ^ seed).collect::<Vec<u8>>();
    let mut files = Vec::new();
    for (d, dir) in ["a", "a/x", "a/x/y", "b", "c/z", "d"].iter().enumerate() {
        std::fs::create_dir_all(src.path().join(dir)).unwrap();
        for f in 0..3u8 {
            let len = if f == 1 { 100 } else { 300_000 + 70_000 * usize::from(f) + d * 1000 };
            let path = format!("{dir}/f{f}");
            let data = big(d as u8 * 3 + f + 1, len);
            std::fs::write(src.path().join(&path), &data).unwrap();
            files.push((path, data));
        }
    }
    let (id, first, _) = backup(&t.repo, &opts(src.path())).unwrap();
    assert_eq!(first.summary.files_new, files.len() as u64);
    let root_parts: Vec<String> = src.path().iter().skip(1).map(|c| c.to_str().unwrap().to_string()).collect();
    for (path, data) in &files {
        let mut at: Vec<&str> = root_parts.iter().map(String::as_str).collect();
        at.extend(path.split('/'));
        assert!(file_content(&t.repo, &first.tree, &at) == *data, "{path}");
    }
    let with_parent = BackupOptions { parent: Some((id, first.tree)), ..opts(src.path()) };
    let (_, again, _) = backup(&t.repo, &with_parent).unwrap();
    // The source's own tree: the root's also holds /tmp, which other tests change meanwhile.
    let source_tree = |root: &BlobId| {
        let mut id = *root;
        for part in &root_parts {
            let NodeKind::Dir { subtree } = t.repo.load_tree(&id).unwrap().find(part.as_bytes()).unwrap().kind else {
                panic!("not a dir")
            };
            id = subtree;
        }
        id
    };
    assert_eq!(source_tree(&again.tree), source_tree(&first.tree));
    assert_eq!(again.summary.files_unchanged, files.len() as u64);
}

/// Folders that do not fit in the budget of entries held by scans ahead (`AHEAD_ENTRIES`, 12 in
/// tests), in their listing or in the parent snapshot's tree, are left for the walker and
/// scanned when it gets there: every file is still stored in its folder, and the parent's
/// trees still spare unchanged files a read.
#[test]
fn folders_too_large_to_scan_ahead_are_scanned_when_the_walk_gets_there() {
    use super::scan::{Excludes, Indexed, Prefetch, scan_dir};
    let t = crate::repo::testing::memory_repo();
    let src = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    // "big" holds 11 entries, 22 with its tree in the parent snapshot: more than the whole
    // budget, so its scans ahead always leave it.
    for (dir, n) in [("big", 10), ("big/inner", 6), ("small", 2), ("shrinks", 8), ("small/big", 7)] {
        std::fs::create_dir_all(src.path().join(dir)).unwrap();
        for f in 0..n {
            let path = format!("{dir}/f{f}");
            std::fs::write(src.path().join(&path), format!("{path} holds this")).unwrap();
            files.push(path);
        }
    }
    let (id, first, _) = backup(&t.repo, &opts(src.path())).unwrap();
    assert_eq!(first.summary.files_new, files.len() as u64);
    let root: Vec<String> = src.path().iter().skip(1).map(|c| c.to_str().unwrap().to_string()).collect();
    for path in &files {
        let mut at: Vec<&str> = root.iter().map(String::as_str).collect();
        at.extend(path.split('/'));
        assert_eq!(file_content(&t.repo, &first.tree, &at), format!("{path} holds this").into_bytes());
    }
    // A scan ahead leaves a folder over the limit before doing anything in it, whether its
    // listing or its tree in the parent snapshot is the large one.
    for f in 2..8 {
        std::fs::remove_file(src.path().join(format!("shrinks/f{f}"))).unwrap();
    }
    let at = |dir: &str| {
        let mut p: Vec<&str> = root.iter().map(String::as_str).collect();
        p.extend(dir.split('/'));
        subtree(&t.repo, &first.tree, &p)
    };
    let excludes = Excludes::new(&[]).unwrap();
    // A budget of 4 entries: (asked, refused).
    let scan = |dir: &str, old: Option<BlobId>, budget: usize| {
        let mut none = |_: &Path, _: u64, _: Option<std::fs::File>| None;
        let prefetch = Prefetch::new(0, 1);
        let path = src.path().join(dir);
        let mut left = budget;
        let mut reserve = |n: usize| left.checked_sub(n).map(|l| left = l).is_some();
        let scan = scan_dir(&t.repo, &excludes, &path, old.as_ref(), Indexed::Ask, prefetch, &mut reserve, &mut none);
        (scan.unwrap(), budget - left)
    };
    let (big, shrinks, small) = (at("big"), at("shrinks"), at("small"));
    let (left, _) = scan("big", Some(big), 4);
    assert_eq!(left.left, Some(Some(big)));
    // Its listing fits (2 files), its parent tree (8) does not.
    assert_eq!(scan("shrinks", Some(shrinks), 4).0.left, Some(Some(shrinks)));
    let (whole, held) = scan("big", Some(big), usize::MAX);
    assert!(whole.left.is_none() && whole.entries.len() == 11 && held == 22);
    let (fits, held) = scan("small", Some(small), 6);
    assert!(fits.left.is_none() && fits.entries.len() == 3 && held == 6);
    let with_parent = BackupOptions { parent: Some((id, first.tree)), ..opts(src.path()) };
    let (_, again, _) = backup(&t.repo, &with_parent).unwrap();
    let s = &again.summary;
    assert_eq!((s.files_new, s.files_changed, s.files_unchanged), (0, 0, files.len() as u64 - 6));
}

/// A folder too large to scan ahead is scanned by the walker, and its subfolders are queued
/// ahead while later folders hold every place for scans ahead: the walker then claims the scan
/// it needs instead of waiting for a place that only the later folders would give back.
#[test]
fn subfolders_of_a_folder_left_by_its_scan_ahead_do_not_wait_for_a_place() {
    let t = crate::repo::testing::memory_repo();
    let src = tempfile::tempdir().unwrap();
    let mut dirs = vec!["a".to_string(), "a/sub1".into(), "a/sub2".into(), "a/sub2/deeper".into()];
    dirs.extend((0..12).map(|i| format!("later{i:02}")));
    for dir in &dirs {
        std::fs::create_dir_all(src.path().join(dir)).unwrap();
        std::fs::write(src.path().join(dir).join("f"), dir.as_bytes()).unwrap();
    }
    // Over `AHEAD_ENTRIES`: "a" is always left for the walker.
    for f in 0..20 {
        std::fs::write(src.path().join(format!("a/f{f}")), [f]).unwrap();
    }
    let repo = Arc::new(t.repo);
    let (done, finished) = std::sync::mpsc::channel();
    let (r, dir) = (repo.clone(), src.path().to_path_buf());
    std::thread::spawn(move || {
        let mut parent = None;
        for _ in 0..5 {
            let (id, snap, _) = backup(&r, &BackupOptions { parent, ..opts(&dir) }).unwrap();
            parent = Some((id, snap.tree));
        }
        done.send(()).unwrap();
    });
    finished.recv_timeout(std::time::Duration::from_secs(60)).expect("the backups finish");
}

/// Trees are packed apart from file data (the next backup loads them all).
#[test]
fn trees_and_data_go_into_separate_packs() {
    let t = crate::repo::testing::memory_repo();
    let src = tempfile::tempdir().unwrap();
    for d in ["a", "a/b", "c"] {
        std::fs::create_dir_all(src.path().join(d)).unwrap();
        std::fs::write(src.path().join(d).join("f"), d.repeat(1000)).unwrap();
    }
    backup(&t.repo, &opts(src.path())).unwrap();
    let mut kinds = Vec::new();
    for id in t.repo.list_ids(crate::error::ObjectKind::Index).unwrap() {
        for pack in t.repo.load_index_file(&crate::id::IndexId(id)).unwrap().packs {
            let mut here: Vec<BlobType> = pack.blobs.iter().map(|b| b.kind).collect();
            here.dedup();
            assert_eq!(here.len(), 1, "pack {} mixes kinds", pack.id.short());
            kinds.push(here[0]);
        }
    }
    kinds.sort_by_key(|k| k.to_byte());
    kinds.dedup();
    assert_eq!(kinds, vec![BlobType::Data, BlobType::Tree]);
}

/// A stream hashed in batches by the readers keeps its chunks in order.
#[test]
fn streamed_input_keeps_chunk_order() {
    let t = crate::repo::testing::memory_repo();
    let input = StreamInput {
        name: "seq.txt".into(),
        source: stream::StreamSource::Command(vec!["seq".into(), "1".into(), "400000".into()]),
    };
    let o = BackupOptions { inputs: vec![input], host: "h".into(), ..Default::default() };
    let (_, snap, _) = backup(&t.repo, &o).unwrap();
    let expected = std::process::Command::new("seq").args(["1", "400000"]).output().unwrap().stdout;
    assert_eq!(file_content(&t.repo, &snap.tree, &["seq.txt"]), expected);
}

/// A folder of more small files than the scan opens ahead (`scan::prefetch::PREFETCH`), among larger
/// files, symlinks and empty files: every small file's content is the file's, in a first
/// backup and in one after some of them changed (only those are read again).
#[test]
fn small_files_opened_ahead_keep_their_own_content() {
    let t = crate::repo::testing::memory_repo();
    let dir = tempfile::tempdir().unwrap();
    let body = |i: usize, round: u8| format!("file {i} round {round} ").repeat(i % 7 + 1).into_bytes();
    for i in 0..100 {
        let p = dir.path().join(format!("s{i:03}"));
        match i % 10 {
            3 => std::fs::write(&p, b"").unwrap(),
            5 => std::os::unix::fs::symlink(format!("s{:03}", i - 1), &p).unwrap(),
            7 => std::fs::write(&p, vec![i as u8; 300_000]).unwrap(),
            _ => std::fs::write(&p, body(i, 0)).unwrap(),
        }
    }
    let (id, first, _) = backup(&t.repo, &opts(dir.path())).unwrap();
    let root: Vec<String> = dir.path().iter().skip(1).map(|c| c.to_str().unwrap().to_string()).collect();
    let path = |i: usize| -> Vec<String> { root.iter().cloned().chain([format!("s{i:03}")]).collect() };
    let content = |tree: &BlobId, i: usize| {
        let p = path(i);
        file_content(&t.repo, tree, &p.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for i in (0..100).filter(|i| ![3, 5, 7].contains(&(i % 10))) {
        assert_eq!(content(&first.tree, i), body(i, 0), "file {i}");
    }
    for i in (0..100).filter(|i| i % 10 == 1) {
        std::fs::write(dir.path().join(format!("s{i:03}")), body(i, 1)).unwrap();
    }
    let o = BackupOptions { parent: Some((id, first.tree)), ..opts(dir.path()) };
    let (_, second, _) = backup(&t.repo, &o).unwrap();
    assert_eq!(second.summary.files_changed, 10);
    for i in (0..100).filter(|i| ![3, 5, 7].contains(&(i % 10))) {
        let round = if i % 10 == 1 { 1 } else { 0 };
        assert_eq!(content(&second.tree, i), body(i, round), "file {i}");
    }
    assert_eq!(content(&second.tree, 7), vec![7u8; 300_000]);
}
