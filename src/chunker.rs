//! Content-defined chunking: FastCDC (2020, normalization level 1) with the repository's secret
//! seed, so chunk boundaries do not reveal content, and with sizes from `RepoConfig` (one set
//! for file trees, one for streamed inputs).
//!
//! Inputs up to `max` bytes are read whole and cut in memory (FastCDC over a slice), avoiding a
//! `max`-sized stream buffer per small file; larger inputs stream through `StreamCDC`, so memory
//! per input stays at `max` bytes whatever its size. Both cut at the same points.

use crate::repo::config::ChunkerParams;
use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};
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

    fn stream<R: Read, E: From<std::io::Error>>(
        &self,
        input: R,
        mut each: impl FnMut(Vec<u8>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let (min, avg, max) = (self.params.min as usize, self.params.avg as usize, self.params.max as usize);
        let mut total = 0u64;
        for chunk in StreamCDC::with_level_and_seed(input, min, avg, max, Normalization::Level1, self.seed) {
            let chunk = chunk.map_err(std::io::Error::from)?;
            total += chunk.length as u64;
            each(chunk.data)?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
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
