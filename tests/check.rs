//! Damage stories: a small backup, then the repository's files are damaged directly (a flipped
//! byte, a truncated or deleted pack, a tampered snapshot, index object, config or key). `check`
//! names the damaged object and what needs it and exits 20; `restore` restores every intact
//! file, never leaves a file with wrong bytes, and names what it could not restore. Never a panic.

// Helpers outside #[test] functions panic on failure too: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;
const BIG: &str = "big.bin";
const SMALL: [&str; 4] = ["notes.txt", "photo.jpg", "docs/report.txt", "docs/deep/table.csv"];

/// A repository with two snapshots of `data/`: the first of a 4 MiB file alone (packs are
/// 1 MiB here, so its chunks fill several packs), the second also of small files. The second
/// backup stores only the small files and new trees, so damage to a pack of the first backup
/// can only cost the latest snapshot the big file, whatever order the packer put blobs in.
struct Damaged {
    env: Env,
    data: PathBuf,
    /// Packs written by the first backup.
    first_packs: Vec<PathBuf>,
}

impl Damaged {
    fn new() -> Damaged {
        let env = Env::init_cheap_with(&["--pack-size", "1M", "--file-chunk-size", "256K"]);
        let data = env.path("data");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join(BIG), random_bytes(40, 4 * MIB)).unwrap();
        env.cairn().arg("backup").arg(&data).assert().success();
        let first_packs = env.objects("packs");
        fs::create_dir_all(data.join("docs/deep")).unwrap();
        for (i, f) in SMALL.iter().enumerate() {
            fs::write(data.join(f), random_bytes(i as u64, 1000 + i * 5000)).unwrap();
        }
        env.cairn().arg("backup").arg(&data).assert().success();
        assert!(env.objects("packs").len() > first_packs.len(), "the second backup stores a pack");
        Damaged { env, data, first_packs }
    }

    /// The largest pack of the first backup: it holds chunks of the big file.
    fn full_pack(&self) -> PathBuf {
        assert!(self.first_packs.len() >= 3, "expected at least 3 packs, found {}", self.first_packs.len());
        self.first_packs.iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap().clone()
    }

    /// Runs cairn with `args`; asserts the exit code and that nothing panicked; returns stderr.
    fn run(&self, args: &[&str], code: i32) -> String {
        let out = self.env.cairn().args(args).output().unwrap();
        let err = stderr_text(&out);
        assert_eq!(out.status.code(), Some(code), "cairn {args:?}: {err}");
        assert!(!err.contains("panicked"), "cairn {args:?} panicked: {err}");
        err
    }

    fn restore(&self, target: &Path, code: i32) -> String {
        let out = self.env.cairn().args(["restore", "latest", "--target"]).arg(target).output().unwrap();
        let err = stderr_text(&out);
        assert_eq!(out.status.code(), Some(code), "restore: {err}");
        assert!(!err.contains("panicked"), "restore panicked: {err}");
        err
    }

    /// Every small file was restored with its exact bytes.
    fn assert_small_files_restored(&self, target: &Path) {
        for f in SMALL {
            let got = fs::read(restored(target, &self.data).join(f)).unwrap();
            assert!(got == fs::read(self.data.join(f)).unwrap(), "{f} restored with other bytes");
        }
    }
}

#[test]
fn a_clean_repository_passes_both_checks() {
    let d = Damaged::new();
    d.run(&["check"], 0);
    d.run(&["check", "--read-data"], 0);
    let target = d.env.path("target");
    d.restore(&target, 0);
    assert_trees_equal(&d.data, &restored(&target, &d.data));
}

#[test]
fn a_flipped_byte_in_a_pack_is_found_by_read_data_and_fails_only_its_file() {
    let d = Damaged::new();
    let pack = d.full_pack();
    let len = fs::metadata(&pack).unwrap().len();
    flip_byte(&pack, len / 2);
    let id = object_name(&pack);

    // The structure is whole: sizes and names all agree. Only reading the bytes finds it.
    d.run(&["check"], 0);
    let err = d.run(&["check", "--read-data"], 20);
    assert!(err.contains(&format!("pack {id}")), "{err}");
    assert!(err.contains(&d.data.join(BIG).display().to_string()), "the damage must name the file: {err}");
    for f in SMALL {
        assert!(!err.contains(f), "{f} is not in the damaged pack: {err}");
    }

    let target = d.env.path("target");
    let err = d.restore(&target, 21);
    let big = restored(&target, &d.data).join(BIG);
    assert!(err.contains(&format!("not restored: {}", big.display())), "{err}");
    assert!(err.contains(&id), "the reason names the pack: {err}");
    assert!(!big.exists(), "a file with wrong bytes must not be left behind");
    d.assert_small_files_restored(&target);
}

#[test]
fn a_truncated_pack_is_found_by_the_structure_check() {
    let d = Damaged::new();
    let pack = d.full_pack();
    let len = fs::metadata(&pack).unwrap().len();
    truncate_file(&pack, len / 2);
    let err = d.run(&["check"], 20);
    let id = object_name(&pack);
    assert!(err.contains(&format!("pack {id}")) && err.contains("truncated"), "{err}");
    assert!(err.contains(BIG), "{err}");
    let err = d.run(&["check", "--read-data"], 20);
    assert!(err.contains(&id), "{err}");

    let target = d.env.path("target");
    let err = d.restore(&target, 21);
    assert!(err.contains(BIG), "{err}");
    assert!(!restored(&target, &d.data).join(BIG).exists());
    d.assert_small_files_restored(&target);
}

#[test]
fn a_deleted_pack_is_reported_missing() {
    let d = Damaged::new();
    let pack = d.full_pack();
    fs::remove_file(&pack).unwrap();
    let err = d.run(&["check"], 20);
    let id = object_name(&pack);
    assert!(err.contains(&format!("pack {id}")) && err.contains("missing"), "{err}");
    assert!(err.contains(BIG), "{err}");

    let target = d.env.path("target");
    let err = d.restore(&target, 21);
    assert!(err.contains(BIG) && err.contains(&id), "{err}");
    assert!(!restored(&target, &d.data).join(BIG).exists());
    d.assert_small_files_restored(&target);
}

#[test]
fn a_tampered_snapshot_is_named_and_listing_fails_cleanly() {
    let d = Damaged::new();
    let snaps = d.env.objects("snapshots");
    assert_eq!(snaps.len(), 2);
    let len = fs::metadata(&snaps[0]).unwrap().len();
    flip_byte(&snaps[0], len / 2);
    let id = object_name(&snaps[0]);
    let err = d.run(&["check"], 20);
    assert!(err.contains(&format!("snapshot {id}")), "{err}");
    let err = d.run(&["snapshots"], 20);
    assert!(err.contains(&format!("snapshot {id}")) && err.contains("damaged"), "{err}");
    let out = d.env.cairn().args(["restore", "latest", "--target"]).arg(d.env.path("t")).output().unwrap();
    assert!(!out.status.success() && !stderr_text(&out).contains("panicked"), "{}", stderr_text(&out));
}

#[test]
fn a_tampered_index_object_is_named() {
    let d = Damaged::new();
    let index = d.env.objects("index");
    assert_eq!(index.len(), 2);
    flip_byte(&index[0], 40);
    // A fresh cache, so that nothing mirrored before the damage hides it.
    fs::remove_dir_all(d.env.path("cache")).unwrap();
    let err = d.run(&["check"], 20);
    assert!(err.contains(&format!("index {}", object_name(&index[0]))), "{err}");
    let out = d.env.cairn().args(["restore", "latest", "--target"]).arg(d.env.path("t")).output().unwrap();
    assert!(!out.status.success() && !stderr_text(&out).contains("panicked"), "{}", stderr_text(&out));
}

#[test]
fn a_damaged_key_object_is_a_clear_error() {
    let d = Damaged::new();
    let keys = d.env.objects("keys");
    assert_eq!(keys.len(), 1);
    let key_id = object_name(&keys[0]);
    let len = fs::metadata(&keys[0]).unwrap().len();
    for cut in [len / 2, 0] {
        truncate_file(&keys[0], cut);
        for cmd in [&["snapshots"][..], &["check"], &["backup", "-"]] {
            let err = d.run(cmd, 20);
            assert!(err.contains(&format!("key {key_id}")) && err.contains("damaged"), "{cmd:?}: {err}");
        }
    }
}

#[test]
fn an_empty_config_is_a_clear_error() {
    let d = Damaged::new();
    truncate_file(&d.env.repo().join("config"), 0);
    for cmd in [&["snapshots"][..], &["check"], &["check", "--read-data"]] {
        let err = d.run(cmd, 20);
        assert!(err.contains("config is damaged"), "{cmd:?}: {err}");
    }
}

/// A config cut inside its sealed bytes fails authentication. The key opened with the password,
/// so the password is right: the message must say the config is damaged.
#[test]
fn a_truncated_config_is_not_reported_as_a_wrong_password() {
    let d = Damaged::new();
    let config = d.env.repo().join("config");
    let len = fs::metadata(&config).unwrap().len();
    truncate_file(&config, len / 2);
    for cmd in [&["snapshots"][..], &["check"]] {
        let out = d.env.cairn().args(cmd).output().unwrap();
        let err = stderr_text(&out);
        assert!(!out.status.success() && !err.contains("panicked"), "{cmd:?}: {err}");
        assert!(err.contains("config") && !err.contains("wrong password"), "{cmd:?}: {err}");
        assert_eq!(out.status.code(), Some(20), "{cmd:?}: {err}");
    }
}

#[test]
fn an_unchanged_file_whose_blobs_left_the_index_is_read_again() {
    let d = Damaged::new();
    // The first backup's index object names the big file's chunks; the second's names the
    // trees the next backup starts from. Without the first, the big file is unchanged on disk
    // but its chunks are unknown, so the next backup must read and store it again.
    let mut index = d.env.objects("index");
    index.sort_by_key(|p| fs::metadata(p).unwrap().modified().unwrap());
    fs::remove_file(&index[0]).unwrap();
    d.env.cairn().arg("backup").arg(&d.data).assert().success();
    for pack in &d.first_packs {
        fs::remove_file(pack).unwrap();
    }
    let target = d.env.path("t");
    d.env.cairn().args(["restore", "latest", "--target"]).arg(&target).assert().success();
    assert_trees_equal(&d.data, &restored(&target, &d.data));
}
