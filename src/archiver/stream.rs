//! Streamed inputs: a database dump piped to stdin, or the output of a command that cairn runs.
//!
//! A stream is always read in full; its content is never assumed from metadata or names. A
//! command's exit status is checked after its output is stored: a command that fails (non-zero
//! status, killed by a signal, or not startable) fails the backup, and no snapshot is written.

use super::Archiver;
use crate::error::{Error, Result};
use crate::tree::{Node, NodeKind};
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where a streamed input comes from.
#[derive(Debug, Clone)]
pub enum StreamSource {
    Stdin,
    Command(Vec<OsString>),
}

/// One streamed input and the file name it gets in the snapshot's root.
#[derive(Debug, Clone)]
pub struct StreamInput {
    pub name: String,
    pub source: StreamSource,
}

impl StreamInput {
    /// How the snapshot's path list names it: `-/NAME` for stdin, `$(CMD)/NAME` for commands.
    pub fn label(&self) -> String {
        match &self.source {
            StreamSource::Stdin => format!("-/{}", self.name),
            StreamSource::Command(cmd) => format!("$({})/{}", display_command(cmd), self.name),
        }
    }
}

pub fn display_command(cmd: &[OsString]) -> String {
    cmd.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

impl Archiver<'_, '_> {
    /// Reads one streamed input to its end and returns its file node.
    pub(super) fn save_input(&mut self, input: &StreamInput) -> Result<Node> {
        let label = Path::new(&input.name);
        let (content, size) = match &input.source {
            StreamSource::Stdin => self.save_stream(std::io::stdin().lock(), label)?,
            StreamSource::Command(cmd) => self.save_command(cmd, label)?,
        };
        self.summary.files_new += 1;
        self.summary.bytes_total += size;
        let now = crate::repo::now();
        Ok(Node {
            name: input.name.as_bytes().to_vec(),
            kind: NodeKind::File { content },
            // A dump is as sensitive as the database it came from: owner-only on restore.
            mode: 0o100600,
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            size,
            mtime: now,
            ctime: now,
            inode: 0,
            device: 0,
            links: 1,
            xattrs: Vec::new(),
        })
    }

    fn save_command(&mut self, cmd: &[OsString], label: &Path) -> Result<(Vec<crate::id::BlobId>, u64)> {
        let shown = display_command(cmd);
        let (program, args) =
            cmd.split_first().ok_or_else(|| Error::Usage("--stdin-from-command needs a command after `--`".into()))?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::InputCommandFailed {
                command: shown.clone(),
                status: format!("could not start: {e}"),
            })?;
        let stored = match child.stdout.take() {
            Some(out) => self.save_stream(out, label),
            None => Err(Error::InputCommandFailed { command: shown.clone(), status: "no output pipe".into() }),
        };
        let status =
            child.wait().map_err(|e| Error::InputCommandFailed { command: shown.clone(), status: e.to_string() })?;
        if !status.success() {
            return Err(Error::InputCommandFailed { command: shown, status: status.to_string() });
        }
        stored
    }
}
