//! `make-seeds`: writes valid encoded examples of every object into `corpus/<target>/`, so each
//! fuzz target starts from inputs that decode. The corpus is git-ignored; this program is what
//! is kept. Run: `cargo +nightly run --manifest-path fuzz/Cargo.toml --bin make-seeds`.
//!
//! Seeds are built with cairn's own encoders and the fixed key of `cairn_fuzz::fixed_key`, so
//! sealed seeds open in the targets. Re-running overwrites the seeds and leaves other files.

use cairn::blob::{BlobType, blob_aad, seal_blob};
use cairn::crypto::{KdfParams, MasterKey};
use cairn::id::{BlobId, Id, PackId, SnapshotId};
use cairn::index::file::{IndexFile, IndexPack};
use cairn::pack::{self, FinishedPack, HEADER_AAD, PackWriter};
use cairn::repo::config::{ChunkerParams, RepoConfig};
use cairn::repo::keys::KeyFile;
use cairn::repo::lock::Lock;
use cairn::snapshot::{Snapshot, Summary};
use cairn::tree::{Node, NodeKind, Timestamp, Tree, Xattr};
use cairn_fuzz::{blob_mode, encode_header_plain, fixed_key};
use std::error::Error;
use std::path::PathBuf;

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// One corpus file: `corpus/<target>/seed-<name>`.
struct Seed {
    target: &'static str,
    name: String,
    bytes: Vec<u8>,
}

fn seed(target: &'static str, name: impl Into<String>, bytes: Vec<u8>) -> Seed {
    Seed { target, name: name.into(), bytes }
}

fn main() -> Res {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let key = fixed_key();
    let pack = sample_pack(key)?;
    let mut seeds: Vec<Seed> = Vec::new();
    seeds.extend(pack_header_seeds(key, &pack)?);
    seeds.push(seed("index_file", "two-packs", index_seed(&pack).encode()));
    seeds.push(seed("index_file", "empty", IndexFile::default().encode()));
    seeds.push(seed("tree", "every-kind", tree_seed()?.encode()));
    seeds.push(seed("tree", "empty", Tree::default().encode()));
    seeds.push(seed("snapshot", "full", snapshot_seed().encode()));
    seeds.extend(key_seeds()?);
    seeds.extend(config_seeds());
    seeds.extend(blob_seeds(key)?);
    seeds.push(seed(
        "lock",
        "shared",
        Lock { exclusive: false, host: "db1".into(), username: "backup".into(), pid: 4242, time: 1_700_000_000 }
            .encode(),
    ));
    seeds.push(seed(
        "lock",
        "exclusive",
        Lock { exclusive: true, host: "h".into(), username: "root".into(), pid: 1, time: 0 }.encode(),
    ));
    for s in &seeds {
        let dir = root.join(s.target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{}", s.name)), &s.bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}

/// Three blobs (data compressible, data incompressible, a tree) packed with the fixed key.
fn sample_pack(key: &MasterKey) -> Res<FinishedPack> {
    let mut writer = PackWriter::new();
    for (kind, data) in blob_samples() {
        let id = key.blob_id(&data);
        let sealed = seal_blob(key, kind, &id, &data, 3);
        writer.add(kind, id, &sealed, u32::try_from(data.len())?)?;
    }
    Ok(writer.finish(key)?)
}

fn blob_samples() -> Vec<(BlobType, Vec<u8>)> {
    let noise: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    vec![
        (BlobType::Data, b"hello cairn ".repeat(40)),
        (BlobType::Data, noise),
        (BlobType::Tree, Tree::default().encode()),
    ]
}

/// `data_len || opened header` of the sample pack and of an empty pack, and the sample pack
/// whole (which `read_header` opens). Also checks the fuzz crate's header oracle against the
/// real writer.
fn pack_header_seeds(key: &MasterKey, pack: &FinishedPack) -> Res<Vec<Seed>> {
    let mut out = Vec::new();
    let empty = PackWriter::new().finish(key)?;
    for (name, p) in [("three-blobs", pack), ("no-blobs", &empty)] {
        let len = p.bytes.len() as u64;
        let range = pack::header_range(len, p.bytes.get(p.bytes.len().saturating_sub(4)..).unwrap_or_default())?;
        let plain = key.open(HEADER_AAD, &p.bytes[range.start as usize..range.end as usize])?;
        if plain != encode_header_plain(&p.blobs) {
            return Err("the fuzz crate's header oracle disagrees with PackWriter".into());
        }
        let mut bytes = range.start.to_le_bytes().to_vec();
        bytes.extend_from_slice(&plain);
        out.push(seed("pack_header", name, bytes));
    }
    out.push(seed("pack_header", "whole-pack", pack.bytes.clone()));
    Ok(out)
}

fn index_seed(pack: &FinishedPack) -> IndexFile {
    let other = IndexPack { id: PackId(Id([9; 32])), blobs: pack.blobs.iter().rev().copied().collect() };
    IndexFile { packs: vec![IndexPack { id: pack.id, blobs: pack.blobs.clone() }, other] }
}

fn tree_seed() -> Res<Tree> {
    let node = |name: &[u8], kind: NodeKind| Node {
        name: name.to_vec(),
        kind,
        mode: 0o100644,
        uid: 1000,
        gid: 1000,
        size: 4096,
        mtime: Timestamp { secs: 1_700_000_000, nanos: 123 },
        ctime: Timestamp { secs: 1_700_000_001, nanos: 0 },
        inode: 77,
        device: 2049,
        links: 1,
        xattrs: vec![],
    };
    let mut file = node(b"file.txt", NodeKind::File { content: vec![BlobId(Id([1; 32])), BlobId(Id([2; 32]))] });
    file.xattrs.push(Xattr { name: b"user.note".to_vec(), value: b"v".to_vec() });
    file.links = 2;
    Ok(Tree::canonical(vec![
        file,
        node(b"dir", NodeKind::Dir { subtree: BlobId(Id([3; 32])) }),
        node(b"link", NodeKind::Symlink { target: b"../elsewhere".to_vec() }),
        node(b"fifo", NodeKind::Fifo),
        node(b"tty", NodeKind::CharDevice { rdev: 0x0501 }),
        node(b"sda", NodeKind::BlockDevice { rdev: 0x0800 }),
        node(b"sock", NodeKind::Socket),
        node(b"\xff\xfe not utf-8", NodeKind::Fifo),
    ])?)
}

fn snapshot_seed() -> Snapshot {
    Snapshot {
        time: Timestamp { secs: 1_700_000_000, nanos: 5 },
        host: "db1".into(),
        username: "backup".into(),
        paths: vec!["/srv".into(), "-/pg_dump".into()],
        tags: vec!["daily".into(), "db".into()],
        tree: BlobId(Id([4; 32])),
        parent: Some(SnapshotId(Id([5; 32]))),
        summary: Summary {
            files_new: 1,
            files_changed: 2,
            files_unchanged: 3,
            dirs: 4,
            bytes_read: 5,
            bytes_total: 6,
            blobs_added: 7,
            bytes_added: 8,
            duration_ms: 9,
        },
        program_version: "cairn 0.1.0".into(),
    }
}

/// A real key object (cheapest Argon2id) and one with the default parameters but a dummy
/// sealed part (decode never opens it, so no 64 MiB hash is needed here).
fn key_seeds() -> Res<Vec<Seed>> {
    let master = MasterKey::generate();
    let real = KeyFile::create(&master, b"pw", KdfParams::INSECURE_FOR_TESTS)?.encode();
    let default = KeyFile { params: KdfParams::DEFAULT, salt: [3; 32], sealed: vec![0; real.len() - 54] };
    Ok(vec![seed("key_file", "insecure-params", real), seed("key_file", "default-params", default.encode())])
}

fn config_seeds() -> Vec<Seed> {
    let small = RepoConfig {
        pack_size: RepoConfig::MIN_PACK_SIZE,
        zstd_level: 19,
        chunker_files: ChunkerParams::STREAMS,
        ..RepoConfig::new()
    };
    vec![seed("config", "default", RepoConfig::new().encode()), seed("config", "small", small.encode())]
}

/// One seed per `blob_open` layout and blob sample: RAW (the real sealed blob and its id, so it
/// opens), FLIP (the plaintext) and BODY (the opened body and its id, so it opens too).
fn blob_seeds(key: &MasterKey) -> Res<Vec<Seed>> {
    let names = ["compressible", "incompressible", "tree"];
    let mut out = Vec::new();
    for ((kind, data), name) in blob_samples().into_iter().zip(names) {
        let id = key.blob_id(&data);
        let sealed = seal_blob(key, kind, &id, &data, 3);
        let body = key.open(&blob_aad(kind, &id), &sealed)?;
        let with_id = |mode: u8, tail: &[u8]| [&[mode, kind.to_byte()][..], id.as_bytes(), tail].concat();
        out.push(seed("blob_open", format!("raw-{name}"), with_id(blob_mode::RAW, &sealed)));
        out.push(seed("blob_open", format!("body-{name}"), with_id(blob_mode::BODY, &body)));
        let flip = [&[blob_mode::FLIP, kind.to_byte(), 1, 7, 0, 0x10][..], &data].concat();
        out.push(seed("blob_open", format!("flip-{name}"), flip));
    }
    Ok(out)
}
