//! Shared helpers for the binary tests: a `cairn` command bound to a fresh repository and cache,
//! deterministic pseudo-random content, and a byte-and-attribute tree comparison.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const PASSWORD: &str = "correct horse battery staple";

/// A scratch folder with a repository path and a cache inside.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    /// A new env with an initialised repository.
    pub fn init() -> Env {
        let env = Env::new();
        env.cairn().arg("init").assert().success();
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// `cairn` with --repo, the password and the cache set; no stdin.
    pub fn cairn(&self) -> Command {
        let mut c = Command::cargo_bin("cairn").unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CAIRN_REPO", self.repo())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .write_stdin(Vec::new());
        c
    }

    /// Total bytes of every file in the repository.
    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo())
    }

    /// The id of the latest snapshot as listed by `cairn snapshots`.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let out = self.cairn().args(["snapshots", "-q"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(String::from))
            .collect()
    }
}

pub fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
    }
    total
}

mod bytes;
#[allow(unused_imports)] // not every test file uses it
pub use bytes::random_bytes;

/// Asserts two trees are equal in every byte and attribute cairn keeps: type, content, mode,
/// uid/gid, mtime (ns), symlink targets, xattrs, device numbers, and hard-link structure.
pub fn assert_trees_equal(a: &Path, b: &Path) {
    let (ma, mb) = (std::fs::symlink_metadata(a).unwrap(), std::fs::symlink_metadata(b).unwrap());
    let what = || format!("{} vs {}", a.display(), b.display());
    assert_eq!(ma.file_type().is_dir(), mb.file_type().is_dir(), "type {}", what());
    assert_eq!(ma.file_type().is_symlink(), mb.file_type().is_symlink(), "type {}", what());
    assert_eq!(ma.file_type().is_fifo(), mb.file_type().is_fifo(), "type {}", what());
    assert_eq!(ma.mode(), mb.mode(), "mode {}", what());
    assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "owner {}", what());
    if !ma.file_type().is_symlink() {
        assert_eq!((ma.mtime(), ma.mtime_nsec()), (mb.mtime(), mb.mtime_nsec()), "mtime {}", what());
        let xa: Vec<_> = xattr::list(a).map(|l| l.collect()).unwrap_or_default();
        let xb: Vec<_> = xattr::list(b).map(|l| l.collect()).unwrap_or_default();
        assert_eq!(xa, xb, "xattr names {}", what());
        for n in &xa {
            assert_eq!(xattr::get(a, n).unwrap(), xattr::get(b, n).unwrap(), "xattr {n:?} {}", what());
        }
    }
    if ma.file_type().is_symlink() {
        assert_eq!(std::fs::read_link(a).unwrap(), std::fs::read_link(b).unwrap(), "target {}", what());
    } else if ma.is_file() {
        assert_eq!(ma.len(), mb.len(), "size {}", what());
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "content {}", what());
        assert_eq!(ma.nlink(), mb.nlink(), "link count {}", what());
    } else if ma.file_type().is_char_device() || ma.file_type().is_block_device() {
        assert_eq!(ma.rdev(), mb.rdev(), "rdev {}", what());
    } else if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<Vec<u8>> =
                std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
            v.sort();
            v
        };
        let (na, nb) = (names(a), names(b));
        assert_eq!(na, nb, "entries {}", what());
        for n in na {
            let n = std::ffi::OsStr::from_bytes(&n);
            assert_trees_equal(&a.join(n), &b.join(n));
        }
    }
}

/// Where a backed-up absolute path lands inside a restore target.
pub fn restored(target: &Path, original: &Path) -> PathBuf {
    target.join(original.strip_prefix("/").unwrap())
}

/// Whether the tests run as root: device nodes, other owners and `setpriv` need it.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

impl Env {
    /// A new env whose repository's key uses the cheapest Argon2id, so that each command opens
    /// it in milliseconds instead of half a second. The repository format is the same.
    pub fn init_cheap() -> Env {
        Env::init_cheap_with(&[])
    }

    /// [`Env::init_cheap`] with more `init` options, e.g. `["--pack-size", "1M"]`.
    pub fn init_cheap_with(options: &[&str]) -> Env {
        let env = Env::new();
        env.cairn()
            .args(["init", "--kdf-memory", "8", "--kdf-passes", "1", "--kdf-lanes", "1"])
            .args(options)
            .assert()
            .success();
        env
    }

    /// `cairn` as a plain `std::process::Command` with the same settings as [`Env::cairn`], for
    /// runs in the background (to be killed) or with piped stdin.
    pub fn std_cairn(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("CAIRN_REPO", self.repo())
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .stdin(std::process::Stdio::null());
        c
    }

    /// The stored objects below `repo/<dir>` (e.g. "packs", "snapshots"): files named by a
    /// 64-digit hex id, sorted. Staging files of interrupted writes are left out.
    pub fn objects(&self, dir: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![self.repo().join(dir)];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries {
                let e = e.unwrap();
                let name = e.file_name();
                let name = name.as_bytes();
                if e.file_type().unwrap().is_dir() {
                    todo.push(e.path());
                } else if name.len() == 64 && name.iter().all(u8::is_ascii_hexdigit) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
}

/// The object name (hex id) of a stored object's path.
pub fn object_name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_string()
}

/// Flips one bit of the byte at `offset` of a file, in place.
pub fn flip_byte(path: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, offset).unwrap();
}

/// Cuts a file to `len` bytes, in place.
pub fn truncate_file(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// A command's stderr as text.
pub fn stderr_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
