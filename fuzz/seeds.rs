//! `make-seeds`: writes valid encoded examples of every object into `corpus/<target>/`, so each
//! fuzz target starts from inputs that decode. The corpus is git-ignored; this program is what
//! is kept. Run: `cargo +nightly run --manifest-path fuzz/Cargo.toml --bin make-seeds`.
//!
//! Seeds are built with cairn's own encoders and the fixed key of `cairn_fuzz::fixed_key`, so
//! sealed seeds open in the targets, for both repository formats (version-1 and version-2 pack
//! headers, index objects and configs; blobs sealed alone and in bundles). It fails if the fuzz
//! crate's pack header oracles disagree with `PackWriter` or a blob seed does not open.
//! Re-running overwrites the seeds and leaves other files.

use cairn::blob::{BlobType, Sealing, open_blob, seal_blob, seal_bundle};
use cairn::crypto::{KdfParams, MasterKey};
use cairn::id::{BlobId, Id, PackId, SnapshotId};
use cairn::index::file::{IndexFile, IndexPack};
use cairn::pack::{self, FinishedPack, HEADER_AAD, PACK_HEADER_VERSION, PackWriter};
use cairn::repo::config::{ChunkerParams, RepoConfig};
use cairn::repo::keys::KeyFile;
use cairn::repo::lock::Lock;
use cairn::snapshot::{Snapshot, Summary};
use cairn::tree::{Node, NodeKind, Timestamp, Tree, Xattr};
use cairn_fuzz::{blob_mode, encode_header_plain, fixed_key, header_version, whole_bundles_back_to_back};
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
    let pack_v1 = sample_pack(key, Sealing::Single)?;
    let pack_v2 = sample_pack(key, Sealing::Bundles)?;
    let mut seeds: Vec<Seed> = Vec::new();
    seeds.extend(pack_header_seeds(key, Sealing::Single, &pack_v1)?);
    seeds.extend(pack_header_seeds(key, Sealing::Bundles, &pack_v2)?);
    seeds.push(seed("index_file", "v1-two-packs", index_seed(&pack_v1).encode(Sealing::Single)?));
    seeds.push(seed("index_file", "v2-two-packs", index_seed(&pack_v2).encode(Sealing::Bundles)?));
    seeds.push(seed("index_file", "v1-empty", IndexFile::default().encode(Sealing::Single)?));
    seeds.push(seed("index_file", "v2-empty", IndexFile::default().encode(Sealing::Bundles)?));
    seeds.push(seed("tree", "every-kind", tree_seed()?.encode()));
    seeds.push(seed("tree", "empty", Tree::default().encode()));
    seeds.push(seed("snapshot", "full", snapshot_seed().encode()));
    seeds.extend(key_seeds()?);
    seeds.extend(config_seeds());
    seeds.extend(blob_seeds(key, &pack_v2)?);
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

/// The three blob samples packed with the fixed key: in format 1 each blob alone (version-1
/// header); in format 2 the two data blobs as one bundle and the tree alone (version-2 header).
fn sample_pack(key: &MasterKey, sealing: Sealing) -> Res<FinishedPack> {
    let mut writer = PackWriter::new(sealing);
    for (kind, group) in sample_bundles(sealing) {
        let ids = group.iter().map(|d| Ok((key.blob_id(d), u32::try_from(d.len())?))).collect::<Res<Vec<_>>>()?;
        let parts: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
        let sealed = seal_bundle(key, &sealing.aad(kind, &ids[0].0), &parts, 3);
        writer.add_bundle(kind, &ids, &sealed)?;
    }
    Ok(writer.finish(key)?)
}

/// The blob samples grouped into bundles as `sealing` stores them.
fn sample_bundles(sealing: Sealing) -> Vec<(BlobType, Vec<Vec<u8>>)> {
    let samples = blob_samples();
    match sealing {
        Sealing::Single => samples.into_iter().map(|(kind, data)| (kind, vec![data])).collect(),
        Sealing::Bundles => {
            let mut data = Vec::new();
            let mut out = Vec::new();
            for (kind, d) in samples {
                match kind {
                    BlobType::Data => data.push(d),
                    BlobType::Tree => out.push((kind, vec![d])),
                }
            }
            out.insert(0, (BlobType::Data, data));
            out
        }
    }
}

fn blob_samples() -> Vec<(BlobType, Vec<u8>)> {
    let noise: Vec<u8> = (0..300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    vec![
        (BlobType::Data, b"hello cairn ".repeat(40)),
        (BlobType::Data, noise),
        (BlobType::Tree, Tree::default().encode()),
    ]
}

/// `data_len || opened header` of the sample pack and of an empty pack of this sealing (header
/// version 1 or 2), and the sample pack whole (which `read_header` opens). Also checks the fuzz
/// crate's header oracle against the real writer.
fn pack_header_seeds(key: &MasterKey, sealing: Sealing, pack: &FinishedPack) -> Res<Vec<Seed>> {
    let v = header_version(sealing);
    let mut out = Vec::new();
    let empty = PackWriter::new(sealing).finish(key)?;
    for (name, p) in [("three-blobs", pack), ("no-blobs", &empty)] {
        let len = p.bytes.len() as u64;
        let range = pack::header_range(len, p.bytes.get(p.bytes.len().saturating_sub(4)..).unwrap_or_default())?;
        let plain = key.open(HEADER_AAD, &p.bytes[range.start as usize..range.end as usize])?;
        if plain.first() != Some(&v) || plain != encode_header_plain(v, &p.blobs) {
            return Err(format!("the fuzz crate's header oracle disagrees with PackWriter ({sealing:?})").into());
        }
        if v == PACK_HEADER_VERSION && !whole_bundles_back_to_back(&p.blobs) {
            return Err("the fuzz crate's bundle-order oracle refuses PackWriter's header".into());
        }
        let mut bytes = range.start.to_le_bytes().to_vec();
        bytes.extend_from_slice(&plain);
        out.push(seed("pack_header", format!("v{v}-{name}"), bytes));
    }
    out.push(seed("pack_header", format!("v{v}-whole-pack"), pack.bytes.clone()));
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
        bundle_size: RepoConfig::MAX_BUNDLE_SIZE,
        ..RepoConfig::new()
    };
    let small_v1 = RepoConfig { bundle_size: 0, ..RepoConfig::format_1() };
    let small_v1 = RepoConfig { pack_size: small.pack_size, zstd_level: 19, chunker_files: small.chunker_files, ..small_v1 };
    vec![
        seed("config", "v2-default", RepoConfig::new().encode()),
        seed("config", "v2-small", small.encode()),
        seed("config", "v1-default", RepoConfig::format_1().encode()),
        seed("config", "v1-small", small_v1.encode()),
    ]
}

/// `blob_open` seeds, for both sealings. Per blob sample and sealing: RAW (the blob sealed alone
/// and its id and place, so it opens), FLIP (the plaintext; in format 2 with cuts that make parts
/// of it) and BODY (the opened body and its id and place, so it opens too). Plus, from the
/// format-2 sample pack's two-blob bundle, a RAW and a BODY seed for each of its blobs.
fn blob_seeds(key: &MasterKey, pack_v2: &FinishedPack) -> Res<Vec<Seed>> {
    let names = ["compressible", "incompressible", "tree"];
    let mut out = Vec::new();
    let input = |mode: u8, flags: u8, id: &BlobId, at: u32, len: u32, tail: &[u8]| {
        [&[mode, flags][..], id.as_bytes(), &at.to_le_bytes(), &len.to_le_bytes(), tail].concat()
    };
    for (sealing, v) in [(Sealing::Single, 1), (Sealing::Bundles, 2)] {
        let bit = if sealing == Sealing::Bundles { blob_mode::BUNDLES_BIT } else { 0 };
        for ((kind, data), name) in blob_samples().into_iter().zip(names) {
            let flags = kind.to_byte() | bit;
            let id = key.blob_id(&data);
            let len = u32::try_from(data.len())?;
            let sealed = seal_blob(key, sealing, kind, &id, &data, 3);
            let body = key.open(sealing.aad(kind, &id).as_bytes(), &sealed)?;
            must_open(key, sealing, kind, &id, (0, len), &sealed, &body, &data)?;
            out.push(seed("blob_open", format!("v{v}-raw-{name}"), input(blob_mode::RAW, flags, &id, 0, len, &sealed)));
            out.push(seed("blob_open", format!("v{v}-body-{name}"), input(blob_mode::BODY, flags, &id, 0, len, &body)));
            let flip = [&[blob_mode::FLIP, flags, 1, 60, 128, 200, 7, 0, 0x10][..], &data].concat();
            out.push(seed("blob_open", format!("v{v}-flip-{name}"), flip));
        }
    }
    let Some(first) = pack_v2.blobs.first() else {
        return Err("the format-2 sample pack is empty".into());
    };
    let sealed = pack_v2
        .bytes
        .get(first.bundle_range().start as usize..first.bundle_range().end as usize)
        .ok_or("the sample bundle lies outside its pack")?;
    let body = key.open(Sealing::Bundles.aad(first.kind, &first.id).as_bytes(), sealed)?;
    let bundled = sample_bundles(Sealing::Bundles).swap_remove(0).1;
    for (i, b) in pack_v2.blobs.iter().filter(|b| b.offset == first.offset).enumerate() {
        let flags = b.kind.to_byte() | blob_mode::BUNDLES_BIT;
        let (at, len) = (b.raw_offset, b.raw_length);
        let data = bundled.get(i).ok_or("the sample bundle holds more blobs than were put in")?;
        must_open(key, Sealing::Bundles, b.kind, &b.id, (at, len), sealed, &body, data)?;
        out.push(seed("blob_open", format!("v2-raw-bundle-blob{i}"), input(blob_mode::RAW, flags, &b.id, at, len, sealed)));
        out.push(seed("blob_open", format!("v2-body-bundle-blob{i}"), input(blob_mode::BODY, flags, &b.id, at, len, &body)));
    }
    Ok(out)
}

/// The RAW and BODY seeds of one blob must open in `blob_open` (the sealed bundle as it is, and
/// the body sealed again as the target seals it) to `data`; else the seed would be dead.
#[allow(clippy::too_many_arguments)]
fn must_open(
    key: &MasterKey,
    sealing: Sealing,
    kind: BlobType,
    id: &BlobId,
    (at, len): (u32, u32),
    sealed: &[u8],
    body: &[u8],
    data: &[u8],
) -> Res {
    let resealed = key.seal(sealing.aad(kind, id).as_bytes(), body);
    for bytes in [sealed, &resealed[..]] {
        if open_blob(key, sealing, kind, id, at, len, bytes)? != data {
            return Err(format!("a {sealing:?} blob seed opens to other bytes").into());
        }
    }
    Ok(())
}
