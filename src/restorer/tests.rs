//! The restorer's tests: restore and dump from a small in-memory repository, with damaged and
//! lost packs, entries already in the target, and trees nested past the limit; dump's own are
//! in `tests/dumping.rs`.

use super::*;
use crate::blob::{seal_blob, seal_bundle};
use crate::error::{ObjectKind, ObjectRef};
use crate::index::file::{IndexFile, IndexPack};
use crate::pack::PackWriter;
use crate::repo::testing::{TestRepo, memory_repo};
use crate::tree::{Timestamp, Xattr};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

mod dumping;

/// An in-memory repository (format 2) plus a pack being filled with blobs: a file's new blobs
/// in one bundle, as backup seals them, and every tree alone.
struct Fixture {
    t: TestRepo,
    pack: PackWriter,
    added: HashSet<BlobId>,
}

impl Fixture {
    fn new() -> Self {
        let t = memory_repo();
        let pack = PackWriter::new(t.repo.sealing());
        Fixture { t, pack, added: HashSet::new() }
    }

    fn repo(&self) -> &Repository {
        &self.t.repo
    }

    fn blob(&mut self, kind: BlobType, data: &[u8]) -> BlobId {
        let key = self.t.repo.key();
        let id = key.blob_id(data);
        if self.added.insert(id) {
            let sealed = seal_blob(key, self.t.repo.sealing(), kind, &id, data, 3);
            self.pack.add(kind, id, &sealed, data.len() as u32).unwrap();
        }
        id
    }

    /// Data blobs sealed together in one bundle (those not stored yet).
    fn bundle(&mut self, parts: &[&[u8]]) -> Vec<BlobId> {
        let key = self.t.repo.key();
        let ids: Vec<BlobId> = parts.iter().map(|p| key.blob_id(p)).collect();
        let new: Vec<(BlobId, &[u8])> =
            ids.iter().zip(parts).filter(|(id, _)| self.added.insert(**id)).map(|(id, p)| (*id, *p)).collect();
        if let Some((first, _)) = new.first() {
            let aad = self.t.repo.sealing().aad(BlobType::Data, first);
            let sealed = seal_bundle(key, &aad, &new.iter().map(|(_, p)| *p).collect::<Vec<_>>(), 3);
            let blobs: Vec<(BlobId, u32)> = new.iter().map(|(id, p)| (*id, p.len() as u32)).collect();
            self.pack.add_bundle(BlobType::Data, &blobs, &sealed).unwrap();
        }
        ids
    }

    fn file(&mut self, parts: &[&[u8]]) -> NodeKind {
        NodeKind::File { content: self.bundle(parts) }
    }

    fn tree(&mut self, nodes: Vec<Node>) -> BlobId {
        self.blob(BlobType::Tree, &Tree::canonical(nodes).unwrap().encode())
    }

    /// Stores the pending pack and indexes it; `damage` flips a byte inside that blob.
    fn flush(&mut self, damage: Option<BlobId>) -> PackId {
        let fresh = PackWriter::new(self.t.repo.sealing());
        let mut pack = std::mem::replace(&mut self.pack, fresh).finish(self.t.repo.key()).unwrap();
        if let Some(bad) = damage {
            let b = pack.blobs.iter().find(|b| b.id == bad).unwrap();
            pack.bytes[b.offset as usize + 30] ^= 1;
        }
        self.t.repo.put_pack(&pack).unwrap();
        self.t
            .repo
            .save_index(&IndexFile { packs: vec![IndexPack { id: pack.id, blobs: pack.blobs.clone() }] })
            .unwrap();
        pack.id
    }
}

fn node(name: &[u8], kind: NodeKind, mode: u32, mtime: (i64, u32)) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        size: 0,
        mtime: Timestamp { secs: mtime.0, nanos: mtime.1 },
        ctime: Timestamp::default(),
        inode: 0,
        device: 0,
        links: 1,
        xattrs: vec![],
    }
}

fn opts(target: &Path) -> RestoreOptions {
    RestoreOptions { target: target.to_path_buf(), ..RestoreOptions::default() }
}

const MIB: usize = 1 << 20;
const NULL_RDEV: u64 = (1 << 8) | 3;

/// Expected content by path below the target.
type Contents = Vec<(&'static [u8], Vec<u8>)>;

/// Every kind of entry; returns the root tree and the file contents by path.
fn sample(f: &mut Fixture) -> (BlobId, Contents) {
    let zeros = vec![0u8; MIB];
    let files: Vec<(&'static [u8], Vec<&[u8]>)> = vec![
        (b"hello.txt", vec![b"hello ", b"world\n"]),
        (b"empty", vec![]),
        (b"sparse", vec![&zeros, b"middle", &zeros]),
        (b"ro", vec![b"read only"]),
        (b"suid", vec![b"x"]),
        (b"caf\xe9", vec![b"latin-1 name"]),
    ];
    let mut nodes = Vec::new();
    let mut expect = Vec::new();
    for (i, (name, parts)) in files.iter().enumerate() {
        let mode = match *name {
            b"ro" => 0o100444,
            b"suid" => 0o104755,
            _ => 0o100640,
        };
        let mut n = node(name, f.file(parts), mode, (1_600_000_000 + i as i64, 123_456_789));
        if *name == b"hello.txt" || *name == b"ro" {
            n.xattrs = vec![Xattr { name: b"user.cairn".to_vec(), value: b"v1".to_vec() }];
        }
        nodes.push(n);
        expect.push((*name, parts.concat()));
    }
    for name in [&b"hl1"[..], b"hl2"] {
        let mut n = node(name, f.file(&[b"linked"]), 0o100600, (1_700_000_000, 42));
        (n.links, n.device, n.inode) = (2, 7, 4242);
        nodes.push(n);
    }
    expect.push((b"hl1", b"linked".to_vec()));
    expect.push((b"hl2", b"linked".to_vec()));
    // Same inode, other content (changed between reads): restored on its own, not linked.
    let mut n = node(b"hl3", f.file(&[b"changed"]), 0o100600, (1_700_000_000, 43));
    (n.links, n.device, n.inode) = (2, 7, 4242);
    nodes.push(n);
    expect.push((b"hl3", b"changed".to_vec()));
    nodes.push(node(
        b"dangling",
        NodeKind::Symlink { target: b"no/such/target".to_vec() },
        0o120777,
        (1_400_000_000, 999_999_999),
    ));
    nodes.push(node(b"pipe", NodeKind::Fifo, 0o010620, (1_400_000_001, 1)));
    nodes.push(node(b"sock", NodeKind::Socket, 0o140755, (1, 0)));
    nodes.push(node(b"null", NodeKind::CharDevice { rdev: NULL_RDEV }, 0o020666, (1_400_000_002, 2)));
    let inner = node(b"file", f.file(&[b"nested"]), 0o100600, (1_200_000_000, 7));
    expect.push((b"sub/deeper/file", b"nested".to_vec()));
    let deeper_tree = f.tree(vec![inner]);
    let deeper = node(b"deeper", NodeKind::Dir { subtree: deeper_tree }, 0o040555, (1_300_000_000, 6));
    let sub_tree = f.tree(vec![deeper]);
    nodes.push(node(b"sub", NodeKind::Dir { subtree: sub_tree }, 0o040750, (1_300_000_000, 5)));
    let root = f.tree(nodes);
    f.flush(None);
    (root, expect)
}

fn mtime_of(path: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(path).unwrap();
    (m.mtime(), m.mtime_nsec())
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

fn xattrs_supported(dir: &Path) -> bool {
    let probe = dir.join(".xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = xattr::set(&probe, "user.probe", b"1").is_ok();
    fs::remove_file(&probe).unwrap();
    ok
}

fn check_sample(target: &Path, expect: &[(&[u8], Vec<u8>)], summary: &RestoreSummary) {
    assert_eq!(summary.failed, vec![], "nothing may fail");
    let root = rustix::process::geteuid().is_root();
    assert_eq!((summary.files, summary.dirs, summary.other), (10, 2, 3 + u64::from(root)));
    assert_eq!(summary.bytes, expect.iter().map(|(_, c)| c.len() as u64).sum::<u64>() - 6);
    for (name, content) in expect {
        assert_eq!(
            &fs::read(target.join(OsStr::from_bytes(name))).unwrap(),
            content,
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(
        (mode_of(&target.join("hello.txt")), mtime_of(&target.join("hello.txt"))),
        (0o640, (1_600_000_000, 123_456_789))
    );
    assert_eq!(mode_of(&target.join("ro")), 0o444);
    assert_eq!(mode_of(&target.join("suid")), 0o4755);
    assert_eq!(mtime_of(&target.join(OsStr::from_bytes(b"caf\xe9"))), (1_600_000_005, 123_456_789));
    // The zero blobs were left as holes, the trailing one by the final length.
    let sparse = fs::metadata(target.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 2 * MIB as u64 + 6);
    assert!(sparse.blocks() * 512 < MIB as u64, "{} blocks allocated", sparse.blocks());
    let (h1, h2) = (fs::metadata(target.join("hl1")).unwrap(), fs::metadata(target.join("hl2")).unwrap());
    assert_eq!((h1.ino(), h1.nlink(), mtime_of(&target.join("hl2"))), (h2.ino(), 2, (1_700_000_000, 42)));
    assert_ne!(fs::metadata(target.join("hl3")).unwrap().ino(), h1.ino());
    assert_eq!(fs::read_link(target.join("dangling")).unwrap(), Path::new("no/such/target"));
    assert_eq!(mtime_of(&target.join("dangling")), (1_400_000_000, 999_999_999));
    let pipe = fs::symlink_metadata(target.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!((mode_of(&target.join("pipe")), mtime_of(&target.join("pipe"))), (0o620, (1_400_000_001, 1)));
    assert!(fs::symlink_metadata(target.join("sock")).is_err());
    match fs::symlink_metadata(target.join("null")) {
        Ok(m) => {
            assert!(root && m.file_type().is_char_device() && m.rdev() == NULL_RDEV && m.mode() & 0o7777 == 0o666)
        }
        Err(_) => assert!(!root),
    }
    assert_eq!((mode_of(&target.join("sub")), mtime_of(&target.join("sub"))), (0o750, (1_300_000_000, 5)));
    let deeper = target.join("sub/deeper");
    assert_eq!((mode_of(&deeper), mtime_of(&deeper)), (0o555, (1_300_000_000, 6)));
    assert_eq!(mtime_of(&deeper.join("file")), (1_200_000_000, 7));
    if xattrs_supported(target) {
        for name in ["hello.txt", "ro"] {
            assert_eq!(xattr::get(target.join(name), "user.cairn").unwrap(), Some(b"v1".to_vec()), "{name}");
        }
    }
    // Let the temporary folder be removed by a user that is not root.
    fs::set_permissions(&deeper, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn restores_every_kind_of_entry_faithfully() {
    let mut f = Fixture::new();
    let (root, expect) = sample(&mut f);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("new/target");
    let summary = restore(f.repo(), &root, &opts(&target)).unwrap();
    check_sample(&target, &expect, &summary);
}

#[test]
fn small_batches_and_reads_restore_the_same() {
    let mut f = Fixture::new();
    let (root, expect) = sample(&mut f);
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits { max_depth: 8, max_gap: 0, max_range: 1, batch_blobs: 1, batch_entries: 1 };
    let summary =
        restore_from(f.repo(), f.repo(), &root, &RestoreOptions { workers: 1, ..opts(tmp.path()) }, limits).unwrap();
    check_sample(tmp.path(), &expect, &summary);
}

#[test]
fn existing_entries_are_replaced_without_touching_what_they_point_to() {
    let mut f = Fixture::new();
    let (root, expect) = sample(&mut f);
    let tmp = tempfile::tempdir().unwrap();
    let (outside, target) = (tmp.path().join("outside"), tmp.path().join("target"));
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(&target).unwrap();
    fs::write(outside.join("victim"), b"keep").unwrap();
    fs::hard_link(outside.join("victim"), target.join("hello.txt")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), target.join("ro")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("sub")).unwrap();
    let summary = restore(f.repo(), &root, &opts(&target)).unwrap();
    check_sample(&target, &expect, &summary);
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

/// Damage confined to some blobs, a pack or a tree fails exactly the entries needing them.
#[test]
fn damaged_or_missing_data_fails_only_the_files_that_need_it() {
    let mut f = Fixture::new();
    let good = f.file(&[b"good data"]);
    let bad_id = f.blob(BlobType::Data, b"bad data");
    let bad = NodeKind::File { content: vec![bad_id] };
    f.flush(Some(bad_id));
    let mixed = NodeKind::File { content: vec![f.blob(BlobType::Data, b"fine"), bad_id] };
    let unknown = BlobId(crate::id::Id([9; 32]));
    let mut nodes = vec![
        node(b"good", good, 0o100644, (1, 0)),
        node(b"bad", bad.clone(), 0o100644, (1, 0)),
        node(b"mixed", mixed, 0o100644, (1, 0)),
        node(b"missing", NodeKind::File { content: vec![unknown] }, 0o100644, (1, 0)),
        node(b"lost-dir", NodeKind::Dir { subtree: unknown }, 0o040755, (1, 0)),
    ];
    for name in [&b"bl1"[..], b"bl2"] {
        let mut n = node(name, bad.clone(), 0o100644, (1, 0));
        (n.links, n.device, n.inode) = (2, 1, 99);
        nodes.push(n);
    }
    let root = f.tree(nodes);
    f.flush(None);
    for limits in [Limits::default(), Limits { batch_blobs: 1, batch_entries: 1, ..Limits::default() }] {
        let tmp = tempfile::tempdir().unwrap();
        let summary = restore_from(f.repo(), f.repo(), &root, &opts(tmp.path()), limits).unwrap();
        assert_eq!(fs::read(tmp.path().join("good")).unwrap(), b"good data");
        assert_eq!(summary.files, 1);
        let mut failed: Vec<&str> =
            summary.failed.iter().map(|(p, _)| p.file_name().unwrap().to_str().unwrap()).collect();
        failed.sort();
        assert_eq!(failed, ["bad", "bl1", "bl2", "lost-dir", "missing", "mixed"]);
        for (path, reason) in &summary.failed {
            assert!(fs::symlink_metadata(path).is_err(), "{} must not exist", path.display());
            let name = path.file_name().unwrap().to_str().unwrap();
            match name {
                "bad" | "mixed" => assert!(reason.contains(&bad_id.to_hex()), "{reason}"),
                "missing" => assert!(reason.contains("not in the index"), "{reason}"),
                _ => {}
            }
        }
    }
}

/// A pack that cannot be read fails its files; the capability is a two-method trait, so a
/// wrapper stands in for lost storage.
struct LosePack<'a> {
    repo: &'a Repository,
    lost: PackId,
}

impl PackSource for LosePack<'_> {
    fn read_range(&self, pack: &PackId, range: Range<u64>, buf: &mut ReadBuf) -> Result<()> {
        if *pack == self.lost {
            return Err(Error::Missing { object: ObjectRef::new(ObjectKind::Pack, pack.to_hex()) });
        }
        self.repo.read_pack_range_into(pack, range, buf)
    }
    fn open_data_bundle(&self, id: &BlobId, entry: &IndexEntry, sealed: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.repo.open_data_bundle(id, entry, sealed, out)
    }
    fn data_in<'b>(&self, id: &BlobId, entry: &IndexEntry, bundle: &'b [u8]) -> Result<&'b [u8]> {
        self.repo.data_in(id, entry, bundle)
    }
}

#[test]
fn an_unreadable_pack_fails_its_files_only() {
    let mut f = Fixture::new();
    let a = f.file(&[b"in the lost pack"]);
    let lost = f.flush(None);
    let b = f.file(&[b"elsewhere"]);
    let root = f.tree(vec![node(b"a", a, 0o100644, (1, 0)), node(b"b", b, 0o100644, (1, 0))]);
    f.flush(None);
    let tmp = tempfile::tempdir().unwrap();
    let src = LosePack { repo: f.repo(), lost };
    let summary = restore_from(f.repo(), &src, &root, &opts(tmp.path()), Limits::default()).unwrap();
    assert_eq!(fs::read(tmp.path().join("b")).unwrap(), b"elsewhere");
    assert!(!tmp.path().join("a").exists());
    assert_eq!(summary.failed.len(), 1);
    assert!(summary.failed[0].1.contains(&lost.to_hex()), "{}", summary.failed[0].1);
}

#[test]
fn nesting_deeper_than_the_limit_is_an_error() {
    let mut f = Fixture::new();
    let mut tree = f.tree(vec![]);
    for _ in 0..5 {
        tree = f.tree(vec![node(b"d", NodeKind::Dir { subtree: tree }, 0o040755, (1, 0))]);
    }
    f.flush(None);
    let tmp = tempfile::tempdir().unwrap();
    let limits = Limits { max_depth: 4, ..Limits::default() };
    let err = restore_from(f.repo(), f.repo(), &tree, &opts(tmp.path()), limits).unwrap_err();
    assert!(matches!(err, Error::Corrupt { object: ObjectRef { kind: ObjectKind::Tree, .. }, .. }), "{err}");
    let summary = restore(f.repo(), &tree, &opts(&tmp.path().join("ok"))).unwrap();
    assert_eq!(summary.dirs, 5);
}

/// A damaged bundle fails every blob in it, and only those: dump writes up to the first.
#[test]
fn a_damaged_bundle_fails_all_its_blobs() {
    let mut f = Fixture::new();
    let ok = f.bundle(&[b"kept ", b"whole "]);
    let bad = f.bundle(&[b"lost one ", b"lost two "]);
    f.flush(Some(bad[1]));
    let n = node(b"f", NodeKind::File { content: [ok.clone(), bad.clone()].concat() }, 0o100644, (1, 0));
    let mut out = Vec::new();
    assert!(matches!(dump(f.repo(), &n, &mut out).unwrap_err(), Error::Corrupt { .. }));
    assert_eq!(out, b"kept whole ");
    let files = vec![
        node(b"ok", NodeKind::File { content: ok }, 0o100644, (1, 0)),
        node(b"one", NodeKind::File { content: vec![bad[0]] }, 0o100644, (1, 0)),
        node(b"two", NodeKind::File { content: vec![bad[1]] }, 0o100644, (1, 0)),
    ];
    let root = f.tree(files);
    f.flush(None);
    let tmp = tempfile::tempdir().unwrap();
    let summary = restore(f.repo(), &root, &opts(tmp.path())).unwrap();
    assert_eq!(fs::read(tmp.path().join("ok")).unwrap(), b"kept whole ");
    let mut failed: Vec<&str> = summary.failed.iter().map(|(p, _)| p.file_name().unwrap().to_str().unwrap()).collect();
    failed.sort();
    assert_eq!(failed, ["one", "two"]);
}
