//! Hostile repositories: snapshots forged with the library (bypassing the tree validation a
//! backup goes through) whose trees name entries `..`, `.`, `a/b`, `` or `/abs`, name data that
//! does not exist, or plant absolute symlinks. `restore` refuses the unsafe names with a clear
//! error, fails only the files whose data is gone, and never writes outside its target.

// Helpers outside #[test] functions panic on failure too: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use cairn::backend::{Backend, StoreBackend};
use cairn::blob::{BlobType, seal_blob, seal_bundle};
use cairn::id::{BlobId, Id};
use cairn::index::file::{IndexFile, IndexPack};
use cairn::pack::{PackBlob, PackWriter};
use cairn::repo::Repository;
use cairn::snapshot::{Snapshot, Summary};
use cairn::tree::{Node, NodeKind, TREE_VERSION, Timestamp, Tree};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Writes blobs, trees and snapshots into a repository made by `cairn init`, the way a
/// malicious or broken writer could: trees are encoded as given, not checked.
struct Forge {
    repo: Repository,
    pack: PackWriter,
}

impl Forge {
    fn open(env: &Env) -> Forge {
        let backend: Arc<dyn Backend> = Arc::new(StoreBackend::local(&env.repo()).unwrap());
        let repo = Repository::open(backend, &env.repo().display().to_string(), PASSWORD.as_bytes()).unwrap();
        let pack = PackWriter::new(repo.sealing());
        Forge { repo, pack }
    }

    fn blob(&mut self, kind: BlobType, data: &[u8]) -> BlobId {
        let key = self.repo.key();
        let id = key.blob_id(data);
        let sealed = seal_blob(key, self.repo.sealing(), kind, &id, data, 3);
        self.pack.add(kind, id, &sealed, data.len() as u32).unwrap();
        id
    }

    fn file(&mut self, name: &[u8], data: &[u8]) -> Node {
        let content = vec![self.blob(BlobType::Data, data)];
        Node { size: data.len() as u64, ..node(name, NodeKind::File { content }, 0o100644) }
    }

    /// Encodes the tree exactly as given: unsorted, duplicate or unsafe names included.
    fn raw_tree(&mut self, nodes: Vec<Node>) -> BlobId {
        self.blob(BlobType::Tree, &cairn::codec::encode(TREE_VERSION, &Tree { nodes }))
    }

    fn dir(&mut self, name: &[u8], nodes: Vec<Node>) -> Node {
        let subtree = self.raw_tree(nodes);
        node(name, NodeKind::Dir { subtree }, 0o040755)
    }

    /// Data blobs sealed together in one bundle.
    fn bundle(&mut self, parts: &[&[u8]]) -> Vec<BlobId> {
        let key = self.repo.key();
        let blobs: Vec<(BlobId, u32)> = parts.iter().map(|p| (key.blob_id(p), p.len() as u32)).collect();
        let sealed = seal_bundle(key, &self.repo.sealing().aad(BlobType::Data, &blobs[0].0), parts, 3);
        self.pack.add_bundle(BlobType::Data, &blobs, &sealed).unwrap();
        blobs.into_iter().map(|(id, _)| id).collect()
    }

    /// Stores the pack, an index object naming it, and a snapshot of `root`; in the write order
    /// of a real backup. Returns the snapshot id.
    fn snapshot(&mut self, root: Vec<Node>) -> String {
        self.snapshot_indexed_as(root, |_| {})
    }

    /// [`snapshot`](Self::snapshot), with the index object's list of the pack's blobs changed
    /// by `edit` first (the pack's own header stays true).
    fn snapshot_indexed_as(&mut self, root: Vec<Node>, edit: impl Fn(&mut Vec<PackBlob>)) -> String {
        let tree = self.raw_tree(root);
        let fresh = PackWriter::new(self.repo.sealing());
        let pack = std::mem::replace(&mut self.pack, fresh).finish(self.repo.key()).unwrap();
        self.repo.put_pack(&pack).unwrap();
        let mut blobs = pack.blobs;
        edit(&mut blobs);
        self.repo.save_index(&IndexFile { packs: vec![IndexPack { id: pack.id, blobs }] }).unwrap();
        let snap = Snapshot {
            time: cairn::repo::now(),
            host: "forge".into(),
            username: "mallory".into(),
            paths: vec!["/forged".into()],
            tags: vec![],
            tree,
            parent: None,
            summary: Summary::default(),
            program_version: "forge".into(),
        };
        self.repo.save_snapshot(&snap).unwrap().to_hex()
    }
}

fn node(name: &[u8], kind: NodeKind, mode: u32) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        size: 0,
        mtime: Timestamp { secs: 1_600_000_000, nanos: 0 },
        ctime: Timestamp::default(),
        inode: 0,
        device: 0,
        links: 1,
        xattrs: vec![],
    }
}

fn symlink(name: &[u8], target: &Path) -> Node {
    let target = target.as_os_str().as_encoded_bytes().to_vec();
    node(name, NodeKind::Symlink { target }, 0o120777)
}

/// A folder holding a restore target, a sentinel file beside it, and a folder `outside` with a
/// victim file; [`Arena::assert_untouched`] proves a restore wrote nothing outside the target.
struct Arena {
    root: PathBuf,
}

impl Arena {
    fn new(env: &Env, name: &str) -> Arena {
        let root = env.path(name);
        fs::create_dir_all(root.join("outside")).unwrap();
        fs::write(root.join("sentinel"), b"sentinel").unwrap();
        fs::write(root.join("outside/victim"), b"victim").unwrap();
        Arena { root }
    }

    fn target(&self) -> PathBuf {
        self.root.join("target")
    }

    fn outside(&self) -> PathBuf {
        self.root.join("outside")
    }

    fn assert_untouched(&self) {
        let names = |p: &Path| {
            let mut v: Vec<String> =
                fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        let mut expected = vec!["outside", "sentinel"];
        if self.target().exists() {
            expected.push("target");
        }
        assert_eq!(names(&self.root), expected, "entries beside the target");
        assert_eq!(names(&self.outside()), ["victim"], "entries in the folder outside");
        assert_eq!(fs::read(self.root.join("sentinel")).unwrap(), b"sentinel");
        assert_eq!(fs::read(self.outside().join("victim")).unwrap(), b"victim");
        let m = fs::symlink_metadata(self.root.join("sentinel")).unwrap();
        assert!(m.is_file(), "sentinel replaced");
    }
}

/// Restores `snapshot` into the arena's target; returns the exit code and stderr.
fn restore(env: &Env, snapshot: &str, arena: &Arena) -> (Option<i32>, String) {
    let out = env.cairn().args(["restore", snapshot, "--target"]).arg(arena.target()).output().unwrap();
    let err = stderr_text(&out);
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code(), err)
}

/// Unsafe names a backup can never store; each would point outside its folder or nowhere.
const HOSTILE: [&[u8]; 6] = [b"..", b".", b"a/b", b"", b"/etc-forged", b"../../escaped"];

#[test]
fn unsafe_names_in_the_root_tree_are_refused() {
    let env = Env::init_cheap();
    for (i, name) in HOSTILE.iter().enumerate() {
        let mut forge = Forge::open(&env);
        let ok = forge.file(b"ok", b"harmless");
        // A file or a folder under the unsafe name, so that following it would write outside.
        let bad = if i % 2 == 0 {
            let escaped = forge.file(b"escaped", b"written outside");
            forge.dir(name, vec![escaped])
        } else {
            forge.file(name, b"written outside")
        };
        let id = forge.snapshot(vec![bad, ok]);
        drop(forge);
        let arena = Arena::new(&env, &format!("arena{i}"));
        let (code, err) = restore(&env, &id[..12], &arena);
        let shown = String::from_utf8_lossy(name);
        assert_eq!(code, Some(20), "name {shown:?}: {err}");
        assert!(err.contains("tree") && err.contains("unsafe entry name"), "name {shown:?}: {err}");
        arena.assert_untouched();
        if arena.target().exists() {
            assert_eq!(fs::read_dir(arena.target()).unwrap().count(), 0, "name {shown:?}: target not empty");
        }
    }
    // check reports every such tree as damaged.
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr_text(&out));
    assert!(stderr_text(&out).contains("unsafe entry name"), "{}", stderr_text(&out));
}

#[test]
fn unsafe_names_deeper_down_fail_their_folder_only() {
    let env = Env::init_cheap();
    let mut forge = Forge::open(&env);
    let escaped = forge.file(b"escaped", b"written outside");
    let up = forge.dir(b"..", vec![escaped]);
    let sub = forge.dir(b"sub", vec![up]);
    let ok = forge.file(b"ok", b"harmless");
    let id = forge.snapshot(vec![ok, sub]);
    drop(forge);
    let arena = Arena::new(&env, "arena");
    let (code, err) = restore(&env, &id, &arena);
    assert_eq!(code, Some(21), "{err}");
    assert!(err.contains("not restored") && err.contains("sub") && err.contains("unsafe entry name"), "{err}");
    assert_eq!(fs::read(arena.target().join("ok")).unwrap(), b"harmless");
    assert!(!arena.target().join("sub").exists() && !arena.target().join("escaped").exists());
    arena.assert_untouched();
}

#[test]
fn duplicate_or_unsorted_names_are_refused() {
    let env = Env::init_cheap();
    let mut forge = Forge::open(&env);
    let first = forge.file(b"same", b"first");
    let second = forge.file(b"same", b"second");
    let dup = forge.snapshot(vec![first, second]);
    let b = forge.file(b"b", b"b");
    let a = forge.file(b"a", b"a");
    let unsorted = forge.snapshot(vec![b, a]);
    drop(forge);
    for (i, id) in [dup, unsorted].iter().enumerate() {
        let arena = Arena::new(&env, &format!("arena{i}"));
        let (code, err) = restore(&env, id, &arena);
        assert_eq!(code, Some(20), "{err}");
        assert!(err.contains("sorted"), "{err}");
        arena.assert_untouched();
    }
}

/// An index object that places blobs wrongly in their bundle (past its end, or over another
/// blob's bytes) fails exactly the files that need them, in restore and dump, and check names it.
#[test]
fn blobs_placed_wrongly_in_their_bundle_fail_alone() {
    let env = Env::init_cheap();
    let mut forge = Forge::open(&env);
    let ids = forge.bundle(&[b"fine, ", b"moved ", b"beyond"]);
    let file = |name: &[u8], id: BlobId| node(name, NodeKind::File { content: vec![id] }, 0o100644);
    let root = vec![file(b"beyond", ids[2]), file(b"fine", ids[0]), file(b"moved", ids[1])];
    let id = forge.snapshot_indexed_as(root, |blobs| {
        blobs[1].raw_offset = 0; // over "fine, ": the bytes do not hash to the id
        blobs[2].raw_offset = 1 << 20; // past the bundle's 18 bytes
    });
    drop(forge);
    let arena = Arena::new(&env, "arena");
    let (code, err) = restore(&env, &id, &arena);
    assert_eq!(code, Some(21), "{err}");
    assert!(err.contains("does not hash to its id") && err.contains("past its bundle"), "{err}");
    assert_eq!(fs::read(arena.target().join("fine")).unwrap(), b"fine, ");
    assert!(!arena.target().join("moved").exists() && !arena.target().join("beyond").exists());
    arena.assert_untouched();
    for name in ["moved", "beyond"] {
        let out = env.cairn().args(["dump", &id, name]).output().unwrap();
        assert_eq!(out.status.code(), Some(20), "{}", stderr_text(&out));
        assert!(out.stdout.is_empty() && !stderr_text(&out).contains("panicked"));
    }
    let out = env.cairn().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr_text(&out));
    assert!(stderr_text(&out).contains("header and the index disagree"), "{}", stderr_text(&out));
}

#[test]
fn a_file_whose_data_does_not_exist_fails_alone() {
    let env = Env::init_cheap();
    let mut forge = Forge::open(&env);
    let good = forge.file(b"good", b"present");
    let nowhere = BlobId(Id([7; 32]));
    let lost = node(b"lost", NodeKind::File { content: vec![nowhere] }, 0o100644);
    let id = forge.snapshot(vec![good, lost]);
    drop(forge);
    let arena = Arena::new(&env, "arena");
    let (code, err) = restore(&env, &id, &arena);
    assert_eq!(code, Some(21), "{err}");
    let lost_path = arena.target().join("lost");
    assert!(err.contains(&format!("not restored: {}", lost_path.display())), "{err}");
    assert!(!lost_path.exists());
    assert_eq!(fs::read(arena.target().join("good")).unwrap(), b"present");
    arena.assert_untouched();
    let out = env.cairn().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(20), "{}", stderr_text(&out));
    assert!(stderr_text(&out).contains(&nowhere.to_hex()), "{}", stderr_text(&out));
}

#[test]
fn absolute_symlinks_are_restored_as_links_and_never_written_through() {
    let env = Env::init_cheap();
    let arena = Arena::new(&env, "arena");
    let mut forge = Forge::open(&env);
    // First snapshot: `d` and `f` point outside the target, `rel` climbs out of it.
    let links = vec![
        symlink(b"d", &arena.outside()),
        symlink(b"f", &arena.outside().join("victim")),
        symlink(b"rel", Path::new("../outside")),
    ];
    let first = forge.snapshot(links);
    // Second snapshot, restored over the first: the same names as a folder and files.
    let x = forge.file(b"x", b"inside d");
    let d = forge.dir(b"d", vec![x]);
    let f = forge.file(b"f", b"replaces the link");
    let y = forge.file(b"y", b"inside rel");
    let rel = forge.dir(b"rel", vec![y]);
    let second = forge.snapshot(vec![d, f, rel]);
    drop(forge);

    let (code, err) = restore(&env, &first, &arena);
    assert_eq!(code, Some(0), "{err}");
    let t = arena.target();
    assert_eq!(fs::read_link(t.join("d")).unwrap(), arena.outside());
    assert_eq!(fs::read_link(t.join("f")).unwrap(), arena.outside().join("victim"));
    assert_eq!(fs::read_link(t.join("rel")).unwrap(), Path::new("../outside"));
    arena.assert_untouched();

    let (code, err) = restore(&env, &second, &arena);
    assert_eq!(code, Some(0), "{err}");
    for (path, content) in [("d/x", &b"inside d"[..]), ("f", b"replaces the link"), ("rel/y", b"inside rel")] {
        let m = fs::symlink_metadata(t.join(path)).unwrap();
        assert!(m.is_file(), "{path} must be a regular file");
        assert_eq!(fs::read(t.join(path)).unwrap(), content, "{path}");
    }
    assert!(fs::symlink_metadata(t.join("d")).unwrap().is_dir());
    arena.assert_untouched();
}
