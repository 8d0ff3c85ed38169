//! Damaged objects waiting to be reported: what each loses (every blob, blobs past a cut, or
//! blobs that failed verification) and which snapshot paths need it, so that each becomes one
//! finding whose hint says what restore will miss and what to do.

use super::Finding;
use crate::blob::BlobType;
use crate::error::{ObjectKind, ObjectRef};
use crate::id::{BlobId, PackId, SnapshotId};
use crate::index::IndexEntry;
use crate::snapshot::Snapshot;
use std::collections::{BTreeMap, HashSet};

/// Paths named per damaged object; the rest are counted.
const SHOWN_PATHS: usize = 10;
/// Snapshots named per damaged object; the rest are counted.
const SHOWN_SNAPSHOTS: usize = 10;

pub(super) const PACK_MISSING: &str =
    "if a copy of this pack exists elsewhere (a replica of the storage), put it back under packs/";
pub(super) const PACK_DAMAGED: &str = "the storage lost or changed its bytes; if a copy of this pack exists elsewhere (a replica of the storage), put it back in its place";
pub(super) const BLOB_UNINDEXED: &str = "a tree names it but no index object says which pack holds it: an index object or pack was lost (see any damaged index object above)";
pub(super) const TREE_DAMAGED: &str =
    "the directory listing cannot be read, so nothing below it can be restored from those snapshots";
/// Something damaged that snapshots may need: a pack, or a blob that cannot be had by id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Target {
    Pack(PackId),
    Blob(BlobType, BlobId),
}

/// A damaged object waiting for the walk to name what needs it.
pub(super) struct Damage {
    pub(super) object: ObjectRef,
    pub(super) problems: Vec<String>,
    pub(super) action: &'static str,
    /// Every blob in it is lost: a missing pack, or a blob no pack can be found for.
    pub(super) all_lost: bool,
    /// Blobs ending past this byte are lost: a truncated pack.
    pub(super) lost_past: Option<u64>,
    /// Blobs that failed verification.
    pub(super) lost: HashSet<BlobId>,
    pub(super) needed: Needed,
}

impl Damage {
    pub(super) fn new(object: ObjectRef, action: &'static str) -> Damage {
        Damage {
            object,
            problems: Vec::new(),
            action,
            all_lost: false,
            lost_past: None,
            lost: HashSet::new(),
            needed: Needed::default(),
        }
    }

    pub(super) fn pack(id: PackId, action: &'static str) -> Damage {
        Damage::new(ObjectRef::new(ObjectKind::Pack, id.to_hex()), action)
    }

    pub(super) fn with(mut self, problem: String, all_lost: bool) -> Damage {
        self.problems.push(problem);
        self.all_lost |= all_lost;
        self
    }

    pub(super) fn loses(&self, id: &BlobId, entry: &IndexEntry) -> bool {
        self.all_lost || self.lost_past.is_some_and(|size| entry.range().end > size) || self.lost.contains(id)
    }

    pub(super) fn finding(self, snaps: &[(SnapshotId, Snapshot)]) -> Finding {
        let hint = match self.needed.describe(snaps) {
            Some(needed) => {
                format!("{needed}; restore of those files will fail, other files are unaffected; {}", self.action)
            }
            None => format!("no snapshot needs what is lost; {}", self.action),
        };
        Finding { object: self.object, problem: self.problems.join("; "), hint }
    }
}

/// The snapshot paths that need a damaged object: the first few named, the rest counted.
#[derive(Default)]
pub(super) struct Needed {
    /// Snapshot (by position, oldest first) -> paths shown and paths counted.
    pub(super) by: BTreeMap<usize, (Vec<String>, u64)>,
    pub(super) shown: usize,
}

impl Needed {
    pub(super) fn add(&mut self, snapshot: usize, path: &str) {
        let (paths, more) = self.by.entry(snapshot).or_default();
        if self.shown < SHOWN_PATHS {
            paths.push(path.to_string());
            self.shown += 1;
        } else {
            *more += 1;
        }
    }

    pub(super) fn describe(&self, snaps: &[(SnapshotId, Snapshot)]) -> Option<String> {
        let mut parts = Vec::new();
        for (i, (paths, more)) in self.by.iter().take(SHOWN_SNAPSHOTS) {
            let Some((id, snap)) = snaps.get(*i) else { continue };
            let mut part = format!("snapshot {} ({})", id.short(), snap.time_string());
            match (paths.is_empty(), *more) {
                (true, n) => part.push_str(&format!(": {n} paths")),
                (false, 0) => part.push_str(&format!(": {}", paths.join(", "))),
                (false, n) => part.push_str(&format!(": {} and {n} more", paths.join(", "))),
            }
            parts.push(part);
        }
        if parts.is_empty() {
            return None;
        }
        let extra = self.by.len().saturating_sub(SHOWN_SNAPSHOTS);
        let tail = if extra > 0 { format!("; and {extra} more snapshots") } else { String::new() };
        Some(format!("needed by {}{tail}", parts.join("; ")))
    }
}
