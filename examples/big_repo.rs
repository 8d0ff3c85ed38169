//! Bench helper: builds a repository whose index names BLOBS blobs (default 20 million), to
//! measure how cairn's time and memory behave as the index grows.
//!
//! ```sh
//! CAIRN_PASSWORD=bench-pass cargo run --release --example big_repo -- /tmp/big 20000000
//! CAIRN_PASSWORD=bench-pass /usr/bin/time -v cairn --repo /tmp/big backup /some/tree
//! ```
//!
//! The index objects are real (sealed, `BLOBS_PER_INDEX` blobs each, 1 000 per pack, as a backup
//! writes them), but the packs they name are not stored: a backup deduplicates against the index
//! and never reads a pack, so this measures the index's cost alone. `check` on such a repository
//! reports every pack as missing, which is the truth. Blob ids are random, as keyed hashes are.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cairn::backend::StoreBackend;
use cairn::blob::BlobType;
use cairn::crypto::KdfParams;
use cairn::id::{BlobId, Id, PackId};
use cairn::index::file::{BLOBS_PER_INDEX, IndexFile, IndexPack};
use cairn::pack::PackBlob;
use cairn::repo::Repository;
use cairn::repo::config::RepoConfig;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

const BLOBS_PER_PACK: usize = 1000;

/// One index object's worth of fake packs, `n` blobs of the sizes a 4 KiB-chunked dump makes.
fn index_file(n: usize) -> IndexFile {
    let mut packs = Vec::with_capacity(n.div_ceil(BLOBS_PER_PACK));
    let mut left = n;
    while left > 0 {
        let here = left.min(BLOBS_PER_PACK);
        let blobs = (0..here)
            .map(|i| PackBlob {
                kind: BlobType::Data,
                id: BlobId(Id::random()),
                offset: i as u32 * 2_000,
                length: 2_000,
                raw_offset: 0,
                raw_length: 4_096,
            })
            .collect();
        packs.push(IndexPack { id: PackId(Id::random()), blobs });
        left -= here;
    }
    IndexFile { packs }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: big_repo DIR [BLOBS]   (password from CAIRN_PASSWORD)");
        std::process::exit(2);
    };
    let blobs: usize = args.get(2).map(|s| s.parse().expect("BLOBS is a number")).unwrap_or(20_000_000);
    let password = std::env::var("CAIRN_PASSWORD").expect("set CAIRN_PASSWORD");
    std::fs::create_dir_all(dir).unwrap();
    let backend = Arc::new(StoreBackend::local(std::path::Path::new(dir)).unwrap());
    let repo = Repository::init(backend, dir, password.as_bytes(), KdfParams::DEFAULT, RepoConfig::new()).unwrap();
    let start = Instant::now();
    let objects = blobs.div_ceil(BLOBS_PER_INDEX);
    // Each worker builds and stores one index object at a time: memory stays at a few of them.
    (0..objects).into_par_iter().for_each(|i| {
        let n = BLOBS_PER_INDEX.min(blobs - i * BLOBS_PER_INDEX);
        repo.save_index(&index_file(n)).unwrap();
    });
    println!("{dir}: {objects} index objects, {blobs} blobs, in {:.1}s", start.elapsed().as_secs_f64());
}
