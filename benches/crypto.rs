//! Keyed BLAKE3 ids, and sealing/opening blobs (zstd + XChaCha20-Poly1305) for incompressible and
//! text-like 1 MiB and 64 KiB chunks; and 32 text-like 4 KiB chunks (a database dump's size)
//! sealed one by one as format 1 does, or together in one bundle as format 2 does.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use cairn::blob::{BlobType, Sealing, blob_in, open_blob, open_bundle, seal_blob, seal_bundle};
use cairn::crypto::MasterKey;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let key = MasterKey::generate();
    let mut g = c.benchmark_group("crypto");
    let s = Sealing::Bundles;
    for (name, data) in [
        ("random-1MiB", common::random_bytes(1, 1 << 20)),
        ("text-1MiB", common::text_bytes(2, 1 << 20)),
        ("text-64KiB", common::text_bytes(3, 64 << 10)),
    ] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(format!("blob-id/{name}"), |b| b.iter(|| key.blob_id(&data)));
        let id = key.blob_id(&data);
        g.bench_function(format!("seal/{name}"), |b| b.iter(|| seal_blob(&key, s, BlobType::Data, &id, &data, 1)));
        let sealed = seal_blob(&key, s, BlobType::Data, &id, &data, 1);
        let len = data.len() as u32;
        g.bench_function(format!("open/{name}"), |b| {
            b.iter(|| open_blob(&key, s, BlobType::Data, &id, 0, len, &sealed).unwrap())
        });
    }
    let text = common::text_bytes(4, 128 << 10);
    let parts: Vec<&[u8]> = text.chunks(4 << 10).collect();
    let ids: Vec<_> = parts.iter().map(|p| key.blob_id(p)).collect();
    g.throughput(Throughput::Bytes(text.len() as u64));
    let alone = |b: &mut criterion::Bencher| {
        b.iter(|| {
            parts
                .iter()
                .zip(&ids)
                .map(|(p, id)| seal_blob(&key, Sealing::Single, BlobType::Data, id, p, 1).len())
                .sum::<usize>()
        })
    };
    g.bench_function("seal/text-4KiB-x32-alone", alone);
    let aad = s.aad(BlobType::Data, &ids[0]);
    g.bench_function("seal/text-4KiB-x32-bundled", |b| b.iter(|| seal_bundle(&key, &aad, &parts, 1)));
    let sealed_alone: Vec<Vec<u8>> =
        parts.iter().zip(&ids).map(|(p, id)| seal_blob(&key, Sealing::Single, BlobType::Data, id, p, 1)).collect();
    g.bench_function("open/text-4KiB-x32-alone", |b| {
        b.iter(|| {
            for (sealed, id) in sealed_alone.iter().zip(&ids) {
                open_blob(&key, Sealing::Single, BlobType::Data, id, 0, 4096, sealed).unwrap();
            }
        })
    });
    let bundle = seal_bundle(&key, &aad, &parts, 1);
    let mut plain = Vec::new();
    g.bench_function("open/text-4KiB-x32-bundled", |b| {
        b.iter(|| {
            open_bundle(&key, &aad, &bundle, &mut plain).unwrap();
            for (i, id) in ids.iter().enumerate() {
                blob_in(&key, s, id, i as u32 * 4096, 4096, &plain).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
