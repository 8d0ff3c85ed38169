//! Writing a 16 MiB pack of sealed 64 KiB blobs (header sealed and verified) and reading its header.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use cairn::blob::{BlobType, Sealing, seal_blob};
use cairn::crypto::MasterKey;
use cairn::pack::{PackWriter, read_header};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let key = MasterKey::generate();
    let blobs: Vec<_> = (0..256u64)
        .map(|i| {
            let data = common::random_bytes(i, 64 << 10);
            let id = key.blob_id(&data);
            (id, seal_blob(&key, Sealing::Bundles, BlobType::Data, &id, &data, 3), data.len() as u32)
        })
        .collect();
    let build = || {
        let mut w = PackWriter::new(Sealing::Bundles);
        for (id, sealed, raw) in &blobs {
            w.add(BlobType::Data, *id, sealed, *raw).unwrap();
        }
        w.finish(&key).unwrap()
    };
    let mut g = c.benchmark_group("pack");
    g.throughput(Throughput::Bytes(blobs.iter().map(|b| b.1.len() as u64).sum()));
    g.bench_function("write-16MiB", |b| b.iter(build));
    let pack = build();
    g.bench_function("read-header-256-blobs", |b| b.iter(|| read_header(&key, &pack.bytes).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
