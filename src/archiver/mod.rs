//! The archiver: turns sources (folders, files) and streamed inputs into one snapshot.
//!
//! Sources are stored under their absolute paths (intermediate folders keep their real
//! metadata); streamed inputs appear as files in the snapshot's root. Reader threads
//! (`read.rs`) scan folders (`scan.rs`: list, stat, unchanged-file detection) and read, chunk,
//! hash and deduplicate changed files (against the index and against blobs already queued in
//! this run), handing new blobs to the pipeline (`pipeline.rs`). The walker (`walk.rs`) asks
//! for folders' scans ahead of descending, takes all outcomes in tree order and builds trees
//! bottom-up. A stream is read and chunked by the walker and hashed by the readers. After
//! the walk the pipeline is finished (last pack, last index object) and only then is the
//! snapshot written: a failed input means an error and no snapshot.

pub mod pipeline;
mod read;
mod scan;
pub mod stream;
pub mod walk;

use crate::blob::BlobType;
use crate::chunker::Chunker;
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use crate::repo::Repository;
use crate::snapshot::{Snapshot, Summary};
use crate::tree::{Node, NodeKind, Tree};
use pipeline::{BATCH_BYTES, Budget, Pipeline, Submitter};
use read::{Failure, Readers};
use scan::{Indexed, StillIndexed};
use std::collections::{BTreeMap, VecDeque};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use stream::StreamInput;

/// What to back up and how to label it.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    pub inputs: Vec<StreamInput>,
    pub excludes: Vec<String>,
    pub tags: Vec<String>,
    pub host: String,
    /// The snapshot whose trees decide which files are unchanged.
    pub parent: Option<(SnapshotId, BlobId)>,
}

pub struct Archiver<'r, 'p> {
    repo: &'r Repository,
    sub: Submitter<'p>,
    readers: &'p Readers<'p>,
    budget: Budget,
    stream_chunker: Chunker,
    summary: Summary,
    warnings: Vec<String>,
    open: walk::OpenDirs,
}

/// One entry of the snapshot root's virtual folder structure.
enum Entry {
    Source(PathBuf),
    Dir(PathBuf, BTreeMap<Vec<u8>, Entry>),
    Input(usize),
}

/// Runs one backup. Returns the stored snapshot, its id and warnings (vanished files).
pub fn backup(repo: &Repository, opts: &BackupOptions) -> Result<(SnapshotId, Snapshot, Vec<String>)> {
    let started = std::time::Instant::now();
    let root = plan_root(opts)?;
    let parent_tree = match &opts.parent {
        Some((_, tree)) => Some(repo.load_tree(tree)?),
        None => None,
    };
    let excludes = scan::Excludes::new(&opts.excludes)?;
    let walk = |indexed| walk_and_store(repo, opts, &root, parent_tree.as_ref(), &excludes, indexed);
    let still = StillIndexed::default();
    // A streamed input cannot be read twice, so a backup with one asks the index as it goes.
    let first = if opts.inputs.is_empty() { Indexed::Later(&still) } else { Indexed::Ask };
    let (mut tree, mut summary, mut warnings) = walk(first)?;
    if !still.all_there(repo)? {
        // Some unchanged file's blobs left the index since the parent snapshot (an index object
        // lost or damaged): that walk's trees may name them, so walk again asking the index
        // folder by folder; those files are read again. What the first walk stored is kept.
        let (blobs, bytes) = (summary.blobs_added, summary.bytes_added);
        (tree, summary, warnings) = walk(Indexed::Ask)?;
        summary.blobs_added += blobs;
        summary.bytes_added += bytes;
    }
    summary.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut paths: Vec<String> =
        opts.paths.iter().map(|p| absolute(p).map(|p| p.display().to_string())).collect::<Result<_>>()?;
    paths.extend(opts.inputs.iter().map(StreamInput::label));
    let snap = Snapshot {
        time: crate::repo::now(),
        host: opts.host.clone(),
        username: crate::repo::username(),
        paths,
        tags: opts.tags.clone(),
        tree,
        parent: opts.parent.map(|(id, _)| id),
        summary,
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
    };
    let id = repo.save_snapshot(&snap)?;
    Ok((id, snap, warnings))
}

/// One walk of the sources with the readers and the pipeline; the pipeline is finished (last
/// pack and index object stored) before this returns, even after a failed walk.
fn walk_and_store(
    repo: &Repository,
    opts: &BackupOptions,
    root: &BTreeMap<Vec<u8>, Entry>,
    parent_tree: Option<&Tree>,
    excludes: &scan::Excludes,
    indexed: Indexed<'_>,
) -> Result<(BlobId, Summary, Vec<String>)> {
    let budget = Budget::for_machine(repo.backend().parallel_puts());
    let (walked, stored) = std::thread::scope(|scope| {
        let pipe = Pipeline::start(scope, repo, budget);
        let walked = pipe.submitter().and_then(|sub| {
            let readers = Readers::start(scope, repo, excludes, indexed, &sub, budget);
            let mut a = Archiver::new(repo, sub, &readers, budget);
            a.save_root(root, opts, parent_tree).map(|tree| (tree, a.summary, a.warnings))
        });
        // Finish even after a failed walk, so stored packs get indexed and reused next time.
        // The readers and every submitter are gone by now, so the pipeline can drain.
        let stored = pipe.finish();
        Ok::<_, Error>((walked, stored))
    })?;
    let (tree, mut summary, warnings) = walked?;
    let stored = stored?;
    summary.blobs_added = stored.blobs;
    summary.bytes_added = stored.bytes;
    Ok((tree, summary, warnings))
}

pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(format!("{}", p.display()), e))?;
    // Normalise `.` and `..` lexically, as the user wrote them (symlinks are not resolved).
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Builds the root's folder structure from the sources and inputs.
fn plan_root(opts: &BackupOptions) -> Result<BTreeMap<Vec<u8>, Entry>> {
    let mut root = BTreeMap::new();
    for (i, input) in opts.inputs.iter().enumerate() {
        if !crate::tree::valid_name(input.name.as_bytes()) {
            return Err(Error::Usage(format!("input name `{}` must be a plain file name (no `/`)", input.name)));
        }
        if root.insert(input.name.as_bytes().to_vec(), Entry::Input(i)).is_some() {
            return Err(Error::Usage(format!("two inputs are named `{}`", input.name)));
        }
    }
    let mut sources: Vec<PathBuf> = opts.paths.iter().map(|p| absolute(p)).collect::<Result<_>>()?;
    sources.sort();
    sources.dedup();
    for src in &sources {
        if sources.iter().any(|other| other != src && src.starts_with(other)) {
            continue; // inside another source: already covered
        }
        std::fs::symlink_metadata(src).map_err(|e| scan::unreadable(src, e))?;
        let names: Vec<&std::ffi::OsStr> =
            src.components().filter_map(|c| if let Component::Normal(n) = c { Some(n) } else { None }).collect();
        let Some((last, dirs)) = names.split_last() else {
            return Err(Error::Usage("backing up `/` itself is not supported; name the folders".into()));
        };
        let mut level = &mut root;
        let mut real = PathBuf::from("/");
        for d in dirs {
            real.push(d);
            let e = level.entry(d.as_bytes().to_vec()).or_insert_with(|| Entry::Dir(real.clone(), BTreeMap::new()));
            level = match e {
                Entry::Dir(_, children) => children,
                _ => return Err(Error::Usage(format!("{} clashes with an input name", real.display()))),
            };
        }
        if level.insert(last.as_bytes().to_vec(), Entry::Source(src.clone())).is_some() {
            return Err(Error::Usage(format!("{} clashes with an input name", src.display())));
        }
    }
    Ok(root)
}

impl<'r, 'p> Archiver<'r, 'p> {
    fn new(repo: &'r Repository, sub: Submitter<'p>, readers: &'p Readers<'p>, budget: Budget) -> Self {
        Archiver {
            repo,
            sub,
            readers,
            budget,
            stream_chunker: Chunker::new(repo.config().chunker_streams, repo.key().chunker_seed()),
            summary: Summary::default(),
            warnings: Vec::new(),
            open: walk::OpenDirs::default(),
        }
    }

    fn warn(&mut self, msg: String) {
        eprintln!("warning: {msg}");
        self.warnings.push(msg);
    }

    /// Queues a tree blob unless the index or this run already has it.
    fn store_tree(&mut self, id: BlobId, data: Vec<u8>) -> Result<()> {
        self.sub.store(BlobType::Tree, id, data)
    }

    /// Reads and chunks a stream here, and has the readers hash and store its chunks about
    /// [`BATCH_BYTES`] at a time; takes their ids back in order. Returns the chunk list and length.
    fn save_stream(&mut self, input: impl std::io::Read, label: &Path) -> Result<(Vec<BlobId>, u64)> {
        let (readers, limit) = (self.readers, self.budget.files_in_flight.max(1));
        let mut content = Vec::new();
        let mut in_flight: VecDeque<read::Pending<Result<Vec<BlobId>>>> = VecDeque::new();
        let (mut chunks, mut bytes, mut count) = (Vec::new(), 0, 0usize);
        let size = self
            .stream_chunker
            .chunk::<_, Failure>(input, None, |chunk| {
                bytes += chunk.len();
                chunks.push(chunk);
                count += 1;
                if count > walk::MAX_FILE_CHUNKS {
                    // Stop now: the chunk list could not be stored, however long we read on.
                    return Err(Failure::Store(walk::tree_too_large()));
                }
                if bytes >= BATCH_BYTES {
                    bytes = 0;
                    if in_flight.len() >= limit
                        && let Some(p) = in_flight.pop_front()
                    {
                        content.extend(p.wait().map_err(Failure::Store)?);
                    }
                    in_flight.push_back(readers.hash_chunks(std::mem::take(&mut chunks)).map_err(Failure::Store)?);
                }
                Ok(())
            })
            .map_err(|e| e.into_error(label))?;
        in_flight.push_back(readers.hash_chunks(chunks)?);
        for p in in_flight {
            content.extend(p.wait()?);
        }
        self.summary.bytes_read += size;
        Ok((content, size))
    }

    fn save_root(
        &mut self,
        root: &BTreeMap<Vec<u8>, Entry>,
        opts: &BackupOptions,
        parent: Option<&Tree>,
    ) -> Result<BlobId> {
        let nodes = self.save_level(root, opts, parent)?;
        // Every source's tree was asked for, and that finished every folder opened before it.
        if !self.open.is_empty() {
            return Err(pipeline::internal("folders left unfinished"));
        }
        self.save_tree(nodes)
    }

    fn save_level(
        &mut self,
        level: &BTreeMap<Vec<u8>, Entry>,
        opts: &BackupOptions,
        parent: Option<&Tree>,
    ) -> Result<Vec<Node>> {
        let mut nodes = Vec::new();
        for (name, entry) in level {
            let old = parent.and_then(|t| t.find(name));
            let node = match entry {
                Entry::Input(i) => Some(self.save_input(&opts.inputs[*i])?),
                Entry::Source(path) => match self.save_entry(path.clone(), name, old)? {
                    Some(slot) => self.finish_slot(slot)?,
                    None => None,
                },
                Entry::Dir(real, children) => {
                    let st = rustix::fs::lstat(real).map_err(|e| scan::unreadable(real, e.into()))?;
                    // Only an optimisation: a tree that cannot be loaded means every file below
                    // is read again.
                    let old_tree = match old.map(|n| &n.kind) {
                        Some(NodeKind::Dir { subtree }) => self.repo.load_tree(subtree).ok(),
                        _ => None,
                    };
                    let children = self.save_level(children, opts, old_tree.as_ref())?;
                    let subtree = self.save_tree(children)?;
                    Some(Node { kind: NodeKind::Dir { subtree }, ..scan::node_from_stat(name, &st) })
                }
            };
            nodes.extend(node);
        }
        Ok(nodes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testing::FailingPuts;
    use crate::backend::{Backend, StoreBackend};
    use crate::error::ObjectKind;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn source(n: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let data: Vec<u8> =
                (0..300_000u64).map(|j| ((j * 7919 + i * 104_729) % 251) as u8 ^ (j >> 9) as u8).collect();
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
        let stored: std::collections::HashSet<String> =
            base.list("packs").unwrap().into_iter().map(|l| l.name).collect();
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
        assert_eq!(
            file_content(&t.repo, &first.tree, &path(&["a", "x"])),
            std::fs::read(src.path().join("a/x")).unwrap()
        );
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
        let root: Vec<String> = src.path().iter().skip(1).map(|c| c.to_str().unwrap().to_string()).collect();
        for (path, data) in &files {
            let mut at: Vec<&str> = root.iter().map(String::as_str).collect();
            at.extend(path.split('/'));
            assert!(file_content(&t.repo, &first.tree, &at) == *data, "{path}");
        }
        let with_parent = BackupOptions { parent: Some((id, first.tree)), ..opts(src.path()) };
        let (_, again, _) = backup(&t.repo, &with_parent).unwrap();
        assert_eq!(again.tree, first.tree);
        assert_eq!(again.summary.files_unchanged, files.len() as u64);
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
}
