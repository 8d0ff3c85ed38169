//! Decodes the worked example of `repo-format.md` (section 13) with cairn's own decoders and checks
//! every value the document states there, so the format document cannot drift from the code.
//!
//! An example is a fenced block whose first line is `# <name>`; in it `;` starts a comment and the
//! rest is hex bytes. Stated values come from the table rows `| <name> | `<value>` |`. The chunking
//! pseudo-code of section 9 is reimplemented here from the document and compared with the chunker.

use crate::backend::{Backend, StoreBackend};
use crate::blob::{BlobType, Sealing, blob_aad, open_blob};
use crate::chunker::Chunker;
use crate::crypto::{KdfParams, MasterKey};
use crate::error::FormatError;
use crate::id::{BlobId, Id, KeyId, PackId};
use crate::pack::{ENTRY_LEN, ENTRY_LEN_V1, HEADER_AAD, PackBlob, header_range, parse_header, read_header};
use crate::repo::Repository;
use crate::repo::config::{ChunkerParams, RepoConfig};
use crate::repo::keys::{KEY_LEN, KeyFile};
use crate::tree::{Node, NodeKind, Timestamp, Tree, Xattr};
use std::sync::Arc;

const DOC: &str = include_str!("../repo-format.md");

/// The lines of the block named `name`, without the marker line, comments and blank lines.
fn block(name: &str) -> Vec<&'static str> {
    let lines: Vec<&'static str> = DOC.lines().collect();
    let marker = format!("# {name}");
    let start = lines
        .windows(2)
        .position(|w| w[0].starts_with("```") && w[1] == marker)
        .unwrap_or_else(|| panic!("repo-format.md has no block `{name}`"));
    lines[start + 2..]
        .iter()
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.split(';').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect()
}

fn hex_block(name: &str) -> Vec<u8> {
    let digits: Vec<u8> = block(name).concat().bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits in block `{name}`");
    digits
        .chunks(2)
        .map(|pair| {
            u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap_or_else(|e| panic!("`{name}`: {e}"))
        })
        .collect()
}

/// The backticked value of the row `| name | `value` |` of section 13's table.
fn stated(name: &str) -> &'static str {
    let prefix = format!("| {name} | `");
    let line = DOC.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no stated `{name}`"));
    let rest = &line[prefix.len()..];
    &rest[..rest.find('`').unwrap()]
}

fn stated_id(name: &str) -> Id {
    Id::from_hex(stated(name)).unwrap_or_else(|| panic!("`{name}` is not a 64-digit id"))
}

fn master() -> MasterKey {
    MasterKey::from_bytes(&hex_block("master-key")).unwrap()
}

fn range(from: u8, to: u8) -> Vec<u8> {
    (from..=to).collect()
}

#[test]
fn master_key_is_seal_key_id_key_and_seed() {
    assert_eq!(hex_block("master-key"), range(0x00, 0x47));
    let key = master();
    assert_eq!(key.chunker_seed(), 0x4746_4544_4342_4140);
    assert_eq!(key.blob_id(b"hello\n").0, stated_id("blob id"));
    // The id key is bytes 32..64: a blob id is BLAKE3 keyed with exactly those bytes.
    let id_key: [u8; 32] = range(0x20, 0x3f).try_into().unwrap();
    assert_eq!(*blake3::keyed_hash(&id_key, b"hello\n").as_bytes(), stated_id("blob id").0);
}

#[test]
fn key_object_decodes_field_by_field() {
    let bytes = hex_block("key");
    assert_eq!(bytes.len(), KEY_LEN);
    assert_eq!(&bytes[..10], b"CAIRNKEY\x01\x01");
    let kf = KeyFile::decode(&bytes).unwrap();
    assert_eq!(kf.params, KdfParams { m_cost: 65_536, t_cost: 3, p_cost: 1 });
    // The example keeps the first release's parameters; section 4.2 states today's defaults.
    let d = KdfParams::DEFAULT;
    let doc = include_str!("../repo-format.md");
    let defaults = format!(
        "`m_cost` {},{:03} ({} MiB), `t_cost` {}, `p_cost` {}",
        d.m_cost / 1000,
        d.m_cost % 1000,
        d.m_cost >> 10,
        d.t_cost,
        d.p_cost
    );
    assert!(doc.contains(&defaults), "section 4.2 states the defaults: {defaults}");
    assert_eq!(kf.salt.to_vec(), range(0xa0, 0xbf));
    assert_eq!(kf.sealed.len(), 24 + 72 + 16);
    assert_eq!(kf.encode(), bytes);
    assert_eq!(KeyId(Id::of_stored(&bytes)).0, stated_id("key id"));
    // The sealed part's associated data is the 54 bytes before it.
    let mut tampered = bytes.clone();
    tampered[22] ^= 1;
    assert_eq!(
        KeyFile::decode(&tampered).unwrap().open(stated("password").as_bytes()).err(),
        Some(FormatError::Authentication)
    );
}

/// Opens the example as a repository: the key object and the sealed config, read by the same
/// code that opens real repositories (envelope, AAD kind byte, key search, config checks).
#[test]
fn key_and_sealed_config_open_as_a_repository() {
    let backend = Arc::new(StoreBackend::memory().unwrap());
    backend.put_new(&format!("keys/{}", stated("key id")), hex_block("key").into()).unwrap();
    backend.put_new("config", hex_block("config-sealed").into()).unwrap();
    let repo = Repository::open(backend, "example", stated("password").as_bytes()).unwrap();
    assert_eq!(repo.key().to_bytes().as_ref(), hex_block("master-key").as_slice());
    assert_eq!(repo.config(), &RepoConfig::decode(&hex_block("config")).unwrap());
    let sealed = hex_block("config-sealed");
    assert_eq!(sealed.len(), 1 + 24 + 58 + 16);
    assert_eq!(master().open(&[1, 1], &sealed[1..]).unwrap(), hex_block("config"));
    assert!(master().open(&[1, 2], &sealed[1..]).is_err(), "kind 2 (snapshot) must not open a config");
}

#[test]
fn config_decodes_to_the_defaults() {
    let plain = hex_block("config");
    let config = RepoConfig::decode(&plain).unwrap();
    let expected = RepoConfig {
        format_version: 1,
        id: Id(range(0xc0, 0xdf).try_into().unwrap()),
        chunker_files: ChunkerParams { min: 256 << 10, avg: 1 << 20, max: 4 << 20 },
        chunker_streams: ChunkerParams { min: 16 << 10, avg: 64 << 10, max: 256 << 10 },
        pack_size: 16 << 20,
        zstd_level: 3,
        bundle_size: 0,
    };
    assert_eq!(config, expected);
    assert_eq!(config.encode(), plain);
    // The example predates the tuned stream chunk sizes and zstd level; section 8.5 states today's.
    let d = RepoConfig::new();
    let kib = |p: ChunkerParams| format!("{} KiB / {} KiB / {} KiB", p.min >> 10, p.avg >> 10, p.max >> 10);
    let doc = include_str!("../repo-format.md");
    assert!(
        doc.contains(&format!("| | `chunker_streams` | `ChunkerParams` | see below | {} |", kib(d.chunker_streams))),
        "section 8.5 states the stream defaults"
    );
    assert!(
        doc.contains(&format!("| | `pack_size` | `u32` varint | 64 KiB ..= 1 GiB | {} MiB |", d.pack_size >> 20)),
        "section 8.5 states the pack size"
    );
    assert!(doc.contains(&format!("| | `zstd_level` | `i32` zigzag | 1 ..= 19 | {} |", d.zstd_level)));
    assert_eq!(
        RepoConfig {
            id: expected.id,
            chunker_streams: expected.chunker_streams,
            zstd_level: 3,
            ..RepoConfig::format_1()
        },
        expected,
        "section 8.5 states the other defaults"
    );
}

fn example_node(name: &[u8], kind: NodeKind, mode: u32, size: u64, inode: u64, xattrs: Vec<Xattr>) -> Node {
    let t = Timestamp { secs: 1_700_000_000, nanos: 250_000_000 };
    Node {
        name: name.to_vec(),
        kind,
        mode,
        uid: 1000,
        gid: 1000,
        size,
        mtime: t,
        ctime: t,
        inode,
        device: 2049,
        links: 1,
        xattrs,
    }
}

#[test]
fn tree_decodes_to_the_two_documented_nodes() {
    let bytes = hex_block("tree");
    let tree = Tree::decode(&bytes).unwrap();
    let content = vec![BlobId(stated_id("blob id"))];
    let xattr = Xattr { name: b"user.lang".to_vec(), value: b"en".to_vec() };
    let expected = Tree {
        nodes: vec![
            example_node(b"hello.txt", NodeKind::File { content }, 0o100644, 6, 131_074, vec![xattr]),
            example_node(b"link", NodeKind::Symlink { target: b"hello.txt".to_vec() }, 0o120777, 0, 131_075, vec![]),
        ],
    };
    assert_eq!(tree, expected);
    assert_eq!(tree.encode(), bytes);
    assert_eq!(bytes.len(), 141);
    assert_eq!(master().blob_id(&bytes).0, stated_id("tree id"));
}

#[test]
fn pack_header_plaintext_parses() {
    let plain = hex_block("pack-header");
    assert_eq!(plain.len(), 5 + ENTRY_LEN_V1);
    let id = BlobId(stated_id("blob id"));
    let expected = PackBlob { kind: BlobType::Data, id, offset: 0, length: 47, raw_offset: 0, raw_length: 6 };
    assert_eq!(parse_header(&plain, 47).unwrap(), vec![expected]);
    assert!(parse_header(&plain, 46).is_err(), "an entry past the blob data is refused");
}

#[test]
fn pack_opens_and_holds_hello() {
    let key = master();
    let pack = hex_block("pack");
    assert_eq!(pack.len(), 141);
    assert_eq!(PackId(Id::of_stored(&pack)).0, stated_id("pack id"));
    assert_eq!(header_range(141, &pack[137..]).unwrap(), 47..137);
    assert_eq!(key.open(HEADER_AAD, &pack[47..137]).unwrap(), hex_block("pack-header"));
    let entries = read_header(&key, &pack).unwrap();
    assert_eq!(entries, parse_header(&hex_block("pack-header"), 47).unwrap());
    let e = entries[0];
    let sealed = &pack[e.offset as usize..(e.offset + e.length) as usize];
    assert_eq!(open_blob(&key, Sealing::Single, BlobType::Data, &e.id, 0, 6, sealed).unwrap(), b"hello\n");
    assert_eq!(key.open(&blob_aad(BlobType::Data, &e.id), sealed).unwrap(), b"\x00hello\n", "compression byte 0: raw");
    assert!(
        open_blob(&key, Sealing::Single, BlobType::Tree, &e.id, 0, 6, sealed).is_err(),
        "the type is bound by the AAD"
    );
}

/// `0x…` (16 hex digits) following `label` in the document.
fn doc_u64_after(label: &str) -> u64 {
    let at = DOC.find(label).unwrap_or_else(|| panic!("no `{label}` in repo-format.md")) + label.len();
    let digits = DOC[at..].trim_start().strip_prefix("0x").unwrap();
    u64::from_str_radix(&digits[..16], 16).unwrap()
}

fn documented_masks() -> Vec<(usize, u64)> {
    block("masks")
        .iter()
        .map(|line| {
            let (index, value) = line.split_once('=').unwrap();
            let index = index.trim().trim_start_matches("MASKS[").trim_end_matches(']').parse().unwrap();
            (index, u64::from_str_radix(value.trim().trim_start_matches("0x"), 16).unwrap())
        })
        .collect()
}

/// Section 9's gear tables and masks, built from the document (the unseeded table from fastcdc,
/// checked against the document's sample values, since MD5 is not a dependency).
struct DocumentedCdc {
    gear: [u64; 256],
    gear_ls: [u64; 256],
    masks: [u64; 4],
}

impl DocumentedCdc {
    fn new(seed: u64, avg: u32) -> Self {
        let (base, base_ls) = fastcdc::v2020::get_gear_with_seed(0);
        for (i, label) in [(0, "GEAR[0] ="), (1, "GEAR[1] ="), (255, "GEAR[255] =")] {
            assert_eq!(base[i], doc_u64_after(label), "{label}");
        }
        let mut gear = [0u64; 256];
        let mut gear_ls = [0u64; 256];
        for i in 0..256 {
            assert_eq!(base_ls[i], base[i] << 1, "GEAR_LS is GEAR shifted left");
            gear[i] = base[i] ^ seed;
            gear_ls[i] = (base[i] << 1) ^ (seed << 1);
        }
        let masks: std::collections::HashMap<usize, u64> = documented_masks().into_iter().collect();
        let bits = f64::from(avg).log2().round() as usize;
        let (mask_s, mask_l) = (masks[&(bits + 1)], masks[&(bits - 1)]);
        DocumentedCdc { gear, gear_ls, masks: [mask_s, mask_l, mask_s << 1, mask_l << 1] }
    }

    /// The pseudo-code of section 9, line by line.
    fn cut(&self, src: &[u8], p: ChunkerParams) -> usize {
        let (min, avg, max) = (p.min as usize, p.avg as usize, p.max as usize);
        let [mask_s, mask_l, mask_s_ls, mask_l_ls] = self.masks;
        let mut n = src.len();
        if n <= min {
            return n;
        }
        let mut center = avg;
        if n > max {
            n = max;
        } else if n < center {
            center = n;
        }
        let (mut h, mut i) = (0u64, min / 2);
        for (limit, m, m_ls) in [(center / 2, mask_s, mask_s_ls), (n / 2, mask_l, mask_l_ls)] {
            while i < limit {
                let a = 2 * i;
                h = (h << 2).wrapping_add(self.gear_ls[usize::from(src[a])]);
                if h & m_ls == 0 {
                    return a;
                }
                h = h.wrapping_add(self.gear[usize::from(src[a + 1])]);
                if h & m == 0 {
                    return a + 1;
                }
                i += 1;
            }
        }
        n
    }
}

fn sample_input(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    // A run of zeros forces cuts at `max`.
    out[len / 3..len / 3 + 300_000].fill(0);
    out
}

#[test]
fn documented_masks_are_fastcdcs() {
    let masks = documented_masks();
    assert_eq!(masks.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (7..=23).collect::<Vec<_>>());
    for (i, m) in masks {
        assert_eq!(fastcdc::v2020::MASKS[i], m, "MASKS[{i}]");
    }
}

#[test]
fn documented_chunking_cuts_where_the_chunker_does() {
    let seed = master().chunker_seed();
    let input = sample_input(3 << 20);
    let odd_avg = ChunkerParams { min: 1024, avg: 3000, max: 8192 };
    for p in [ChunkerParams::STREAMS, ChunkerParams { min: 4096, avg: 16_384, max: 65_536 }, odd_avg] {
        let cdc = DocumentedCdc::new(seed, p.avg);
        let mut documented = Vec::new();
        let mut at = 0;
        while at < input.len() {
            let len = cdc.cut(&input[at..], p);
            documented.push(len);
            at += len;
        }
        let mut actual = Vec::new();
        Chunker::new(p, seed)
            .chunk::<_, std::io::Error>(input.as_slice(), None, |c| {
                actual.push(c.len());
                Ok(())
            })
            .unwrap();
        assert_eq!(documented, actual, "params {p:?}");
        assert!(documented.len() > 10);
    }
}

#[test]
fn v2_pack_holds_a_bundle_of_two_blobs() {
    let key = master();
    let plain = hex_block("pack-header-v2");
    assert_eq!(plain.len(), 5 + 2 * ENTRY_LEN);
    let (hello, world) = (BlobId(stated_id("blob id")), BlobId(stated_id("world id")));
    assert_eq!(key.blob_id(b"world\n"), world);
    let entry =
        |id, raw_offset| PackBlob { kind: BlobType::Data, id, offset: 0, length: 53, raw_offset, raw_length: 6 };
    assert_eq!(parse_header(&plain, 53).unwrap(), vec![entry(hello, 0), entry(world, 6)]);
    let pack = hex_block("pack-v2");
    assert_eq!(pack.len(), 200);
    assert_eq!(PackId(Id::of_stored(&pack)).0, stated_id("v2 pack id"));
    assert_eq!(header_range(200, &pack[196..]).unwrap(), 53..196);
    assert_eq!(read_header(&key, &pack).unwrap(), parse_header(&plain, 53).unwrap());
    let sealed = &pack[..53];
    let aad: Vec<u8> = [&b"cairn bundle"[..], &[0]].concat();
    assert_eq!(Sealing::Bundles.aad(BlobType::Data, &world).as_bytes(), aad.as_slice());
    assert_eq!(key.open(&aad, sealed).unwrap(), b"\x00hello\nworld\n", "compression byte 0: raw");
    let open = |kind, id: &BlobId, at| open_blob(&key, Sealing::Bundles, kind, id, at, 6, sealed);
    assert_eq!(open(BlobType::Data, &hello, 0).unwrap(), b"hello\n");
    assert_eq!(open(BlobType::Data, &world, 6).unwrap(), b"world\n");
    assert!(open(BlobType::Data, &world, 0).is_err(), "a blob is taken only from its own place");
    assert!(open(BlobType::Tree, &world, 6).is_err(), "the type is bound by the AAD");
}

#[test]
fn v2_config_decodes_to_the_defaults() {
    let plain = hex_block("config-v2");
    let config = RepoConfig::decode(&plain).unwrap();
    let expected = RepoConfig { id: Id(range(0xc0, 0xdf).try_into().unwrap()), ..RepoConfig::new() };
    assert_eq!(config, expected);
    assert_eq!(config.encode(), plain);
    assert_eq!(plain.len(), 59);
    assert!(
        DOC.contains(&format!("| | `bundle_size` | `u32` varint | 0 ..= 16 MiB | {} KiB |", config.bundle_size >> 10)),
        "section 8.5 states the bundle size"
    );
}
