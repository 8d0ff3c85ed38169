//! The sorted walk of a source beside the parent snapshot's tree, and nodes from metadata.
//!
//! Entries of each directory are taken in byte order of their names (the tree's canonical
//! order). A regular file whose size, mtime, ctime and inode equal those of the same path in the
//! parent snapshot, and whose blobs are all still in the index, reuses the parent's chunk list
//! without being read. An entry that vanishes between listing and reading is left out (that is
//! a consistent state of a live tree); any other read error aborts the backup.

use super::Archiver;
use super::read::{FileOutcome, Pending};
use crate::blob::BlobType;
use crate::error::{Error, Result};
use crate::index::BlobIndex;
use crate::tree::{Node, NodeKind, Timestamp, Tree, Xattr};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::tree::MAX_DEPTH;

fn unreadable(path: &Path, source: std::io::Error) -> Error {
    Error::InputUnreadable { path: path.to_path_buf(), source }
}

/// A node with every field from `meta`, and a placeholder kind.
pub fn node_from_meta(name: &[u8], meta: &Metadata, kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        size: if meta.is_file() { meta.size() } else { 0 },
        mtime: mtime_of(meta),
        ctime: ctime_of(meta),
        inode: meta.ino(),
        device: meta.dev(),
        links: meta.nlink(),
        xattrs: Vec::new(),
    }
}

fn mtime_of(meta: &Metadata) -> Timestamp {
    Timestamp { secs: meta.mtime(), nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32 }
}

fn ctime_of(meta: &Metadata) -> Timestamp {
    Timestamp { secs: meta.ctime(), nanos: meta.ctime_nsec().clamp(0, 999_999_999) as u32 }
}

fn read_xattrs(path: &Path) -> Result<Vec<Xattr>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        // Filesystems without xattr support have none to keep.
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push(Xattr { name: name.as_bytes().to_vec(), value }),
            Ok(None) => {}
            Err(e) => return Err(unreadable(path, e)),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A directory entry: its node, or a node that waits for a reader to store the file's content.
pub(super) enum Slot {
    Ready(Node),
    Reading { node: Node, pending: Pending<FileOutcome>, path: PathBuf, changed: bool },
}

impl Archiver<'_, '_> {
    /// Backs up the directory at `path` and returns its tree's id.
    pub(super) fn save_dir(&mut self, path: &Path, parent: Option<&Tree>, depth: usize) -> Result<crate::id::BlobId> {
        if depth > MAX_DEPTH {
            return Err(Error::Usage(format!("{}: directories nested deeper than {MAX_DEPTH}", path.display())));
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        for entry in std::fs::read_dir(path).map_err(|e| unreadable(path, e))? {
            let entry = entry.map_err(|e| unreadable(path, e))?;
            names.push(entry.file_name().as_bytes().to_vec());
        }
        names.sort();
        self.summary.dirs += 1;
        let mut slots = Vec::with_capacity(names.len());
        for name in names {
            let child = path.join(std::ffi::OsStr::from_bytes(&name));
            if self.excluded(&child) {
                continue;
            }
            let old = parent.and_then(|t| t.find(&name));
            slots.extend(self.save_entry(child, &name, old, depth)?);
        }
        // Files are read while the walk goes on (into subfolders too); their outcomes are
        // taken in name order, the first failure failing the backup.
        let mut nodes = Vec::with_capacity(slots.len());
        for slot in slots {
            nodes.extend(self.finish_slot(slot)?);
        }
        self.save_tree(nodes)
    }

    /// The node of an entry once its file (if any) is stored; `None` if the file vanished.
    pub(super) fn finish_slot(&mut self, slot: Slot) -> Result<Option<Node>> {
        let (mut node, pending, path, changed) = match slot {
            Slot::Ready(node) => return Ok(Some(node)),
            Slot::Reading { node, pending, path, changed } => (node, pending, path, changed),
        };
        match pending.wait() {
            FileOutcome::Stored { content, size } => {
                node.size = size;
                node.kind = NodeKind::File { content };
                if changed {
                    self.summary.files_changed += 1
                } else {
                    self.summary.files_new += 1
                }
                self.summary.bytes_total += size;
                self.summary.bytes_read += size;
                Ok(Some(node))
            }
            FileOutcome::Vanished => {
                self.warn(format!("{} vanished during the backup; left out", path.display()));
                Ok(None)
            }
            FileOutcome::Failed(e) => Err(e),
        }
    }

    /// Encodes a directory's nodes as a tree blob and queues it if new.
    pub(super) fn save_tree(&mut self, nodes: Vec<Node>) -> Result<crate::id::BlobId> {
        let tree = Tree::canonical(nodes).map_err(|e| Error::Usage(format!("internal: {e}")))?;
        let bytes = tree.encode();
        if bytes.len() as u64 > crate::tree::MAX_TREE_LEN {
            return Err(Error::Usage("a directory has too many entries for one tree blob".into()));
        }
        let id = self.repo.key().blob_id(&bytes);
        self.store_tree(id, bytes)?;
        Ok(id)
    }

    /// One entry: `None` if it vanished since its directory was listed. A changed file is
    /// handed to the readers and comes back as `Slot::Reading`.
    pub(super) fn save_entry(
        &mut self,
        path: PathBuf,
        name: &[u8],
        old: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Slot>> {
        let path = path.as_path();
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(format!("{} vanished during the backup; left out", path.display()));
                return Ok(None);
            }
            Err(e) => return Err(unreadable(path, e)),
        };
        let ft = meta.file_type();
        let mut node = node_from_meta(name, &meta, NodeKind::Fifo);
        node.xattrs = if ft.is_symlink() { Vec::new() } else { read_xattrs(path)? };
        node.kind = if ft.is_file() {
            if let Some(content) = self.unchanged(&meta, old)? {
                self.summary.files_unchanged += 1;
                self.summary.bytes_total += meta.size();
                NodeKind::File { content }
            } else {
                let pending = self.readers.read_file(path.to_path_buf(), meta.size())?;
                return Ok(Some(Slot::Reading { node, pending, path: path.to_path_buf(), changed: old.is_some() }));
            }
        } else if ft.is_dir() {
            let old_tree = self.parent_subtree(old);
            NodeKind::Dir { subtree: self.save_dir(path, old_tree.as_ref(), depth + 1)? }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|e| unreadable(path, e))?;
            NodeKind::Symlink { target: target.as_os_str().as_bytes().to_vec() }
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else if ft.is_char_device() {
            NodeKind::CharDevice { rdev: meta.rdev() }
        } else if ft.is_block_device() {
            NodeKind::BlockDevice { rdev: meta.rdev() }
        } else {
            NodeKind::Socket
        };
        Ok(Some(Slot::Ready(node)))
    }

    /// The parent snapshot's tree for a directory entry, if it had one there. Only an
    /// optimisation: a tree that cannot be loaded means every file below is read again.
    pub(super) fn parent_subtree(&self, old: Option<&Node>) -> Option<Tree> {
        match old.map(|n| &n.kind) {
            Some(NodeKind::Dir { subtree }) => self.repo.load_tree(subtree).ok(),
            _ => None,
        }
    }

    fn unchanged(&self, meta: &Metadata, old: Option<&Node>) -> Result<Option<Vec<crate::id::BlobId>>> {
        let Some(old) = old else { return Ok(None) };
        let NodeKind::File { content } = &old.kind else { return Ok(None) };
        let same = old.size == meta.size()
            && old.mtime == mtime_of(meta)
            && old.ctime == ctime_of(meta)
            && old.inode == meta.ino();
        if !same {
            return Ok(None);
        }
        let index = self.repo.index()?;
        for id in content {
            if index.lookup(BlobType::Data, id)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(content.clone()))
    }
}
