//! Snapshots: one backup's time, host, paths, tags, root tree and summary, and how a user's
//! words (`latest`, an id prefix, `--tag`, `--host`, `--path`) select one.
//!
//! Encoding (inside a sealed object, see `repo/mod.rs`): `version (1) || postcard(Snapshot)`.

use crate::codec;
use crate::error::{Error, FormatError};
use crate::id::{BlobId, SnapshotId};
use crate::tree::Timestamp;
use serde::{Deserialize, Serialize};

pub const SNAPSHOT_VERSION: u8 = 1;
pub const MAX_SNAPSHOT_LEN: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    pub dirs: u64,
    /// Bytes of input read (files and streams).
    pub bytes_read: u64,
    /// Total size of the files in the snapshot.
    pub bytes_total: u64,
    pub blobs_added: u64,
    /// Bytes of sealed blobs this backup added to the repository.
    pub bytes_added: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub time: Timestamp,
    pub host: String,
    pub username: String,
    /// Sources as given (absolute paths) and streamed inputs as `-/NAME`.
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub tree: BlobId,
    pub parent: Option<SnapshotId>,
    pub summary: Summary,
    pub program_version: String,
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(SNAPSHOT_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot, FormatError> {
        codec::decode("snapshot", SNAPSHOT_VERSION, MAX_SNAPSHOT_LEN, bytes)
    }

    pub fn time_string(&self) -> String {
        match jiff::Timestamp::new(self.time.secs, self.time.nanos as i32) {
            Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            Err(_) => format!("@{}", self.time.secs),
        }
    }
}

/// What narrows a selection; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub hosts: Vec<String>,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl Filter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && self.tags.iter().all(|t| s.tags.contains(t))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }
}

/// Picks one snapshot: `latest` (newest matching the filter) or a unique id prefix.
pub fn select(all: &[(SnapshotId, Snapshot)], spec: &str, filter: &Filter) -> Result<(SnapshotId, Snapshot), Error> {
    let matching = all.iter().filter(|(_, s)| filter.matches(s));
    let found: Vec<&(SnapshotId, Snapshot)> = if spec == "latest" {
        matching.max_by_key(|(id, s)| (s.time.secs, s.time.nanos, *id)).into_iter().collect()
    } else {
        let prefix = spec.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Usage(format!("`{spec}` is neither `latest` nor a snapshot id prefix")));
        }
        matching.filter(|(id, _)| id.to_hex().starts_with(&prefix)).collect()
    };
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::NoSnapshot(describe(spec, filter))),
        _ => Err(Error::AmbiguousSnapshot(spec.to_string())),
    }
}

fn describe(spec: &str, f: &Filter) -> String {
    let mut s = format!("`{spec}`");
    for (what, v) in [("host", &f.hosts), ("tag", &f.tags), ("path", &f.paths)] {
        if !v.is_empty() {
            s.push_str(&format!(" with {what} {}", v.join(",")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn sample(secs: i64, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time: Timestamp { secs, nanos: 5 },
            host: host.into(),
            username: "u".into(),
            paths: vec!["/srv".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: BlobId::default(),
            parent: None,
            summary: Summary::default(),
            program_version: "cairn 0.1.0".into(),
        }
    }

    proptest! {
        #[test]
        fn round_trip(secs in any::<i64>(), host in ".{0,20}", tags in proptest::collection::vec(".{0,8}", 0..4), n in any::<u64>()) {
            let mut s = sample(secs, &host, &[]);
            s.tags = tags;
            s.summary.bytes_added = n;
            prop_assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Snapshot::decode(&bytes);
        }
    }

    #[test]
    fn selection() {
        let id = |b: u8| SnapshotId(crate::id::Id([b; 32]));
        let all = vec![
            (id(0xaa), sample(10, "a", &["db"])),
            (id(0xab), sample(20, "b", &["files"])),
            (id(0xcc), sample(30, "a", &["files"])),
        ];
        assert_eq!(select(&all, "latest", &Filter::default()).unwrap().0, id(0xcc));
        let f = Filter { tags: vec!["db".into()], ..Default::default() };
        assert_eq!(select(&all, "latest", &f).unwrap().0, id(0xaa));
        let f = Filter { hosts: vec!["b".into()], ..Default::default() };
        assert_eq!(select(&all, "latest", &f).unwrap().0, id(0xab));
        assert!(matches!(select(&all, "a", &Filter::default()), Err(Error::AmbiguousSnapshot(_))));
        assert_eq!(select(&all, "ab", &Filter::default()).unwrap().0, id(0xab));
        assert!(matches!(select(&all, "dd", &Filter::default()), Err(Error::NoSnapshot(_))));
        assert!(matches!(select(&all, "zz", &Filter::default()), Err(Error::Usage(_))));
    }
}
