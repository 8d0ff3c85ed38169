//! The cairn binary: runs the command, prints the error once, and maps it to an exit code.
//!
//! Exit codes (README.md "Exit codes"): 0 ok; 1 other failure; 2 usage; 3 a backup input could
//! not be read completely (no snapshot written); 10 no repository; 11 repository locked;
//! 12 wrong password; 20 the repository is damaged (check findings, or data failed
//! verification); 21 restore incomplete; 130 interrupted.

#![forbid(unsafe_code)]

use cairn::Error;
use std::process::ExitCode;

fn exit_code(e: &Error) -> u8 {
    match e {
        Error::Usage(_) => 2,
        Error::InputUnreadable { .. } | Error::InputCommandFailed { .. } => 3,
        Error::NoRepository { .. } => 10,
        Error::Locked { .. } => 11,
        Error::WrongPassword => 12,
        Error::Damaged { .. } | Error::Corrupt { .. } | Error::Missing { .. } => 20,
        Error::RestoreIncomplete { .. } => 21,
        Error::Interrupted => 130,
        _ => 1,
    }
}

fn main() -> ExitCode {
    match cairn::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}
