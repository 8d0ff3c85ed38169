//! The golden repositories, one per format version (`tests/fixtures/repo-v<N>`, password
//! "fixture"), each written once by the cairn that introduced the version: every later cairn
//! must check them clean and restore each of their snapshots to exactly the manifest in
//! `tests/fixtures/repo-v<N>-expected/<snapshot>.manifest`. Never regenerate one to make this
//! test pass: a failure here means old backups broke. (`cargo test --test fixtures -- --ignored
//! write_fixture` writes the one of the format this cairn creates, for a new version.) And a
//! backup into the format-1 repository must leave it readable by cairn 0.1: still format 1.

// Helpers outside #[test] functions panic on failure too: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const FIXTURE_PASSWORD: &str = "fixture";
/// Where the sources of the fixture of format `version` were; restored paths lie below it.
fn source(version: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/cairn-fixture-v{version}/src"))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `cairn` on the repository `repo` with the fixture's password and a cache in `scratch`.
fn cairn(repo: &Path, scratch: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("cairn").unwrap();
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CAIRN_REPO", repo)
        .env("CAIRN_PASSWORD", FIXTURE_PASSWORD)
        .env("CAIRN_CACHE_DIR", scratch.join("cache"))
        .write_stdin(Vec::new());
    c
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// One line per entry below `root`, sorted: kind, mode (octal), mtime, then per kind the size,
/// link count and BLAKE3 of the content, or the symlink's target; the path (escaped) last.
/// Owners are left out: only root restores them.
fn manifest(root: &Path) -> String {
    let mut lines = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().as_os_str().as_bytes().escape_ascii().to_string();
            let ft = m.file_type();
            let mode = m.permissions().mode() & 0o7777;
            let mtime = format!("{}.{:09}", m.mtime(), m.mtime_nsec());
            let line = if ft.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                format!("symlink\t{}\t{rel}", target.as_os_str().as_bytes().escape_ascii())
            } else if ft.is_dir() {
                todo.push(path.clone());
                format!("dir\t{mode:04o}\t{mtime}\t{rel}")
            } else if ft.is_file() {
                let hash = blake3::hash(&fs::read(&path).unwrap());
                format!("file\t{mode:04o}\t{mtime}\t{}\t{}\t{hash}\t{rel}", m.len(), m.nlink())
            } else if ft.is_fifo() {
                format!("fifo\t{mode:04o}\t{mtime}\t{rel}")
            } else {
                panic!("unexpected entry {}", path.display());
            };
            lines.push((rel, line));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Full snapshot ids, oldest first (the listing shows short ids; the manifests are named by them).
fn snapshots(repo: &Path, scratch: &Path) -> Vec<String> {
    let out = cairn(repo, scratch).args(["snapshots", "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect()
}

#[test]
fn the_v1_repository_checks_clean_and_restores_exactly() {
    check_and_restore(1);
}

#[test]
fn the_v2_repository_checks_clean_and_restores_exactly() {
    check_and_restore(2);
    // The fixture covers what format 2 added: some bundle holds more than one blob.
    let r = open_fixture(2);
    let bundled = r.list_ids(cairn::error::ObjectKind::Index).unwrap().iter().any(|id| {
        let file = r.load_index_file(&cairn::id::IndexId(*id)).unwrap();
        file.packs.iter().any(|p| p.blobs.iter().any(|b| b.raw_offset > 0))
    });
    assert!(bundled, "no bundle of several blobs in the v2 fixture");
}

/// The committed fixture of format `version`, opened with the library (read-only use).
fn open_fixture(version: u32) -> cairn::repo::Repository {
    use cairn::backend::{Backend, StoreBackend};
    let dir = fixtures().join(format!("repo-v{version}"));
    let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(StoreBackend::local(&dir).unwrap());
    cairn::repo::Repository::open(backend, "fixture", FIXTURE_PASSWORD.as_bytes()).unwrap()
}

fn check_and_restore(version: u32) {
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    // A copy: check and restore take locks, and the fixture must stay as committed.
    copy_tree(&fixtures().join(format!("repo-v{version}")), &repo);
    let out = cairn(&repo, scratch.path()).args(["check", "--read-data"]).output().unwrap();
    assert!(out.status.success(), "check of the v{version} fixture: {}", stderr_text(&out));

    let expected_dir = fixtures().join(format!("repo-v{version}-expected"));
    let ids = snapshots(&repo, scratch.path());
    let mut manifests: Vec<String> =
        fs::read_dir(&expected_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    manifests.sort();
    let mut want: Vec<String> = ids.iter().map(|id| format!("{id}.manifest")).collect();
    want.sort();
    assert_eq!(manifests, want, "one manifest per snapshot");
    for id in &ids {
        let target = scratch.path().join(format!("restore-{id}"));
        cairn(&repo, scratch.path()).args(["restore", id, "--target"]).arg(&target).assert().success();
        let expected = fs::read_to_string(expected_dir.join(format!("{id}.manifest"))).unwrap();
        assert_eq!(manifest(&target), expected, "snapshot {id} restored differently from format v{version}");
    }
    let out = cairn(&repo, scratch.path()).args(["dump", "latest", "db.sql"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(out.stdout.starts_with(b"-- cairn fixture dump\n"));
}

fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = filetime::FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(p, t, t).unwrap();
}

/// The fixture's source tree: a few small files of each kind, fixed modes and times.
fn build_source(src: &Path) {
    fs::create_dir_all(src.join("docs/empty-dir")).unwrap();
    fs::create_dir_all(src.join("bin")).unwrap();
    let files: [(&str, &[u8], u32); 6] = [
        ("hello.txt", b"hello from format version 1\n", 0o644),
        ("bin/tool.sh", b"#!/bin/sh\necho tool\n", 0o755),
        ("private.key", b"not really a key\n", 0o600),
        ("empty", b"", 0o644),
        ("docs/with space.md", b"# a name with a space\n", 0o640),
        ("hard-a", b"one inode, two names\n", 0o644),
    ];
    for (i, (name, content, mode)) in files.iter().enumerate() {
        fs::write(src.join(name), content).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(*mode)).unwrap();
        set_mtime(&src.join(name), 1_600_000_000 + i as i64, 123_456_789);
    }
    fs::write(src.join(std::ffi::OsStr::from_bytes(b"docs/caf\xe9.txt")), b"latin-1 name\n").unwrap();
    fs::write(src.join("docs/random.bin"), random_bytes(1, 20_000)).unwrap();
    fs::hard_link(src.join("hard-a"), src.join("docs/hard-b")).unwrap();
    std::os::unix::fs::symlink("hello.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("../nowhere", src.join("docs/dangling")).unwrap();
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, src.join("pipe"), rustix::fs::FileType::Fifo, mode, 0).unwrap();
    set_mtime(&src.join("pipe"), 1_500_000_000, 1);
    set_mtime(&src.join("docs/random.bin"), 1_500_000_001, 2);
    set_mtime(&src.join(std::ffi::OsStr::from_bytes(b"docs/caf\xe9.txt")), 1_500_000_002, 3);
    for (i, d) in ["docs/empty-dir", "docs", "bin", ""].iter().enumerate() {
        set_mtime(&src.join(d), 1_400_000_000 + i as i64, 999_999_999);
    }
}

/// The format `cairn init` creates.
const CURRENT: u32 = 2;

/// Writes `tests/fixtures/repo-v<CURRENT>` and its manifests with the current binary. Run only
/// when a new format version is released (after raising `CURRENT`), never to make the tests
/// above pass.
#[test]
#[ignore = "writes the golden fixture; run by hand for a new format version"]
fn write_fixture() {
    let (repo, expected) =
        (fixtures().join(format!("repo-v{CURRENT}")), fixtures().join(format!("repo-v{CURRENT}-expected")));
    let scratch = tempfile::tempdir().unwrap();
    let src = source(CURRENT);
    let _ = fs::remove_dir_all(src.parent().unwrap());
    let _ = fs::remove_dir_all(&repo);
    let _ = fs::remove_dir_all(&expected);
    build_source(&src);
    let run = || cairn(&repo, scratch.path());
    run().args(["init", "--kdf-memory", "8", "--kdf-passes", "1", "--kdf-lanes", "1"]).assert().success();
    run().arg("backup").arg(&src).args(["--tag", "first", "--host", "fixture-host"]).assert().success();
    fs::write(src.join("hello.txt"), b"hello again, changed for the second snapshot\n").unwrap();
    set_mtime(&src.join("hello.txt"), 1_650_000_000, 5);
    set_mtime(&src, 1_400_000_009, 9);
    let dump: Vec<u8> = [&b"-- cairn fixture dump\n"[..], &b"INSERT INTO t VALUES (1, 'one');\n".repeat(200)].concat();
    run()
        .arg("backup")
        .arg(&src)
        .arg("-")
        .args(["--stdin-filename", "db.sql", "--tag", "second", "--host", "fixture-host"])
        .write_stdin(dump)
        .assert()
        .success();
    fs::create_dir_all(&expected).unwrap();
    for id in snapshots(&repo, scratch.path()) {
        let target = scratch.path().join(&id);
        run().args(["restore", &id, "--target"]).arg(&target).assert().success();
        fs::write(expected.join(format!("{id}.manifest")), manifest(&target)).unwrap();
    }
    // The latest restore must equal the source: the manifest records what cairn should do.
    let latest = snapshots(&repo, scratch.path()).pop().unwrap();
    assert_trees_equal(&src, &restored(&scratch.path().join(latest), &src));
    run().args(["check", "--read-data"]).assert().success();
    // Git keeps no empty folders (locks/); the test must not depend on them.
    let _ = fs::remove_dir(repo.join("locks"));
    assert!(dir_size(&repo) < 100 * 1024, "fixture too large: {} bytes", dir_size(&repo));
    let _ = fs::remove_dir_all(src.parent().unwrap());
}

/// cairn keeps writing format 1 into a format-1 repository, so cairn 0.1 can still read what it
/// backs up there: single-blob bundles under version-1 pack headers. Bundles are refused there.
#[test]
fn a_backup_into_the_v1_repository_keeps_it_format_1() {
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    copy_tree(&fixtures().join("repo-v1"), &repo);
    let src = scratch.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20u64 {
        fs::write(src.join(format!("small-{i}")), random_bytes(i, 3000)).unwrap();
    }
    fs::write(src.join("large"), random_bytes(99, 3 << 20)).unwrap();
    let dump: Vec<u8> =
        (0..40_000).flat_map(|i| format!("INSERT INTO t VALUES ({i}, 'row');\n").into_bytes()).collect();
    let backup = || {
        let mut c = cairn(&repo, scratch.path());
        c.arg("backup").arg(&src).arg("-").args(["--stdin-filename", "db.sql"]);
        c
    };
    let refused = backup().args(["--bundle-size", "64K"]).write_stdin(dump.clone()).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_text(&refused));
    assert!(stderr_text(&refused).contains("bundles need format 2"), "{}", stderr_text(&refused));
    backup().write_stdin(dump.clone()).assert().success();

    let target = scratch.path().join("restored");
    cairn(&repo, scratch.path()).args(["restore", "latest", "--target"]).arg(&target).assert().success();
    assert_trees_equal(&src, &restored(&target, &src));
    let out = cairn(&repo, scratch.path()).args(["dump", "latest", "db.sql"]).output().unwrap();
    assert!(out.stdout == dump, "dump differs: {}", stderr_text(&out));
    cairn(&repo, scratch.path()).args(["check", "--read-data"]).assert().success();

    use cairn::backend::{Backend, StoreBackend};
    let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(StoreBackend::local(&repo).unwrap());
    let r = cairn::repo::Repository::open(backend, "copy", FIXTURE_PASSWORD.as_bytes()).unwrap();
    assert_eq!(r.config().format_version, 1);
    let mut headers = 0;
    for pack in walk_files(&repo.join("packs")) {
        let bytes = fs::read(&pack).unwrap();
        let range = cairn::pack::header_range(bytes.len() as u64, &bytes[bytes.len() - 4..]).unwrap();
        let plain = r.key().open(cairn::pack::HEADER_AAD, &bytes[range.start as usize..range.end as usize]).unwrap();
        assert_eq!(plain[0], cairn::pack::PACK_HEADER_V1, "{}", pack.display());
        headers += 1;
    }
    assert!(headers > 2, "the new backup wrote packs");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() { out.extend(walk_files(&path)) } else { out.push(path) }
    }
    out
}
