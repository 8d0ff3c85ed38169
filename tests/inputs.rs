//! Streamed inputs: dumps piped to stdin and commands run by cairn, alone and together with
//! paths in one snapshot. A failing dump command writes no snapshot and exits 3.

mod common;
use common::*;

#[test]
fn stdin_dump_round_trips_through_dump() {
    let env = Env::init();
    let dump = random_bytes(3, 3 << 20);
    env.cairn()
        .args(["backup", "-", "--stdin-filename", "db.sql", "--tag", "db"])
        .write_stdin(dump.clone())
        .assert()
        .success();
    let out = env.cairn().args(["dump", "latest", "--tag", "db", "db.sql"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == dump);
}

/// `dump > FILE` writes past the page cache in aligned pieces when it can (see
/// `cli/direct_out.rs`): the file must hold exactly the dump, after what was there before
/// (an aligned offset, and an unaligned one, which takes the ordinary path), and the shell's
/// offset must end after it, so the next write lands behind the dump.
#[test]
fn dump_into_a_file_lands_at_the_shells_offset() {
    use std::io::Write;
    let env = Env::init_cheap();
    let dump = random_bytes(4, (9 << 20) + 12_345);
    env.cairn().args(["backup", "-", "--stdin-filename", "db.sql"]).write_stdin(dump.clone()).assert().success();
    for before in [0usize, 4096, 10] {
        let path = env.path(&format!("out-{before}.sql"));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&vec![b'#'; before]).unwrap();
        let status = env
            .std_cairn()
            .args(["dump", "latest", "db.sql"])
            .stdout(file.try_clone().unwrap())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        file.write_all(b"after").unwrap();
        drop(file);
        let all = std::fs::read(&path).unwrap();
        assert_eq!(all.len(), before + dump.len() + 5, "{before} bytes before");
        assert!(all[before..before + dump.len()] == dump[..] && all.ends_with(b"after"), "{before} bytes before");
    }
}

#[test]
fn a_failing_dump_command_writes_no_snapshot() {
    let env = Env::init();
    env.cairn()
        .args(["backup", "--stdin-from-command", "db.sql", "--", "sh", "-c", "echo partial; exit 7"])
        .assert()
        .code(3)
        .stderr(predicates::str::contains("failed").and(predicates::str::contains("no snapshot was written")));
    assert!(env.snapshot_ids().is_empty());
    env.cairn().args(["backup", "--stdin-from-command", "db.sql", "--", "no-such-program-xyz"]).assert().code(3);
    assert!(env.snapshot_ids().is_empty());
}

#[test]
fn command_stdin_and_paths_share_one_snapshot() {
    let env = Env::init();
    let uploads = env.path("uploads");
    std::fs::create_dir(&uploads).unwrap();
    std::fs::write(uploads.join("a.pdf"), b"%PDF").unwrap();
    let conf = env.path("app.conf");
    std::fs::write(&conf, b"key = value\n").unwrap();
    env.cairn()
        .arg("backup")
        .arg(&uploads)
        .arg(&conf)
        .arg("-")
        .args([
            "--stdin-filename",
            "extra.txt",
            "--stdin-from-command",
            "db.sql",
            "--tag",
            "app",
            "--",
            "sh",
            "-c",
            "printf 'create table t;\\n'",
        ])
        .write_stdin(b"from stdin".to_vec())
        .assert()
        .success();
    assert_eq!(env.snapshot_ids().len(), 1);
    let dump = |p: &str| env.cairn().args(["dump", "latest", p]).output().unwrap().stdout;
    assert_eq!(dump("db.sql"), b"create table t;\n");
    assert_eq!(dump("extra.txt"), b"from stdin");
    assert_eq!(dump(&conf.display().to_string()), b"key = value\n");
    assert_eq!(dump(&uploads.join("a.pdf").display().to_string()), b"%PDF");
}

use predicates::prelude::*;
