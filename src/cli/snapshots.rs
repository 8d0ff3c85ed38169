//! `cairn snapshots` and `cairn unlock`.

use super::{FilterArgs, Global, human};
use crate::error::Result;

#[derive(clap::Args, Debug)]
pub(crate) struct SnapshotsArgs {
    #[command(flatten)]
    filter: FilterArgs,
}

pub(crate) fn run(g: &Global, a: &SnapshotsArgs) -> Result<()> {
    let repo = g.open_bare()?;
    let filter = a.filter.filter();
    let all = repo.snapshots()?;
    println!("{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  paths", "id", "time (UTC)", "host", "tags", "added");
    let mut n = 0;
    for (id, s) in all.iter().filter(|(_, s)| filter.matches(s)) {
        n += 1;
        println!(
            "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
            id.short(),
            s.time_string(),
            s.host,
            s.tags.join(","),
            human(s.summary.bytes_added),
            s.paths.join(" ")
        );
    }
    g.say(format!("{n} snapshot(s)"));
    Ok(())
}

#[derive(clap::Args, Debug)]
pub(crate) struct UnlockArgs {
    /// Remove every lock, also live ones (only when you know no cairn is running)
    #[arg(long)]
    remove_all: bool,
}

pub(crate) fn unlock(g: &Global, a: &UnlockArgs) -> Result<()> {
    let repo = g.open_bare()?;
    let n = repo.unlock(a.remove_all)?;
    g.say(format!("removed {n} lock(s)"));
    Ok(())
}
