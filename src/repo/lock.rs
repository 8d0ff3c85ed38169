//! Lock objects: who is using the repository. Backups take shared locks; commands that delete
//! (prune, later) take exclusive ones. A lock is a sealed object at `locks/<random id>`.
//! A lock is stale when its process is gone (same host) or it was not refreshed for
//! [`STALE_AFTER_SECS`]; `cairn unlock` removes stale locks.

use crate::codec;
use crate::error::FormatError;
use serde::{Deserialize, Serialize};

pub const LOCK_VERSION: u8 = 1;
pub const MAX_LOCK_LEN: u64 = 64 * 1024;
/// Holders refresh their lock every [`REFRESH_SECS`]; one older than this is stale.
pub const STALE_AFTER_SECS: i64 = 30 * 60;
pub const REFRESH_SECS: u64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub exclusive: bool,
    pub host: String,
    pub username: String,
    pub pid: u32,
    /// Unix seconds when written.
    pub time: i64,
}

impl Lock {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(LOCK_VERSION, self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Lock, FormatError> {
        codec::decode("lock", LOCK_VERSION, MAX_LOCK_LEN, bytes)
    }

    pub fn is_stale(&self, now: i64, this_host: &str) -> bool {
        if now.saturating_sub(self.time) > STALE_AFTER_SECS {
            return true;
        }
        self.host == this_host && !process_alive(self.pid)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock of {}@{} pid {}, written {}s ago",
            if self.exclusive { "an exclusive" } else { "a shared" },
            self.username,
            self.host,
            self.pid,
            crate::repo::now_secs().saturating_sub(self.time)
        )
    }
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A held lock; refreshed in the background, removed on drop.
pub struct LockGuard {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LockGuard {
    pub(crate) fn acquire(repo: &super::Repository, exclusive: bool) -> crate::error::Result<LockGuard> {
        let me = Lock {
            exclusive,
            host: super::hostname(),
            username: super::username(),
            pid: std::process::id(),
            time: super::now_secs(),
        };
        conflict(repo, exclusive, None)?;
        let name = repo.save_lock(&me)?;
        // Two writers may both have seen no lock; whoever now sees the other backs off.
        if let Err(e) = conflict(repo, exclusive, Some(&name)) {
            let _ = repo.backend().delete(&crate::backend::object_path(crate::error::ObjectKind::Lock, &name));
            return Err(e);
        }
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let backend = repo.backend().clone();
        let key = repo.key().clone();
        let seal = move |l: &Lock| super::seal_envelope(&key, crate::error::ObjectKind::Lock, &l.encode());
        let thread = std::thread::spawn(move || {
            let mut current = name;
            let path = |n: &str| crate::backend::object_path(crate::error::ObjectKind::Lock, n);
            loop {
                match rx.recv_timeout(std::time::Duration::from_secs(REFRESH_SECS)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        let fresh = Lock { time: super::now_secs(), ..me.clone() };
                        let next = crate::id::Id::random().to_hex();
                        if backend.put_new(&path(&next), seal(&fresh).into()).is_ok() {
                            let _ = backend.delete(&path(&current));
                            current = next;
                        }
                    }
                    _ => {
                        let _ = backend.delete(&path(&current));
                        return;
                    }
                }
            }
        });
        Ok(LockGuard { stop: Some(stop), thread: Some(thread) })
    }
}

fn conflict(repo: &super::Repository, exclusive: bool, mine: Option<&str>) -> crate::error::Result<()> {
    let now = super::now_secs();
    let host = super::hostname();
    for (name, l) in repo.locks()? {
        if Some(name.as_str()) == mine {
            continue;
        }
        if let Ok(l) = l
            && !l.is_stale(now, &host)
            && (exclusive || l.exclusive)
        {
            return Err(crate::error::Error::Locked { holder: l.describe() });
        }
    }
    Ok(())
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_staleness() {
        let l = Lock { exclusive: true, host: "h".into(), username: "u".into(), pid: std::process::id(), time: 1000 };
        assert_eq!(Lock::decode(&l.encode()).unwrap(), l);
        assert!(!l.is_stale(1001, "h"));
        assert!(l.is_stale(1000 + STALE_AFTER_SECS + 1, "h"));
        let gone = Lock { pid: u32::MAX - 1, ..l.clone() };
        assert!(gone.is_stale(1001, "h"));
        assert!(!gone.is_stale(1001, "other-host"));
        // A hostile time must not overflow (found by fuzz/fuzz_targets/lock.rs).
        let hostile = Lock { time: i64::MIN, ..l.clone() };
        assert!(hostile.is_stale(0, "x"));
        assert!(!hostile.describe().is_empty());
    }
}
