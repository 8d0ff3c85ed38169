//! `cairn dump ... > FILE` without the page cache.
//!
//! A dump is written once and not read again by cairn. Through the page cache, each of its
//! bytes is copied into a fresh page-cache page, to be flushed to disk later. On virtual
//! machines whose idle memory goes back to the host, those fresh pages are dear: the same 700 MB
//! dump took 1.9-2.3 s instead of 0.9 s when the machine had been busy just before. Written
//! directly it took 1.1-1.2 s then, and about what it takes through the page cache when memory
//! is warm. So when stdout is a regular file, the dump is written to it with `O_DIRECT`, in
//! aligned pieces, and only the last piece (its length need not be aligned) goes through the
//! page cache.
//!
//! The shell's open file is left alone: its flags are shared with the shell (and anything else
//! that holds it), so `O_DIRECT` is set on a file description of our own, opened through
//! `/proc/self/fd/N`. Pieces are written at the shell's offset onwards, and at the end the
//! shell's offset is moved past them, where a plain write would have left it. Used only when
//! stdout is a regular file, not in append mode, at an offset that is a multiple of [`ALIGN`];
//! a filesystem that refuses direct writes (tmpfs) gets the same pieces through the page cache.

use crate::backend::DIRECT_ALIGN as ALIGN;
use crossbeam_channel::{Receiver, Sender};
use rustix::fs::SeekFrom;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::thread::JoinHandle;

/// Bytes per direct write. A direct write waits for the device: at 1 MiB the disk of these
/// machines took 700 MB in 0.67 s, at 4 MiB in 0.53 s (`dd oflag=direct`).
const PIECE: usize = 4 << 20;
/// Piece buffers at most: one being filled, one waiting, one being written.
const BUFFERS: usize = 3;
/// Bytes per write through the page cache, once direct writes were refused: Linux sizes the
/// folios a buffered write allocates by its length, and large fresh folios are slow to fill
/// here (see `restorer::dump`'s `WRITE_PIECE`).
const BUFFERED_PIECE: usize = 1 << 20;

/// A piece of the output: `len` bytes at `buf[at..]` (`at` aligns them), for `offset` in the
/// file.
struct Piece {
    buf: Vec<u8>,
    at: usize,
    len: usize,
    offset: u64,
}

impl Piece {
    fn new(offset: u64) -> Option<Piece> {
        let buf = vec![0u8; PIECE + ALIGN];
        let at = buf.as_ptr().align_offset(ALIGN);
        (at + PIECE <= buf.len()).then_some(Piece { buf, at, len: 0, offset })
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.at..self.at + self.len]
    }
}

/// A writer to a regular file (stdout) that skips the page cache; see the module doc. A thread
/// of its own writes full pieces while the next fills, so that on a slow disk the dump's work
/// and the device's overlap instead of adding up (on these machines' disk, 4 MiB in about 1 ms,
/// it made no measurable difference). Nothing but full pieces reaches the file until
/// [`DirectOut::finish`], which waits for them and writes the rest (dropping it unfinished does
/// too, ignoring errors). `flush` does nothing, so that every piece but the last stays aligned.
pub(crate) struct DirectOut<'a> {
    /// The caller's file description: the last piece goes through it, and its offset is moved.
    shared: BorrowedFd<'a>,
    /// The piece being filled.
    piece: Piece,
    /// Full pieces to the writing thread, and their buffers back.
    full: Option<Sender<Piece>>,
    spare: Receiver<Piece>,
    buffers: usize,
    writer: Option<JoinHandle<io::Result<()>>>,
    finished: bool,
}

impl<'a> DirectOut<'a> {
    /// For an output of `len` bytes: `None` (write the ordinary way) unless it fills at least
    /// one piece (a shorter one would go through the page cache whole anyway, after a thread
    /// and a piece buffer were set up for nothing), and `fd` is a regular file open for writing,
    /// not in append mode, at an aligned offset, of which a second description opens with
    /// `O_DIRECT`.
    #[cfg(target_os = "linux")]
    pub(crate) fn new(fd: BorrowedFd<'a>, len: u64) -> Option<DirectOut<'a>> {
        use rustix::fs::{FileType, OFlags};
        use std::os::unix::fs::OpenOptionsExt;
        if len < PIECE as u64 {
            return None;
        }
        let st = rustix::fs::fstat(fd).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return None;
        }
        let flags = rustix::fs::fcntl_getfl(fd).ok()?;
        let writable = matches!(flags & OFlags::ACCMODE, OFlags::WRONLY | OFlags::RDWR);
        if !writable || flags.contains(OFlags::APPEND) {
            return None;
        }
        let offset = rustix::fs::seek(fd, SeekFrom::Current(0)).ok()?;
        if !offset.is_multiple_of(ALIGN as u64) {
            return None;
        }
        let direct = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(OFlags::DIRECT.bits() as i32)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .ok()?;
        // The same file, not whatever the name leads to now.
        let again = rustix::fs::fstat(&direct).ok()?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return None;
        }
        let piece = Piece::new(offset)?;
        let buffered = fd.try_clone_to_owned().ok()?;
        let (full, pieces) = crossbeam_channel::bounded::<Piece>(1);
        let (give_back, spare) = crossbeam_channel::unbounded::<Piece>();
        let writer = std::thread::Builder::new()
            .name("cairn-dump-write".into())
            .spawn(move || write_pieces(direct, buffered, pieces, give_back))
            .ok()?;
        Some(DirectOut {
            shared: fd,
            piece,
            full: Some(full),
            spare,
            buffers: 1,
            writer: Some(writer),
            finished: false,
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn new(_fd: BorrowedFd<'a>, _len: u64) -> Option<DirectOut<'a>> {
        None
    }

    /// Waits for the full pieces, writes the rest and leaves the caller's offset after it.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.finish_inner()
    }

    fn finish_inner(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        self.stop_writer()?;
        write_buffered(self.shared, self.piece.bytes(), self.piece.offset)?;
        let end = self.piece.offset + self.piece.len as u64;
        rustix::fs::seek(self.shared, SeekFrom::Start(end))?;
        Ok(())
    }

    /// Lets the writing thread finish its pieces; its error, if it stopped on one.
    fn stop_writer(&mut self) -> io::Result<()> {
        drop(self.full.take());
        match self.writer.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(io::Error::other("the dump's writing thread panicked")),
        }
    }

    /// Hands the full piece to the writing thread and starts the next.
    fn send_piece(&mut self) -> io::Result<()> {
        let next_offset = self.piece.offset + self.piece.len as u64;
        let next = match self.spare.try_recv() {
            Ok(p) => Some(p),
            Err(_) if self.buffers < BUFFERS => {
                self.buffers += 1;
                Some(Piece::new(next_offset).ok_or_else(|| io::Error::other("no aligned buffer"))?)
            }
            Err(_) => self.spare.recv().ok(),
        };
        let sent = match (next, &self.full) {
            (Some(mut next), Some(full)) => {
                next.len = 0;
                next.offset = next_offset;
                full.send(std::mem::replace(&mut self.piece, next)).is_ok()
            }
            _ => false,
        };
        if sent {
            return Ok(());
        }
        // The writing thread stopped: its error says why.
        self.stop_writer()?;
        Err(io::Error::other("the dump's writing thread stopped"))
    }
}

/// The writing thread: each piece directly, or through the page cache once the filesystem
/// refused a direct write (over whatever part of that piece was written).
fn write_pieces(direct: File, buffered: OwnedFd, pieces: Receiver<Piece>, give_back: Sender<Piece>) -> io::Result<()> {
    let mut direct = Some(direct);
    for piece in pieces {
        let written = match &direct {
            Some(file) => file.write_all_at(piece.bytes(), piece.offset),
            None => write_buffered(buffered.as_fd(), piece.bytes(), piece.offset),
        };
        match written {
            Ok(()) => {}
            Err(e) if direct.is_some() && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                direct = None;
                write_buffered(buffered.as_fd(), piece.bytes(), piece.offset)?;
            }
            Err(e) => return Err(e),
        }
        let _ = give_back.send(piece);
    }
    Ok(())
}

impl Write for DirectOut<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Err(io::Error::other("writing after the dump was finished"));
        }
        let p = &mut self.piece;
        let n = data.len().min(PIECE - p.len);
        let to = p.at + p.len;
        p.buf[to..to + n].copy_from_slice(&data[..n]);
        p.len += n;
        if p.len == PIECE {
            self.send_piece()?;
        }
        Ok(n)
    }

    /// Nothing: a partial piece would leave the next one unaligned. [`DirectOut::finish`]
    /// writes it.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectOut<'_> {
    fn drop(&mut self) {
        let _ = self.finish_inner();
    }
}

/// `pwrite`s all of `data` at `offset` through the page cache, a [`BUFFERED_PIECE`] at a time.
fn write_buffered(fd: BorrowedFd<'_>, data: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0usize;
    while done < data.len() {
        let end = data.len().min(done + BUFFERED_PIECE);
        match rustix::io::pwrite(fd.as_fd(), &data[done..end], offset + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::pseudo_random_bytes as data;
    use std::io::Read;

    /// Whole pieces, a tail, odd write sizes: the file holds exactly the bytes, after what was
    /// there before the offset, and the caller's offset ends after them.
    #[test]
    fn writes_land_at_the_callers_offset_and_move_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut file = File::create(&path).unwrap();
        let head = vec![7u8; ALIGN];
        file.write_all(&head).unwrap();
        let body = data(2 * PIECE + 12_345);
        let mut out = DirectOut::new(file.as_fd(), body.len() as u64).expect("a regular file at an aligned offset");
        for part in body.chunks(999_983) {
            out.write_all(part).unwrap();
        }
        out.flush().unwrap();
        out.finish().unwrap();
        file.write_all(b"after").unwrap();
        drop(file);
        let mut all = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), head.len() + body.len() + 5);
        assert!(all[..ALIGN] == head[..] && all[ALIGN..ALIGN + body.len()] == body[..] && all.ends_with(b"after"));
    }

    /// Dropping it unfinished (an error path) still writes what it holds.
    #[test]
    fn a_dropped_writer_writes_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let body = data(PIECE + 100);
        let mut out = DirectOut::new(file.as_fd(), body.len() as u64).unwrap();
        out.write_all(&body).unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), body);
    }

    /// A direct write the filesystem refuses (here: a piece one byte off alignment, which Linux
    /// answers with `EINVAL` on ext4) is written again through the page cache, and so is the
    /// rest.
    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = File::create(&path).unwrap();
        let direct =
            std::fs::OpenOptions::new().write(true).custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32).open(&path);
        let Ok(direct) = direct else { return }; // no O_DIRECT at all here: nothing to fall back from
        let body = data(3 * ALIGN);
        let (full, pieces) = crossbeam_channel::bounded::<Piece>(2);
        let (give_back, spare) = crossbeam_channel::unbounded::<Piece>();
        for (i, part) in body.chunks(2 * ALIGN).enumerate() {
            let mut buf = vec![0u8; 3 * ALIGN];
            let at = buf.as_ptr().align_offset(ALIGN) + 1;
            buf[at..at + part.len()].copy_from_slice(part);
            full.send(Piece { buf, at, len: part.len(), offset: (i * 2 * ALIGN) as u64 }).unwrap();
        }
        drop(full);
        write_pieces(direct, file.as_fd().try_clone_to_owned().unwrap(), pieces, give_back).unwrap();
        assert_eq!(spare.len(), 2, "both buffers come back");
        assert_eq!(std::fs::read(&path).unwrap(), body);
    }

    /// Not for pipes, read-only descriptors, append mode, unaligned offsets or outputs shorter
    /// than a piece: those are written the ordinary way.
    #[test]
    fn only_regular_files_at_aligned_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let long = PIECE as u64;
        let mut file = File::create(&path).unwrap();
        assert!(DirectOut::new(file.as_fd(), long - 1).is_none());
        drop(DirectOut::new(file.as_fd(), long).expect("a regular file at offset 0, a piece long"));
        file.write_all(b"x").unwrap();
        assert!(DirectOut::new(file.as_fd(), long).is_none());
        let appending = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        assert!(DirectOut::new(appending.as_fd(), long).is_none());
        let read_only = File::open(&path).unwrap();
        assert!(DirectOut::new(read_only.as_fd(), long).is_none());
        let (_reader, writer) = std::io::pipe().unwrap();
        assert!(DirectOut::new(writer.as_fd(), long).is_none());
    }
}
