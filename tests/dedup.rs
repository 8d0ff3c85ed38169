//! Deduplication: every distinct chunk is stored once across snapshots, and content-defined
//! chunking keeps an insert in the middle of a large file to a few new chunks.

mod common;
use common::*;

#[test]
fn the_same_100_mib_again_adds_under_one_percent() {
    let env = Env::init();
    let a = env.path("a");
    std::fs::create_dir(&a).unwrap();
    for i in 0..10 {
        std::fs::write(a.join(format!("f{i}")), random_bytes(i, 10 << 20)).unwrap();
    }
    env.cairn().arg("backup").arg(&a).assert().success();
    let first = env.repo_size();
    assert!(first > 100 << 20, "first backup stored {first} bytes");
    // A copy elsewhere: new paths and inodes, so nothing is skipped by metadata; only
    // deduplication keeps it small.
    let b = env.path("b");
    std::fs::create_dir(&b).unwrap();
    for i in 0..10 {
        std::fs::copy(a.join(format!("f{i}")), b.join(format!("f{i}"))).unwrap();
    }
    env.cairn().arg("backup").arg(&b).assert().success();
    let added = env.repo_size() - first;
    assert!(added < first / 100, "second copy added {added} bytes");
}

#[test]
fn an_insert_in_a_large_file_adds_a_few_chunks() {
    let env = Env::init();
    let dir = env.path("data");
    std::fs::create_dir(&dir).unwrap();
    let mut data = random_bytes(7, 64 << 20);
    std::fs::write(dir.join("big"), &data).unwrap();
    env.cairn().arg("backup").arg(&dir).assert().success();
    let first = env.repo_size();
    data.splice(32 << 20..32 << 20, b"a few bytes".iter().copied());
    std::fs::write(dir.join("big"), &data).unwrap();
    env.cairn().arg("backup").arg(&dir).assert().success();
    let added = env.repo_size() - first;
    // Chunks average 1 MiB and are at most 4 MiB: a couple of chunks plus trees and metadata.
    assert!(added < 10 << 20, "insert added {added} bytes");
}
