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
mod tests;
