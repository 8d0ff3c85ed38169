//! Crash safety: backups killed with SIGKILL at different moments of the write order (after one
//! pack, after several, during a stdin dump, as the index object lands) leave a repository that
//! `check --read-data` passes, and either no snapshot or a complete one; the next backup of the
//! same data succeeds and restores byte for byte.

// Helpers outside #[test] functions panic on failure too: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Polls until `ready` holds, then kills `child` (SIGKILL) and reaps it. Returns whether it was
/// killed (false: it finished just before); panics if it ended before `ready` held.
fn kill_when(mut child: Child, what: &str, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Whether it ended is asked first, so that `ready` sees everything it wrote.
        let ended = child.try_wait().unwrap();
        if ready() {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            // Killed, or (when the moment is the very end) finished just before.
            return status.code().is_none();
        }
        if let Some(status) = ended {
            panic!("the backup ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "no {what} after two minutes");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `check --read-data` passes; an interrupted backup's packs are only a note.
fn assert_check_passes(env: &Env) -> String {
    let out = env.cairn().args(["check", "--read-data"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "check after a crash: {}{stdout}", stderr_text(&out));
    stdout
}

fn background_backup(env: &Env, src: &Path) -> Child {
    env.std_cairn().arg("backup").arg(src).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

#[test]
fn a_killed_backup_leaves_a_repository_that_checks_and_backs_up_again() {
    let env = Env::init_cheap();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("f{i:02}")), random_bytes(100 + i, 10 * MIB)).unwrap();
    }

    // Killed after the first pack and after several: packs are stored, no index object or
    // snapshot names them yet.
    for packs in [1, 4] {
        let before = env.objects("packs").len();
        let killed =
            kill_when(background_backup(&env, &src), "new packs", || env.objects("packs").len() >= before + packs);
        assert!(killed, "the backup was meant to be killed after {packs} pack(s)");
        assert!(env.snapshot_ids().is_empty(), "no snapshot after a killed backup");
        let notes = assert_check_passes(&env);
        assert!(notes.contains("not named by any index object"), "{notes}");
    }

    // Killed the moment the index object lands: the snapshot may or may not follow, but any
    // snapshot there is must be complete.
    let killed = kill_when(background_backup(&env, &src), "an index object", || !env.objects("index").is_empty());
    assert_check_passes(&env);
    assert!(env.snapshot_ids().len() <= 1);
    if !killed {
        eprintln!("note: the backup finished before it could be killed at the index object");
    }

    // The next backup of the same data succeeds, and restores byte for byte.
    env.cairn().arg("backup").arg(&src).assert().success();
    assert_check_passes(&env);
    for (i, id) in env.snapshot_ids().iter().enumerate() {
        let target = env.path(&format!("restored{i}"));
        env.cairn().args(["restore", id, "--target"]).arg(&target).assert().success();
        assert_trees_equal(&src, &restored(&target, &src));
    }
}

#[test]
fn a_killed_dump_then_a_whole_one() {
    let env = Env::init_cheap();
    let dump = random_bytes(9, 40 * MIB);
    let mut child = env
        .std_cairn()
        .args(["backup", "-", "--stdin-filename", "db.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = dump.clone();
    // Half the dump, then the pipe stays open: the backup is stuck waiting for more when killed.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&data[..data.len() / 2]);
        stdin
    });
    assert!(kill_when(child, "a pack of the dump", || !env.objects("packs").is_empty()));
    drop(feeder.join().unwrap());
    assert!(env.snapshot_ids().is_empty());
    assert_check_passes(&env);

    env.cairn().args(["backup", "-", "--stdin-filename", "db.sql"]).write_stdin(dump.clone()).assert().success();
    assert_check_passes(&env);
    let out = env.cairn().args(["dump", "latest", "db.sql"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(out.stdout == dump, "the dump restored with other bytes");
}
