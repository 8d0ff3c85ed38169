//! `cairn backup`: arguments -> BackupOptions, parent selection, lock, run, summary.

use super::{Global, human};
use crate::archiver::stream::{StreamInput, StreamSource};
use crate::archiver::{BackupOptions, backup};
use crate::error::{Error, Result};
use crate::id::SnapshotId;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct BackupArgs {
    /// Folders and files to back up; `-` reads stdin (name it with --stdin-filename)
    paths: Vec<PathBuf>,
    /// File name for the data read from stdin
    #[arg(long, default_value = "stdin")]
    stdin_filename: String,
    /// Run the command after `--` and store its output as NAME; a failing command fails the backup
    #[arg(long, value_name = "NAME")]
    stdin_from_command: Option<String>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    host: Option<String>,
    /// Leave out matching files: a pattern without `/` matches names, one with `/` whole paths
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Compare files with this snapshot instead of the latest with the same host and paths
    #[arg(long)]
    parent: Option<String>,
    /// Read every file, trusting no parent snapshot
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    write: super::WriteSettings,
    /// The command to run for --stdin-from-command
    #[arg(last = true)]
    command: Vec<OsString>,
}

pub(crate) fn run(g: &Global, a: &BackupArgs) -> Result<()> {
    let mut paths = Vec::new();
    let mut inputs = Vec::new();
    for p in &a.paths {
        if p.as_os_str() == "-" {
            inputs.push(StreamInput { name: a.stdin_filename.clone(), source: StreamSource::Stdin });
        } else {
            paths.push(p.clone());
        }
    }
    match (&a.stdin_from_command, a.command.is_empty()) {
        (Some(name), false) => {
            inputs.push(StreamInput { name: name.clone(), source: StreamSource::Command(a.command.clone()) })
        }
        (Some(_), true) => return Err(Error::Usage("--stdin-from-command NAME needs the command after `--`".into())),
        (None, false) => return Err(Error::Usage("a command after `--` needs --stdin-from-command NAME".into())),
        (None, true) => {}
    }
    if paths.is_empty() && inputs.is_empty() {
        return Err(Error::Usage("nothing to back up: give paths, `-`, or --stdin-from-command".into()));
    }
    a.write.apply(crate::repo::config::RepoConfig::new())?; // a typo fails before the password prompt
    let mut repo = g.open()?;
    // Settings given for this run replace the stored ones (none given: the stored ones stay).
    // Differently cut chunks do not deduplicate against the old ones: worth it only on purpose.
    let settings = a.write.apply(repo.config().clone())?;
    repo.override_write_settings(&settings);
    let _lock = repo.lock(false)?;
    let host = a.host.clone().unwrap_or_else(crate::repo::hostname);
    let mut opts =
        BackupOptions { paths, inputs, excludes: a.excludes.clone(), tags: a.tags.clone(), host, parent: None };
    if !a.force {
        opts.parent = find_parent(&repo, &opts, a.parent.as_deref())?;
    }
    let (id, snap, warnings) = backup(&repo, &opts)?;
    let s = &snap.summary;
    g.say(format!(
        "snapshot {} saved: {} files ({} new, {} changed, {} unchanged), {} dirs, {} total, {} read, {} added in {} blobs, {:.1}s",
        id.short(),
        s.files_new + s.files_changed + s.files_unchanged,
        s.files_new,
        s.files_changed,
        s.files_unchanged,
        s.dirs,
        human(s.bytes_total),
        human(s.bytes_read),
        human(s.bytes_added),
        s.blobs_added,
        s.duration_ms as f64 / 1000.0
    ));
    if !warnings.is_empty() {
        eprintln!("{} warning(s): files that vanished during the backup are not in the snapshot", warnings.len());
    }
    Ok(())
}

/// The parent: `--parent`, else the latest snapshot with the same host and the same paths.
fn find_parent(
    repo: &crate::repo::Repository,
    opts: &BackupOptions,
    given: Option<&str>,
) -> Result<Option<(SnapshotId, crate::id::BlobId)>> {
    let all = repo.snapshots()?;
    if let Some(spec) = given {
        let (id, s) = crate::snapshot::select(&all, spec, &Default::default())?;
        return Ok(Some((id, s.tree)));
    }
    let mut want: Vec<String> =
        opts.paths.iter().filter_map(|p| crate::archiver::absolute(p).ok()).map(|p| p.display().to_string()).collect();
    want.sort();
    let found = all.iter().rev().find(|(_, s)| {
        let mut have: Vec<String> = s.paths.iter().filter(|p| p.starts_with('/')).cloned().collect();
        have.sort();
        s.host == opts.host && have == want && !want.is_empty()
    });
    Ok(found.map(|(id, s)| (*id, s.tree)))
}
