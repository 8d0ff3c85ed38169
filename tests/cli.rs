//! Usage errors and their exit codes: wrong password, missing repository, existing repository,
//! unreadable input, unknown snapshot. Each ends in one clear message, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use predicates::prelude::*;

#[test]
fn every_command_has_help() {
    let env = Env::new();
    for cmd in ["init", "backup", "snapshots", "restore", "dump", "check", "unlock"] {
        env.cairn().args([cmd, "--help"]).assert().success().stdout(predicate::str::contains("Usage"));
    }
}

#[test]
fn missing_repository_is_exit_10() {
    let env = Env::new();
    env.cairn().arg("snapshots").assert().code(10).stderr(predicate::str::contains("no repository at"));
}

#[test]
fn wrong_password_is_exit_12() {
    let env = Env::init();
    env.cairn()
        .env("CAIRN_PASSWORD", "nope")
        .arg("snapshots")
        .assert()
        .code(12)
        .stderr(predicate::str::contains("wrong password"));
}

#[test]
fn password_file_works_and_init_twice_fails() {
    let env = Env::init();
    let pw = env.path("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    env.cairn().env_remove("CAIRN_PASSWORD").arg("--password-file").arg(&pw).arg("snapshots").assert().success();
    env.cairn().arg("init").assert().failure().stderr(predicate::str::contains("already exists"));
}

#[test]
fn no_password_without_a_terminal_is_a_usage_error() {
    let env = Env::init();
    env.cairn()
        .env_remove("CAIRN_PASSWORD")
        .arg("snapshots")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("CAIRN_PASSWORD"));
}

#[test]
fn missing_source_is_exit_3_and_no_snapshot() {
    let env = Env::init();
    env.cairn()
        .arg("backup")
        .arg(env.path("does-not-exist"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains("could not read backup input"));
    assert!(env.snapshot_ids().is_empty());
}

#[test]
fn unknown_snapshot_is_an_error() {
    let env = Env::init();
    env.cairn().args(["dump", "latest", "x"]).assert().code(1).stderr(predicate::str::contains("no snapshot matches"));
    env.cairn().args(["dump", "not-hex!", "x"]).assert().code(2);
}

#[test]
fn no_panics_on_usage_errors() {
    let env = Env::init();
    env.cairn().arg("backup").assert().code(2).stderr(predicate::str::contains("nothing to back up"));
    env.cairn().args(["backup", "--stdin-from-command", "x"]).assert().code(2);
    env.cairn().args(["backup", "-", "--stdin-filename", "a/b"]).assert().code(2);
}

/// Opens the test repository through the library, as another cairn process would.
fn open_repo(env: &Env) -> cairn::repo::Repository {
    let backend = std::sync::Arc::new(cairn::backend::StoreBackend::local(&env.repo()).unwrap());
    cairn::repo::Repository::open(backend, "test", PASSWORD.as_bytes()).unwrap()
}

#[test]
fn an_exclusive_lock_blocks_backup_with_exit_11_until_removed() {
    let env = Env::init();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let repo = open_repo(&env);
    let lock = repo.lock(true).unwrap();
    env.cairn()
        .arg("backup")
        .arg(&src)
        .assert()
        .code(11)
        .stderr(predicate::str::contains("locked").and(predicate::str::contains("cairn unlock")));
    // The holder is alive on this host, so a plain unlock keeps it; --remove-all does not.
    env.cairn().arg("unlock").assert().success().stdout(predicate::str::contains("removed 0 lock"));
    env.cairn().args(["unlock", "--remove-all"]).assert().success().stdout(predicate::str::contains("removed 1 lock"));
    env.cairn().arg("backup").arg(&src).assert().success();
    drop(lock);
}
