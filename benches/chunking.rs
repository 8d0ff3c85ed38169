//! FastCDC chunking throughput with the repository's default parameters for files and streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use cairn::chunker::Chunker;
use cairn::repo::config::ChunkerParams;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/mod.rs"]
mod common;

fn bench(c: &mut Criterion) {
    let data = common::random_bytes(1, 64 << 20);
    let mut g = c.benchmark_group("chunking");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for (name, params) in [("files-1MiB", ChunkerParams::FILES), ("streams-64KiB", ChunkerParams::STREAMS)] {
        let chunker = Chunker::new(params, 42);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                chunker
                    .chunk::<_, std::io::Error>(&data[..], None, |c| {
                        n += c.len();
                        Ok(())
                    })
                    .unwrap();
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
