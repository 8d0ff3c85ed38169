//! Deduplication: every distinct chunk is stored once across snapshots, and content-defined
//! chunking keeps an insert in the middle of a large file to a few new chunks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// The number of blobs a backup's summary line says it added.
fn blobs_added(out: &std::process::Output) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "blobs,").expect("summary names the blobs added");
    words[at - 1].parse().unwrap()
}

#[test]
fn backup_can_cut_one_run_differently_and_restore_needs_no_settings() {
    let env = Env::init();
    let data = random_bytes(11, 4 << 20);
    let file = env.path("dump.sql");
    std::fs::write(&file, &data).unwrap();
    let backup = |extra: &[&str], tag: &str| {
        let out = env
            .cairn()
            .args(["backup", "--tag", tag, "--stdin-filename", "db.sql", "-"])
            .args(extra)
            .pipe_stdin(&file)
            .unwrap()
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_text(&out));
        blobs_added(&out)
    };
    // 4 MiB of fresh data: about a thousand 4 KiB chunks by default, a few dozen at 256 KiB.
    let coarse = backup(&["--stream-chunk-size", "256K", "--compression-level", "5"], "coarse");
    assert!((5..=64).contains(&coarse), "256K chunks: {coarse} blobs");
    let fine = backup(&[], "fine");
    assert!(fine > 400, "default chunks: {fine} blobs");
    for tag in ["coarse", "fine"] {
        let out = env.cairn().args(["dump", "latest", "--tag", tag, "db.sql"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr_text(&out));
        assert!(out.stdout == data, "dump of {tag} differs");
    }
    // A setting out of range is a usage error before anything is read or written.
    env.cairn().args(["backup", "--stream-chunk-size", "7", "-"]).assert().code(2);
    env.cairn().args(["backup", "--compression-level", "30", "-"]).assert().code(2);
}

/// Bundles (format 2) change how new chunks are sealed, not what is deduplicated: with each
/// chunk alone (`--bundle-size 0`), the default and 1 MiB bundles, a tree of small files and a
/// dump restore exactly and check clean, a dump with one row changed adds a few chunks only,
/// and sealing text chunks together stores fewer bytes than sealing them alone.
#[test]
fn bundle_sizes_keep_deduplication_per_chunk() {
    let mut sizes = Vec::new();
    for bundle in ["0", "128K", "1M"] {
        let env = Env::new();
        env.cairn().args(["init", "--bundle-size", bundle]).assert().success();
        let dir = env.path("small");
        std::fs::create_dir(&dir).unwrap();
        for i in 0..200u32 {
            std::fs::write(dir.join(format!("f{i:03}")), format!("file {i}: some words that repeat\n").repeat(40))
                .unwrap();
        }
        let mut dump: Vec<u8> = (0..60_000u32)
            .flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'row {}');\n", i * 7).into_bytes())
            .collect();
        let backup = |data: &[u8]| {
            env.cairn()
                .arg("backup")
                .arg(&dir)
                .arg("-")
                .args(["--stdin-filename", "db.sql"])
                .write_stdin(data.to_vec())
                .assert()
                .success();
        };
        backup(&dump);
        let first = env.repo_size();
        sizes.push(first);
        let at = dump.len() / 2;
        dump[at] ^= 0x20;
        backup(&dump);
        let added = env.repo_size() - first;
        assert!(added < 64 << 10, "bundle size {bundle}: one changed row added {added} bytes");
        let target = env.path("restored");
        env.cairn().args(["restore", "latest", "--target"]).arg(&target).assert().success();
        assert_trees_equal(&dir, &restored(&target, &dir));
        let out = env.cairn().args(["dump", "latest", "db.sql"]).output().unwrap();
        assert!(out.stdout == dump, "bundle size {bundle}: the dump differs");
        env.cairn().args(["check", "--read-data"]).assert().success();
    }
    assert!(sizes[1] < sizes[0] && sizes[2] < sizes[0], "bundled repositories not smaller: {sizes:?}");
}
