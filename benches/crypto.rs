//! Keyed BLAKE3 ids, and sealing/opening blobs (zstd + XChaCha20-Poly1305) for incompressible and
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! text-like 1 MiB and 64 KiB chunks.
use cairn::blob::{BlobType, open_blob, seal_blob};
use cairn::crypto::MasterKey;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let key = MasterKey::generate();
    let mut g = c.benchmark_group("crypto");
    for (name, data) in [
        ("random-1MiB", common::random_bytes(1, 1 << 20)),
        ("text-1MiB", common::text_bytes(2, 1 << 20)),
        ("text-64KiB", common::text_bytes(3, 64 << 10)),
    ] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("blob-id/{name}"), |b| b.iter(|| key.blob_id(&data)));
        let id = key.blob_id(&data);
        g.bench_function(format!("seal/{name}"), |b| b.iter(|| seal_blob(&key, BlobType::Data, &id, &data, 3)));
        let sealed = seal_blob(&key, BlobType::Data, &id, &data, 3);
        g.bench_function(format!("open/{name}"), |b| b.iter(|| open_blob(&key, BlobType::Data, &id, &sealed).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
