//! Content-defined chunking: FastCDC (2020, normalization level 1) with the repository's secret
//! seed, so chunk boundaries do not reveal content, and with sizes from `RepoConfig` (one set
//! for file trees, one for streamed inputs).
//!
//! Inputs up to `max` bytes are read whole and cut in memory (FastCDC over a slice), avoiding a
//! stream buffer per small file; larger inputs stream through a buffer of twice `max` (at least
//! 1 MiB), so memory per input stays bounded whatever its size. Both cut where fastcdc's
//! `StreamCDC` does (a test holds them to it).

use crate::repo::config::ChunkerParams;
use fastcdc::v2020::{FastCDC, Normalization, cut_gear, get_gear_with_seed, select_masks};
use std::io::Read;

#[derive(Debug, Clone, Copy)]
pub struct Chunker {
    pub params: ChunkerParams,
    pub seed: u64,
}

impl Chunker {
    pub fn new(params: ChunkerParams, seed: u64) -> Self {
        Chunker { params, seed }
    }

    /// Calls `each` with every chunk of `input`, in order. `size_hint` is the expected size (a
    /// file's length), used only to choose the in-memory path. Returns the bytes read.
    pub fn chunk<R: Read, E: From<std::io::Error>>(
        &self,
        mut input: R,
        size_hint: Option<u64>,
        mut each: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (min, avg, max) = (self.params.min as usize, self.params.avg as usize, self.params.max as usize);
        if size_hint.is_some_and(|s| s <= max as u64) {
            let mut buf = Vec::with_capacity(size_hint.unwrap_or(0) as usize);
            input.read_to_end(&mut buf)?;
            if buf.len() <= max {
                let total = buf.len() as u64;
                if buf.len() <= min {
                    if !buf.is_empty() {
                        each(buf)?;
                    }
                    return Ok(total);
                }
                let cuts: Vec<(usize, usize)> =
                    FastCDC::with_level_and_seed(&buf, min, avg, max, Normalization::Level1, self.seed)
                        .map(|c| (c.offset, c.length))
                        .collect();
                for (offset, length) in cuts {
                    each(buf[offset..offset + length].to_vec())?;
                }
                return Ok(total);
            }
            // The input grew past `max` while we read it: stream the rest after what we have.
            return self.stream(std::io::Cursor::new(buf).chain(input), each);
        }
        self.stream(input, each)
    }

    /// Cuts a stream with a buffer of [`stream_buffer`] bytes: chunks are cut where they lie
    /// and copied out once, and the unconsumed tail (less than `max`) moves to the front only
    /// when the buffer's end is near. fastcdc's `StreamCDC` keeps a `max`-sized buffer and
    /// moves everything after each chunk to its front, about three bytes moved per byte of a
    /// large file at 1 MiB chunks: a large file's reader was the slowest stage of a backup
    /// while it lasted. Same cut points: `cut_gear` looks at most `max` bytes ahead, and it is
    /// always given `max` bytes or the rest of the input.
    fn stream<R: Read, E: From<std::io::Error>>(
        &self,
        mut input: R,
        mut each: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (min, avg, max) = (self.params.min as usize, self.params.avg as usize, self.params.max as usize);
        let (mask_s, mask_l) = select_masks(avg, Normalization::Level1);
        let (gear, gear_ls) = get_gear_with_seed(self.seed);
        let mut buf = vec![0u8; stream_buffer(max)];
        let (mut start, mut end, mut eof, mut total) = (0usize, 0usize, false, 0u64);
        loop {
            if !eof && end - start < max {
                if buf.len() - start < max {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                while !eof && end < buf.len() {
                    match input.read(&mut buf[end..]) {
                        Ok(0) => eof = true,
                        Ok(n) => end += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if start == end {
                return Ok(total);
            }
            let window = &buf[start..end];
            let (_, count) = cut_gear(window, min, avg, max, mask_s, mask_l, mask_s << 1, mask_l << 1, &gear, &gear_ls);
            // `cut_gear` cuts at least one byte of a non-empty window; stay total anyway.
            let count = count.clamp(1, window.len());
            each(window[..count].to_vec())?;
            start += count;
            total += count as u64;
        }
    }
}

/// A stream's buffer: twice the largest chunk, so the tail moves at most once per `max` bytes
/// cut, and at least 1 MiB, so small chunks (streams) take few reads and fewer moves.
fn stream_buffer(max: usize) -> usize {
    max.saturating_mul(2).max(1 << 20)
}

/// `n` bytes that neither compress nor repeat (xorshift), the same on every call: test input
/// for chunking and writing.
#[cfg(test)]
pub(crate) fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x = 0x1234_5678_u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::pseudo_random_bytes as data;
    use super::*;

    fn cut(c: &Chunker, input: &[u8], hint: Option<u64>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = c
            .chunk::<_, std::io::Error>(input, hint, |b| {
                out.push(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, input.len());
        out
    }

    /// A reader that hands out at most `step` bytes per read, varying.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 * 7 % 65_521 + 1;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Our stream loop cuts exactly where fastcdc's `StreamCDC` does (what earlier backups
    /// stored), for the stream and file defaults and across buffer moves and short reads.
    #[test]
    fn streams_cut_where_fastcdc_streamcdc_cuts() {
        use fastcdc::v2020::StreamCDC;
        for (params, len) in [(ChunkerParams::STREAMS, 3_000_000), (ChunkerParams::FILES, 21_000_000)] {
            let input = data(len);
            let c = Chunker::new(params, 99);
            let theirs: Vec<Vec<u8>> = StreamCDC::with_level_and_seed(
                &input[..],
                params.min as usize,
                params.avg as usize,
                params.max as usize,
                Normalization::Level1,
                99,
            )
            .map(|c| c.unwrap().data)
            .collect();
            assert!(theirs.len() > 10);
            assert_eq!(cut(&c, &input, None), theirs);
            let mut ours = Vec::new();
            c.chunk::<_, std::io::Error>(Trickle(&input, 1), None, |b| {
                ours.push(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn memory_and_stream_paths_cut_alike() {
        let c = Chunker::new(ChunkerParams { min: 4096, avg: 16384, max: 65536 }, 42);
        let input = data(60_000);
        let a = cut(&c, &input, Some(60_000));
        let b = cut(&c, &input, None);
        assert_eq!(a, b);
        assert_eq!(a.concat(), input);
        assert!(cut(&c, &[], Some(0)).is_empty());
        assert_eq!(cut(&c, b"tiny", Some(4)), vec![b"tiny".to_vec()]);
    }

    #[test]
    fn an_insert_changes_only_nearby_chunks() {
        let c = Chunker::new(ChunkerParams { min: 2048, avg: 8192, max: 32768 }, 7);
        let input = data(1_000_000);
        let mut edited = input.clone();
        edited.splice(500_000..500_000, b"hello".iter().copied());
        let a: std::collections::HashSet<Vec<u8>> = cut(&c, &input, None).into_iter().collect();
        let b = cut(&c, &edited, None);
        let new = b.iter().filter(|x| !a.contains(*x)).count();
        assert!(new <= 3, "{new} new chunks");
    }

    #[test]
    fn seed_moves_boundaries() {
        let p = ChunkerParams { min: 2048, avg: 8192, max: 32768 };
        let input = data(200_000);
        assert_ne!(cut(&Chunker::new(p, 1), &input, None), cut(&Chunker::new(p, 2), &input, None));
    }
}
