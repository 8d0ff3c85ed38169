//! `cairn restore` and `cairn dump`.

use super::direct_out::DirectOut;
use super::{FilterArgs, Global, human};
use crate::error::{Error, Result};
use crate::restorer::{self, RestoreOptions};
use std::os::fd::AsFd;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct RestoreArgs {
    /// `latest` or a snapshot id prefix
    snapshot: String,
    /// Folder to restore into (created if missing)
    #[arg(long, short = 't')]
    target: PathBuf,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DumpArgs {
    /// `latest` or a snapshot id prefix
    snapshot: String,
    /// Path of the file inside the snapshot, e.g. db.sql or /srv/app/config.yml
    path: String,
    #[command(flatten)]
    filter: FilterArgs,
}

pub(crate) fn restore(g: &Global, a: &RestoreArgs) -> Result<()> {
    let repo = g.open()?;
    let (id, snap) = crate::snapshot::select(&repo.snapshots()?, &a.snapshot, &a.filter.filter())?;
    let opts = RestoreOptions { target: a.target.clone(), ..Default::default() };
    let summary = restorer::restore(&repo, &snap.tree, &opts)?;
    for (path, why) in &summary.failed {
        eprintln!("not restored: {}: {why}", path.display());
    }
    g.say(format!(
        "restored snapshot {} into {}: {} files, {} dirs, {} other, {}",
        id.short(),
        a.target.display(),
        summary.files,
        summary.dirs,
        summary.other,
        human(summary.bytes)
    ));
    if summary.failed.is_empty() { Ok(()) } else { Err(Error::RestoreIncomplete { count: summary.failed.len() }) }
}

pub(crate) fn dump(g: &Global, a: &DumpArgs) -> Result<()> {
    let repo = g.open()?;
    let (_, snap) = crate::snapshot::select(&repo.snapshots()?, &a.snapshot, &a.filter.filter())?;
    let node = restorer::find_node(&repo, &snap.tree, a.path.as_bytes())?;
    let stdout = std::io::stdout().lock();
    // Into a regular file, if it is long enough: past the page cache (see `direct_out`). The
    // content up to a failed blob is written either way.
    if let Some(mut out) = DirectOut::new(stdout.as_fd(), node.size) {
        let dumped = restorer::dump(&repo, &node, &mut out);
        let finished = out.finish().map_err(|e| Error::io("writing to stdout", e));
        return dumped.and(finished);
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    restorer::dump(&repo, &node, &mut out)?;
    std::io::Write::flush(&mut out).map_err(|e| Error::io("writing to stdout", e))
}
