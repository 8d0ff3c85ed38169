//! `cairn check [--read-data]`: prints each finding as it is found, then a summary; any
//! finding makes the exit code "damaged".

use super::{Global, human};
use crate::checker::{self, CheckOptions, Finding};
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub(crate) struct CheckArgs {
    /// Also download every pack and verify every blob
    #[arg(long)]
    read_data: bool,
}

pub(crate) fn run(g: &Global, a: &CheckArgs) -> Result<()> {
    let mut repo = g.open_bare()?;
    // Damaged index objects are findings, not a reason to stop: load the index without them.
    checker::load_index(&mut repo, &g.cache_root())?;
    let _lock = repo.lock(false)?;
    let opts = CheckOptions { read_data: a.read_data, ..Default::default() };
    let mut print = |f: &Finding| {
        eprintln!("damaged: {}: {}", f.object, f.problem);
        if !f.hint.is_empty() {
            eprintln!("  {}", f.hint);
        }
    };
    let report = checker::check(&repo, &opts, &mut print)?;
    for note in &report.notes {
        g.say(format!("note: {note}"));
    }
    if !report.findings.is_empty() {
        return Err(Error::Damaged { count: report.findings.len() });
    }
    if a.read_data {
        g.say(format!(
            "no problems found: {} snapshots, {} packs, {} blobs ({}) read and verified",
            report.snapshots,
            report.packs,
            report.blobs_read,
            human(report.bytes_read)
        ));
    } else {
        g.say(format!(
            "no problems found: {} snapshots, {} packs (structure only; --read-data verifies every byte)",
            report.snapshots, report.packs
        ));
    }
    Ok(())
}
