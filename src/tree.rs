//! Trees: one directory listing, stored as a blob of type `Tree`.
//!
//! Encoding: `version (1) || postcard(Tree)`. The canonical form has nodes sorted by the raw
//! bytes of their names, names unique; the decoder refuses anything else, and refuses names that
//! could escape a restore target: empty, `.`, `..`, or containing `/` or NUL. Names are raw
//! bytes, so names that are not UTF-8 round-trip.

use crate::codec;
use crate::error::FormatError;
use crate::id::BlobId;
use serde::{Deserialize, Serialize};

pub const TREE_VERSION: u8 = 1;
pub const MAX_TREE_LEN: u64 = crate::blob::MAX_BLOB_LEN;
/// Deepest directory nesting that backup stores and restore accepts (restore walks trees with
/// an explicit stack; the limit keeps hostile trees from exhausting it).
pub const MAX_DEPTH: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// Content is the concatenation of the data blobs, in order.
    File {
        content: Vec<BlobId>,
    },
    Dir {
        subtree: BlobId,
    },
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    CharDevice {
        rdev: u64,
    },
    BlockDevice {
        rdev: u64,
    },
    Socket,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// `st_mode` permission and type bits (type bits are informative; `kind` decides).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub inode: u64,
    pub device: u64,
    /// Hard link count at backup time; > 1 lets restore recreate hard links.
    pub links: u64,
    pub xattrs: Vec<Xattr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Whether `name` is one safe path component.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
impl Node {
    /// A node with the given name and kind, mode 0644 and every other field zero (links 1).
    pub(crate) fn bare(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: Timestamp::default(),
            ctime: Timestamp::default(),
            inode: 0,
            device: 0,
            links: 1,
            xattrs: Vec::new(),
        }
    }
}

impl Tree {
    /// Sorts nodes into canonical order and checks names; duplicates are an error.
    pub fn canonical(mut nodes: Vec<Node>) -> Result<Tree, FormatError> {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let tree = Tree { nodes };
        tree.validate()?;
        Ok(tree)
    }

    pub fn validate(&self) -> Result<(), FormatError> {
        for (i, node) in self.nodes.iter().enumerate() {
            if !valid_name(&node.name) {
                return Err(FormatError::invalid(
                    "tree",
                    format!("unsafe entry name {:?}", String::from_utf8_lossy(&node.name)),
                ));
            }
            if i > 0 && self.nodes[i - 1].name >= node.name {
                return Err(FormatError::invalid("tree", "entries not in strictly sorted order"));
            }
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(TREE_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Tree, FormatError> {
        let tree: Tree = codec::decode("tree", TREE_VERSION, MAX_TREE_LEN, bytes)?;
        tree.validate()?;
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }

    /// The data blobs of this folder's files, sorted and without repeats: what one batched index
    /// look-up per folder asks for. Files of more than `max_per_file` blobs are left out, for
    /// callers that look up a big file (a dump) in windows of its own to bound the batch.
    pub fn file_blobs(&self, max_per_file: usize) -> Vec<BlobId> {
        let mut ids: Vec<BlobId> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::File { content } if content.len() <= max_per_file => Some(content.iter().copied()),
                _ => None,
            })
            .flatten()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn arb_node() -> impl Strategy<Value = Node> {
        let kind = prop_oneof![
            proptest::collection::vec(any::<[u8; 32]>(), 0..4).prop_map(|ids| NodeKind::File {
                content: ids.into_iter().map(|b| BlobId(crate::id::Id(b))).collect()
            }),
            any::<[u8; 32]>().prop_map(|b| NodeKind::Dir { subtree: BlobId(crate::id::Id(b)) }),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|target| NodeKind::Symlink { target }),
            Just(NodeKind::Fifo),
            any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
            any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
            Just(NodeKind::Socket),
        ];
        (
            proptest::collection::vec(1u8..=255, 1..12),
            kind,
            any::<(u32, u32, u32, u64, i64, u32, u64, u64)>(),
            proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..8), proptest::collection::vec(any::<u8>(), 0..8)),
                0..3,
            ),
        )
            .prop_map(|(name, kind, (mode, uid, gid, size, secs, nanos, inode, links), xattrs)| Node {
                name: name.into_iter().map(|b| if b == b'/' { b'x' } else { b }).collect(),
                kind,
                mode,
                uid,
                gid,
                size,
                mtime: Timestamp { secs, nanos },
                ctime: Timestamp { secs: secs / 2, nanos },
                inode,
                device: inode / 3,
                links,
                xattrs: xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect(),
            })
            .prop_filter("valid name", |n| valid_name(&n.name))
    }

    proptest! {
        #[test]
        fn round_trip(nodes in proptest::collection::vec(arb_node(), 0..10)) {
            let mut seen = std::collections::BTreeMap::new();
            for n in nodes { seen.insert(n.name.clone(), n); }
            let tree = Tree::canonical(seen.into_values().collect()).unwrap();
            prop_assert_eq!(Tree::decode(&tree.encode()).unwrap(), tree);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Tree::decode(&bytes);
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0"] {
            assert!(!valid_name(bad));
            let node = Node::bare(bad, NodeKind::Fifo);
            let bytes = codec::encode(TREE_VERSION, &Tree { nodes: vec![node] });
            assert!(Tree::decode(&bytes).is_err());
        }
        assert!(valid_name(b"\xff\xfe not utf-8"));
    }

    #[test]
    fn unsorted_or_unknown_version_is_refused() {
        let mk = |n: &[u8]| Node::bare(n, NodeKind::Fifo);
        let bytes = codec::encode(TREE_VERSION, &Tree { nodes: vec![mk(b"b"), mk(b"a")] });
        assert!(Tree::decode(&bytes).is_err());
        let mut ok = Tree::canonical(vec![mk(b"a")]).unwrap().encode();
        ok[0] = 9;
        assert!(matches!(Tree::decode(&ok), Err(FormatError::UnsupportedVersion { .. })));
    }
}
