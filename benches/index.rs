//! Index look-ups in the RocksDB cache: hits and misses among 10 million entries (10 thousand
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! when run as a smoke test). The cache is built once per run in a temporary folder.
use cairn::blob::BlobType;
use cairn::id::{BlobId, Id, IndexId, PackId};
use cairn::index::BlobIndex;
use cairn::index::cache::IndexCache;
use cairn::index::file::{IndexFile, IndexPack};
use cairn::pack::PackBlob;
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

fn blob_id(i: u64) -> BlobId {
    BlobId(Id(*blake3::hash(&i.to_le_bytes()).as_bytes()))
}

/// Fills a cache with `n` blobs, 100 000 per index object, 1 000 per pack.
pub fn build_cache(dir: &std::path::Path, n: u64) -> IndexCache {
    let cache = IndexCache::open(dir).unwrap();
    let mut i = 0;
    while i < n {
        let end = (i + 100_000).min(n);
        let mut file = IndexFile::default();
        for p in (i..end).step_by(1000) {
            let blobs = (p..(p + 1000).min(end))
                .map(|b| PackBlob {
                    kind: BlobType::Data,
                    id: blob_id(b),
                    offset: (b % 1000) as u32 * 100,
                    length: 100,
                    raw_offset: 0,
                    raw_length: 200,
                })
                .collect();
            file.packs
                .push(IndexPack { id: PackId(Id(*blake3::hash(&(p ^ u64::MAX).to_le_bytes()).as_bytes())), blobs });
        }
        cache.add(&IndexId(Id(*blake3::hash(&end.to_le_bytes()).as_bytes())), &file).unwrap();
        i = end;
    }
    cache
}

fn bench(c: &mut Criterion) {
    let n: u64 = if common::full_run() { 10_000_000 } else { 10_000 };
    let dir = tempfile::tempdir().unwrap();
    let cache = build_cache(dir.path(), n);
    let mut g = c.benchmark_group(format!("index-{n}"));
    let mut k = 0u64;
    g.bench_function("lookup-hit", |b| {
        b.iter(|| {
            k = (k + 7_919) % n;
            cache.lookup(BlobType::Data, &blob_id(k)).unwrap().unwrap()
        })
    });
    g.bench_function("lookup-miss", |b| {
        b.iter(|| {
            k += 1;
            cache.lookup(BlobType::Data, &blob_id(n + k)).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
