//! The library's one error type. Variants name the object (its kind and id) and the problem;
//! the binary alone turns them into messages and exit codes (`main.rs`).
//!
//! Decoders of repository bytes return the small [`FormatError`]; the repository layer wraps it
//! with the object it was decoding, so every message says *which* object is bad.

use std::path::PathBuf;

/// What a decoder found wrong with bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("truncated: needs {needed} bytes, has {available}")]
    Truncated { needed: u64, available: u64 },
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("unsupported {what} version {version} (this cairn reads up to {supported}); upgrade cairn")]
    UnsupportedVersion { what: &'static str, version: u8, supported: u8 },
    #[error("authentication failed: the bytes were changed or belong elsewhere")]
    Authentication,
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

impl FormatError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        FormatError::Invalid { what, reason: reason.into() }
    }
}

/// The kind of a stored object, for messages and paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Config,
    Key,
    Snapshot,
    Index,
    Pack,
    Lock,
    Blob,
    Tree,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Index => "index",
            ObjectKind::Pack => "pack",
            ObjectKind::Lock => "lock",
            ObjectKind::Blob => "data blob",
            ObjectKind::Tree => "tree",
        })
    }
}

/// A named object in the repository, for messages: `pack 3fa2...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: ObjectKind, name: impl Into<String>) -> Self {
        ObjectRef { kind, name: name.into() }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() { write!(f, "{}", self.kind) } else { write!(f, "{} {}", self.kind, self.name) }
    }
}

/// Errors from the storage boundary, classified so that wrappers know what to retry.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0} not found in the repository storage")]
    NotFound(String),
    #[error("{0} already exists in the repository storage")]
    AlreadyExists(String),
    #[error("storage failure (may pass if retried): {0}")]
    Transient(String),
    #[error("storage failure: {0}")]
    Permanent(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no repository at {location}: run `cairn init` first, or check --repo / CAIRN_REPO")]
    NoRepository { location: String },
    #[error("a repository already exists at {location}")]
    RepositoryExists { location: String },
    #[error("wrong password: no key in the repository opens with it")]
    WrongPassword,
    #[error("repository is locked by {holder}; if that process is gone, run `cairn unlock`")]
    Locked { holder: String },
    #[error("{object} is damaged: {problem}; run `cairn check --read-data` to see what depends on it")]
    Corrupt { object: ObjectRef, problem: FormatError },
    #[error("{object} needs a newer cairn: {problem}")]
    Unsupported { object: ObjectRef, problem: FormatError },
    #[error("{object} is missing from the repository storage; run `cairn check`")]
    Missing { object: ObjectRef },
    #[error("could not read backup input {path}: {source}; no snapshot was written")]
    InputUnreadable { path: PathBuf, source: std::io::Error },
    #[error("backup input command `{command}` failed: {status}; no snapshot was written")]
    InputCommandFailed { command: String, status: String },
    #[error("storage: {0}")]
    Backend(#[from] BackendError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Usage(String),
    #[error("no snapshot matches {0}")]
    NoSnapshot(String),
    #[error("snapshot id prefix {0} is ambiguous: give more characters")]
    AmbiguousSnapshot(String),
    #[error("check found {count} problem(s) in the repository; see the findings above")]
    Damaged { count: usize },
    #[error("restore incomplete: {count} file(s) could not be restored; see the messages above")]
    RestoreIncomplete { count: usize },
    #[error("index cache at {path}: {reason}")]
    Cache { path: PathBuf, reason: String },
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// A decoder's complaint about a stored object. An unknown version is not damage: a newer
    /// cairn wrote it.
    pub(crate) fn corrupt(object: ObjectRef, problem: FormatError) -> Self {
        match problem {
            FormatError::UnsupportedVersion { .. } => Error::Unsupported { object, problem },
            problem => Error::Corrupt { object, problem },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
