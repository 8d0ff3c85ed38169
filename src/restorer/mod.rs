//! Restore: recreate a snapshot's tree in a target folder, and `dump` one file's content.
//!
//! Three stages per batch (restic's restorer): `plan.rs` walks the trees, creates directories
//! and groups every file's blobs by pack; here N workers each take a pack, read its coalesced
//! ranges, open (authenticate, decompress, re-hash) every blob and only then write its bytes at
//! each place that needs them; `write.rs` removes files that could not be completed and applies
//! attributes, directories last and deepest first. A damaged blob or unreadable pack fails only
//! the files that need it: they are removed and listed in [`RestoreSummary::failed`].

mod dump;
mod plan;
mod write;

use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId};
use crate::index::{BlobIndex, IndexEntry};
use crate::repo::Repository;
use crate::tree::{Node, NodeKind, Tree};
use bytes::Bytes;
use plan::{Batch, Limits, PackPlan, ReadRange, TreeSource, Walker};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The folder to restore into; created if missing.
    pub target: PathBuf,
    /// Packs read and written in parallel.
    pub workers: usize,
    /// Restore owners (uid, gid); needs root to give files to other users.
    pub set_owner: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { target: PathBuf::from("."), workers: 4, set_owner: rustix::process::geteuid().is_root() }
    }
}

/// What a restore did. `failed` lists every entry that is missing from the target or whose
/// attributes could not be set, each with the reason (naming the blob or pack at fault); a
/// caller should treat a non-empty list as an incomplete restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Regular files, hard links included.
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, fifos, devices and (skipped) sockets.
    pub other: u64,
    /// Content bytes of the regular files restored, each inode once.
    pub bytes: u64,
    pub failed: Vec<(PathBuf, String)>,
}

/// What the workers read: ranges of packs, and blobs opened from their sealed bytes.
pub(crate) trait PackSource: Sync {
    fn read_range(&self, pack: &PackId, range: Range<u64>) -> Result<Bytes>;
    /// Authenticates, decompresses and re-hashes one data blob; only verified bytes come back.
    fn open_data(&self, id: &BlobId, entry: &IndexEntry, sealed: &[u8]) -> Result<Vec<u8>>;
}

impl TreeSource for Repository {
    fn tree(&self, id: &BlobId) -> Result<Tree> {
        self.load_tree(id)
    }
    fn locate_data(&self, id: &BlobId) -> Result<Option<IndexEntry>> {
        self.index()?.lookup(BlobType::Data, id)
    }
    fn locate_data_many(&self, ids: &[BlobId]) -> Result<Vec<Option<IndexEntry>>> {
        self.index()?.lookup_many(BlobType::Data, ids)
    }
}

impl PackSource for Repository {
    fn read_range(&self, pack: &PackId, range: Range<u64>) -> Result<Bytes> {
        self.read_pack_range(pack, range)
    }
    fn open_data(&self, id: &BlobId, entry: &IndexEntry, sealed: &[u8]) -> Result<Vec<u8>> {
        self.open_blob_at(BlobType::Data, id, entry, sealed)
    }
}

/// Restores the tree `root` (a snapshot's root tree id) into `opts.target`.
///
/// Errors only when the restore cannot proceed at all (target not creatable, root tree
/// unreadable, trees nested deeper than 1024, index unusable); damage confined to some files is
/// reported in the summary instead.
pub fn restore(repo: &Repository, root: &BlobId, opts: &RestoreOptions) -> Result<RestoreSummary> {
    restore_from(repo, repo, root, opts, Limits::default())
}

fn restore_from(
    trees: &dyn TreeSource,
    packs: &dyn PackSource,
    root: &BlobId,
    opts: &RestoreOptions,
    limits: Limits,
) -> Result<RestoreSummary> {
    write::create_target(&opts.target)?;
    let root_tree = trees.tree(root)?;
    let mut summary = RestoreSummary::default();
    let mut walker = Walker::new(trees, limits, opts.target.clone(), root_tree);
    // Each batch is restored while the next one is planned (trees read, entries created).
    let mut next = walker.next_batch(&mut summary)?;
    while let Some(batch) = next {
        let progress = write::Progress::new(&batch, opts.set_owner);
        let (failures, planned) = std::thread::scope(|s| {
            let running = s.spawn(|| execute(packs, &batch, &progress, opts.workers));
            let planned = walker.next_batch(&mut summary);
            (running.join(), planned)
        });
        let failures =
            failures.map_err(|_| Error::io("restoring", std::io::Error::other("a restore worker panicked")))?;
        let settled = write::finish_batch(batch, failures, progress, &mut summary);
        walker.settle(settled, &mut summary);
        next = planned?;
    }
    // Directories last, deepest first: creating and touching children moves a parent's mtime,
    // and a read-only directory mode would stop us writing into it.
    let mut dirs = std::mem::take(&mut walker.dirs);
    dirs.sort_by_key(|(depth, _, _)| std::cmp::Reverse(*depth));
    for (_, path, node) in &dirs {
        write::apply_attributes(path, node, opts.set_owner, &mut summary);
    }
    Ok(summary)
}

/// Fills the files of a batch: `workers` threads take packs from a shared counter. Returns, per
/// file, the first reason it failed.
fn execute(src: &dyn PackSource, batch: &Batch, progress: &write::Progress, workers: usize) -> Vec<Option<String>> {
    let failures: Vec<OnceLock<String>> = batch.files.iter().map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let threads = workers.clamp(1, batch.packs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut writer = write::FileWriter::new(&batch.files, progress);
                while let Some(pack) = batch.packs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    restore_pack(src, pack, &mut writer, &failures);
                }
            });
        }
    });
    failures.into_iter().map(OnceLock::into_inner).collect()
}

fn fail(failures: &[OnceLock<String>], file: usize, reason: &str) {
    if let Some(slot) = failures.get(file) {
        // The first reason is the one reported; later ones follow from it.
        let _ = slot.set(reason.to_string());
    }
}

fn fail_all(failures: &[OnceLock<String>], range: &ReadRange, reason: &str) {
    for blob in &range.blobs {
        for (file, _) in &blob.targets {
            fail(failures, *file, reason);
        }
    }
}

/// Reads one pack range by range; at most one range of sealed bytes and one opened blob are in
/// memory at a time.
fn restore_pack(
    src: &dyn PackSource,
    pack: &PackPlan,
    writer: &mut write::FileWriter<'_>,
    failures: &[OnceLock<String>],
) {
    for range in &pack.ranges {
        let bytes = match src.read_range(&pack.pack, range.start..range.end) {
            Ok(bytes) => bytes,
            Err(e) => {
                fail_all(failures, range, &e.to_string());
                continue;
            }
        };
        for blob in &range.blobs {
            let alive = || blob.targets.iter().any(|(file, _)| failures.get(*file).is_some_and(|f| f.get().is_none()));
            if !alive() {
                continue;
            }
            let plain = match open_in_range(src, &pack.pack, range, &bytes, blob) {
                Ok(plain) => plain,
                Err(reason) => {
                    blob.targets.iter().for_each(|(file, _)| fail(failures, *file, &reason));
                    continue;
                }
            };
            // An all-zero blob stays a hole (the writer skips it): the file gets its length last.
            for (file, offset) in &blob.targets {
                if failures.get(*file).is_some_and(|f| f.get().is_none())
                    && let Err(reason) = writer.write(*file, *offset, &plain)
                {
                    fail(failures, *file, &reason);
                }
            }
        }
    }
}

/// Cuts one blob out of a read range and opens it; its plaintext must have the length the
/// index promised, since the file offsets of the blobs after it were computed from it.
fn open_in_range(
    src: &dyn PackSource,
    pack: &PackId,
    range: &ReadRange,
    bytes: &Bytes,
    blob: &plan::BlobUse,
) -> Result<Vec<u8>, String> {
    let start = u64::from(blob.entry.offset) - range.start;
    let end = start + u64::from(blob.entry.length);
    let sealed =
        usize::try_from(start).ok().zip(usize::try_from(end).ok()).and_then(|(s, e)| bytes.get(s..e)).ok_or_else(
            || format!("pack {} is shorter than the index says (blob {})", pack.to_hex(), blob.id.to_hex()),
        )?;
    let plain = src.open_data(&blob.id, &blob.entry, sealed).map_err(|e| e.to_string())?;
    if plain.len() as u64 != u64::from(blob.entry.raw_length) {
        return Err(format!(
            "data blob {} in pack {} has {} bytes, the index says {}",
            blob.id.to_hex(),
            pack.to_hex(),
            plain.len(),
            blob.entry.raw_length
        ));
    }
    Ok(plain)
}

/// Finds the node at `path` ("db.sql", "/home/x/file", components separated by '/') below
/// `root`. Empty and `.` components are skipped; `..` is refused.
pub fn find_node(repo: &Repository, root: &BlobId, path: &[u8]) -> Result<Node> {
    find_node_in(repo, root, path)
}

fn find_node_in(trees: &dyn TreeSource, root: &BlobId, path: &[u8]) -> Result<Node> {
    let shown = || String::from_utf8_lossy(path).into_owned();
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    if parts.contains(&&b".."[..]) {
        return Err(Error::Usage(format!("path {} must not contain `..`", shown())));
    }
    let Some((last, dirs)) = parts.split_last() else {
        return Err(Error::Usage(format!("path {:?} names the snapshot's root, not an entry in it", shown())));
    };
    let mut tree = trees.tree(root)?;
    for (i, part) in dirs.iter().enumerate() {
        let walked = || String::from_utf8_lossy(&parts[..=i].join(&b'/')).into_owned();
        match tree.find(part).map(|n| &n.kind) {
            Some(NodeKind::Dir { subtree }) => {
                let id = *subtree;
                tree = trees.tree(&id)?;
            }
            Some(_) => return Err(Error::Usage(format!("{} in the snapshot is not a directory", walked()))),
            None => return Err(Error::Usage(format!("{} not found in the snapshot", walked()))),
        }
    }
    let pos = tree.nodes.binary_search_by(|n| n.name.as_slice().cmp(last));
    match pos {
        Ok(i) => Ok(tree.nodes.swap_remove(i)),
        Err(_) => Err(Error::Usage(format!("{} not found in the snapshot", shown()))),
    }
}

/// Writes a file node's content to `out`, each blob verified before any of its bytes are
/// written (reading, verifying and writing overlap; see `dump.rs`). Errors if the node is not a
/// regular file or a blob is missing or damaged; `out` then holds a prefix of the content.
pub fn dump(repo: &Repository, node: &Node, out: &mut dyn std::io::Write) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    dump::dump_from(repo, repo, node, out, workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::seal_blob;
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

    /// An in-memory repository plus a pack being filled with blobs.
    struct Fixture {
        t: TestRepo,
        pack: PackWriter,
        added: HashSet<BlobId>,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture { t: memory_repo(), pack: PackWriter::new(), added: HashSet::new() }
        }

        fn repo(&self) -> &Repository {
            &self.t.repo
        }

        fn blob(&mut self, kind: BlobType, data: &[u8]) -> BlobId {
            let key = self.t.repo.key();
            let id = key.blob_id(data);
            if self.added.insert(id) {
                let sealed = seal_blob(key, kind, &id, data, 3);
                self.pack.add(kind, id, &sealed, data.len() as u32).unwrap();
            }
            id
        }

        fn file(&mut self, parts: &[&[u8]]) -> NodeKind {
            NodeKind::File { content: parts.iter().map(|p| self.blob(BlobType::Data, p)).collect() }
        }

        fn tree(&mut self, nodes: Vec<Node>) -> BlobId {
            self.blob(BlobType::Tree, &Tree::canonical(nodes).unwrap().encode())
        }

        /// Stores the pending pack and indexes it; `damage` flips a byte inside that blob.
        fn flush(&mut self, damage: Option<BlobId>) -> PackId {
            let mut pack = std::mem::take(&mut self.pack).finish(self.t.repo.key()).unwrap();
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
            restore_from(f.repo(), f.repo(), &root, &RestoreOptions { workers: 1, ..opts(tmp.path()) }, limits)
                .unwrap();
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
        fn read_range(&self, pack: &PackId, range: Range<u64>) -> Result<Bytes> {
            if *pack == self.lost {
                return Err(Error::Missing { object: ObjectRef::new(ObjectKind::Pack, pack.to_hex()) });
            }
            self.repo.read_pack_range(pack, range)
        }
        fn open_data(&self, id: &BlobId, entry: &IndexEntry, sealed: &[u8]) -> Result<Vec<u8>> {
            self.repo.open_data(id, entry, sealed)
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

    #[test]
    fn find_node_and_dump() {
        let mut f = Fixture::new();
        let (root, _) = sample(&mut f);
        let repo = f.repo();
        for path in [&b"sub/deeper/file"[..], b"/sub/deeper/file", b"sub//./deeper/file"] {
            let n = find_node(repo, &root, path).unwrap();
            assert_eq!(n.name, b"file");
            let mut out = Vec::new();
            dump(repo, &n, &mut out).unwrap();
            assert_eq!(out, b"nested");
        }
        let mut out = Vec::new();
        dump(repo, &find_node(repo, &root, b"sparse").unwrap(), &mut out).unwrap();
        assert_eq!(out.len(), 2 * MIB + 6);
        assert_eq!(&out[MIB..MIB + 6], b"middle");
        assert_eq!(find_node(repo, &root, b"caf\xe9").unwrap().name, b"caf\xe9");
        for bad in [&b""[..], b"/", b"nope", b"hello.txt/x", b"sub/../hello.txt", b"sub/nope"] {
            assert!(matches!(find_node(repo, &root, bad), Err(Error::Usage(_))), "{}", String::from_utf8_lossy(bad));
        }
        let dir = find_node(repo, &root, b"sub").unwrap();
        assert!(matches!(dump(repo, &dir, &mut Vec::new()), Err(Error::Usage(_))));
    }

    #[test]
    fn dump_keeps_order_across_packs_and_stops_at_a_missing_blob() {
        let mut f = Fixture::new();
        let mut content = Vec::new();
        let mut expect = Vec::new();
        for i in 0..40u32 {
            let part = format!("part {i} ").repeat(1 + i as usize % 7);
            content.push(f.blob(BlobType::Data, part.as_bytes()));
            expect.extend_from_slice(part.as_bytes());
            if i % 9 == 8 {
                f.flush(None);
            }
        }
        f.flush(None);
        // Blobs again, out of pack order, then an unknown one, then more.
        content.extend([content[3], content[1]]);
        let again: Vec<u8> =
            [3usize, 1].iter().flat_map(|&i| format!("part {i} ").repeat(1 + i % 7).into_bytes()).collect();
        expect.extend_from_slice(&again);
        let whole = node(b"f", NodeKind::File { content: content.clone() }, 0o100644, (1, 0));
        for workers in [1, 3] {
            let mut out = Vec::new();
            dump::dump_from(f.repo(), f.repo(), &whole, &mut out, workers).unwrap();
            assert_eq!(out, expect);
        }
        content.extend([BlobId(crate::id::Id([9; 32])), content[0]]);
        let broken = node(b"f", NodeKind::File { content }, 0o100644, (1, 0));
        let mut out = Vec::new();
        let err = dump(f.repo(), &broken, &mut out).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert_eq!(out, expect);
    }

    #[test]
    fn dump_refuses_a_damaged_blob_before_writing_it() {
        let mut f = Fixture::new();
        let first = f.blob(BlobType::Data, b"first part;");
        let second = f.blob(BlobType::Data, b"second part");
        f.flush(Some(second));
        let n = node(b"f", NodeKind::File { content: vec![first, second] }, 0o100644, (1, 0));
        let mut out = Vec::new();
        let err = dump(f.repo(), &n, &mut out).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(out, b"first part;");
    }
}
