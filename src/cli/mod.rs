//! The command line: clap arguments, global options (repository, password source, cache),
//! and dispatch. Parsed arguments are turned into the library's plain option structs here, so
//! clap never leaks into core types. Errors go back to `main.rs`, which prints them once and
//! picks the exit code.

mod backup;
mod check;
mod direct_out;
mod restore;
mod snapshots;

use crate::backend::{Backend, StoreBackend};
use crate::crypto::KdfParams;
use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::config::{ChunkerParams, RepoConfig};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = "Deduplicating, encrypted backups of file trees and database dumps")]
pub struct Cli {
    /// Repository location: a local folder
    #[arg(short = 'r', long, env = "CAIRN_REPO", global = true)]
    repo: Option<String>,
    /// Read the password from this file (first line). Else CAIRN_PASSWORD, else a prompt
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Folder for local caches (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn)
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Print less (errors and warnings only)
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new repository
    Init(InitArgs),
    /// Back up folders, files, stdin and command output into one snapshot
    Backup(backup::BackupArgs),
    /// List snapshots
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot into a folder
    Restore(restore::RestoreArgs),
    /// Write one file of a snapshot to stdout
    Dump(restore::DumpArgs),
    /// Verify the repository's structure, and with --read-data every byte
    Check(check::CheckArgs),
    /// Remove stale locks left by crashed cairn processes
    Unlock(snapshots::UnlockArgs),
}

#[derive(clap::Args, Debug)]
struct InitArgs {
    /// Argon2id memory in KiB for the password key (default 47104)
    #[arg(long, default_value_t = KdfParams::DEFAULT.m_cost, hide = true)]
    kdf_memory: u32,
    /// Argon2id passes (default 2)
    #[arg(long, default_value_t = KdfParams::DEFAULT.t_cost, hide = true)]
    kdf_passes: u32,
    /// Argon2id lanes (default 2; memory must be at least 8 KiB per lane)
    #[arg(long, default_value_t = KdfParams::DEFAULT.p_cost, hide = true)]
    kdf_lanes: u32,
    #[command(flatten)]
    write: WriteSettings,
}

/// How new data is cut, packed and compressed: set by `init` (stored in the config) and
/// overridable by `backup` for one run. Readers never need them.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct WriteSettings {
    /// Average chunk size for file trees, e.g. 1M (min is a quarter, max four times it)
    #[arg(long, value_parser = parse_size)]
    file_chunk_size: Option<u32>,
    /// Average chunk size for streamed inputs (dumps), e.g. 4K
    #[arg(long, value_parser = parse_size)]
    stream_chunk_size: Option<u32>,
    /// Target pack size, e.g. 16M
    #[arg(long, value_parser = parse_size)]
    pack_size: Option<u32>,
    /// zstd level 1-19 (higher: smaller and slower)
    #[arg(long)]
    compression_level: Option<i32>,
    /// Seal neighbouring small chunks together up to this many bytes, e.g. 128K (0: each alone)
    #[arg(long, value_parser = parse_size)]
    bundle_size: Option<u32>,
}

impl WriteSettings {
    /// `config` with the settings given on the command line, checked as a stored config is.
    pub(crate) fn apply(&self, mut config: RepoConfig) -> Result<RepoConfig> {
        if let Some(avg) = self.file_chunk_size {
            config.chunker_files = ChunkerParams::around(avg);
        }
        if let Some(avg) = self.stream_chunk_size {
            config.chunker_streams = ChunkerParams::around(avg);
        }
        config.pack_size = self.pack_size.unwrap_or(config.pack_size);
        config.zstd_level = self.compression_level.unwrap_or(config.zstd_level);
        config.bundle_size = self.bundle_size.unwrap_or(config.bundle_size);
        config.validate().map_err(|e| Error::Usage(e.to_string()))?;
        Ok(config)
    }
}

/// `64K`, `1M`, `1048576`: a size in bytes (binary units).
fn parse_size(s: &str) -> std::result::Result<u32, String> {
    let (digits, mult) = match s.trim().to_ascii_uppercase() {
        t if t.ends_with('K') => (t[..t.len() - 1].to_string(), 1u64 << 10),
        t if t.ends_with('M') => (t[..t.len() - 1].to_string(), 1u64 << 20),
        t if t.ends_with('G') => (t[..t.len() - 1].to_string(), 1u64 << 30),
        t => (t, 1),
    };
    let n: u64 = digits.parse().map_err(|_| format!("`{s}` is not a size like 64K or 1M"))?;
    u32::try_from(n * mult).map_err(|_| format!("`{s}` is too large"))
}

/// Global options every command needs.
pub(crate) struct Global {
    repo: Option<String>,
    password_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    pub quiet: bool,
}

impl Global {
    fn location(&self) -> Result<&str> {
        self.repo.as_deref().ok_or_else(|| Error::Usage("no repository given: use --repo or set CAIRN_REPO".into()))
    }

    fn backend(&self, create: bool) -> Result<Arc<dyn Backend>> {
        let loc = self.location()?;
        if loc.contains("://") {
            return Err(Error::Usage(format!("{loc}: only local folders are supported in this version")));
        }
        let dir = PathBuf::from(loc);
        if create {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {loc}"), e))?;
        } else if !dir.join("config").exists() {
            return Err(Error::NoRepository { location: loc.to_string() });
        }
        Ok(Arc::new(StoreBackend::local(&dir)?))
    }

    fn password(&self, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("reading password file {}", path.display()), e))?;
            return Ok(zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_string()));
        }
        if let Ok(pw) = std::env::var("CAIRN_PASSWORD") {
            return Ok(zeroize::Zeroizing::new(pw));
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Error::Usage(
                "no password: set CAIRN_PASSWORD or use --password-file (no terminal to ask on)".into(),
            ));
        }
        let pw = zeroize::Zeroizing::new(
            rpassword::prompt_password("repository password: ").map_err(|e| Error::io("reading password", e))?,
        );
        if confirm {
            let again = zeroize::Zeroizing::new(
                rpassword::prompt_password("again: ").map_err(|e| Error::io("reading password", e))?,
            );
            if *again != *pw {
                return Err(Error::Usage("the passwords differ".into()));
            }
        }
        Ok(pw)
    }

    fn cache_root(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(crate::repo::default_cache_root)
    }

    /// Opens the repository without its index.
    pub(crate) fn open_bare(&self) -> Result<Repository> {
        let backend = self.backend(false)?;
        let pw = self.password(false)?;
        Repository::open(backend, self.location()?, pw.as_bytes())
    }

    /// Opens the repository and brings its index cache up to date.
    pub(crate) fn open(&self) -> Result<Repository> {
        let mut repo = self.open_bare()?;
        for (id, e) in repo.load_index(&self.cache_root())? {
            eprintln!("warning: index object {} left out: {e}", id.short());
        }
        Ok(repo)
    }

    pub(crate) fn say(&self, msg: impl std::fmt::Display) {
        if !self.quiet {
            println!("{msg}");
        }
    }
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let global =
        Global { repo: cli.repo, password_file: cli.password_file, cache_dir: cli.cache_dir, quiet: cli.quiet };
    match cli.command {
        Command::Init(a) => init(&global, &a),
        Command::Backup(a) => backup::run(&global, &a),
        Command::Snapshots(a) => snapshots::run(&global, &a),
        Command::Restore(a) => restore::restore(&global, &a),
        Command::Dump(a) => restore::dump(&global, &a),
        Command::Check(a) => check::run(&global, &a),
        Command::Unlock(a) => snapshots::unlock(&global, &a),
    }
}

fn init(g: &Global, a: &InitArgs) -> Result<()> {
    let kdf = KdfParams { m_cost: a.kdf_memory, t_cost: a.kdf_passes, p_cost: a.kdf_lanes };
    kdf.validate().map_err(|e| Error::Usage(e.to_string()))?;
    let loc = g.location()?.to_string();
    if PathBuf::from(&loc).join("config").exists() {
        return Err(Error::RepositoryExists { location: loc });
    }
    // Settings are checked before the password prompt, so a typo costs no typing.
    let config = a.write.apply(RepoConfig::new())?;
    let pw = g.password(true)?;
    if pw.is_empty() {
        return Err(Error::Usage("an empty password protects nothing; choose one".into()));
    }
    let repo = Repository::init(g.backend(true)?, &loc, pw.as_bytes(), kdf, config)?;
    g.say(format!("created cairn repository {} at {loc}", repo.config().id.short()));
    g.say("keep the password safe: without it the data cannot be read by anyone, you included");
    Ok(())
}

/// Formats a byte count for people.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The snapshot filter options shared by restore, dump and snapshots.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only snapshots from this host (repeatable)
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable; all must match)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only snapshots that include this path (repeatable)
    #[arg(long = "path")]
    paths: Vec<String>,
}

impl FilterArgs {
    pub(crate) fn filter(&self) -> crate::snapshot::Filter {
        crate::snapshot::Filter { hosts: self.hosts.clone(), tags: self.tags.clone(), paths: self.paths.clone() }
    }
}
