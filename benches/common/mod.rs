//! Shared bench inputs. `cargo test --all-targets` runs benches once as smoke tests, so big
//! set-ups are sized down unless criterion was started by `cargo bench` (which passes `--bench`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub fn full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

#[path = "../../tests/common/bytes.rs"]
mod bytes;
pub use bytes::random_bytes;

/// Text-like bytes that compress about 3:1, like source files and SQL dumps.
pub fn text_bytes(seed: u64, n: usize) -> Vec<u8> {
    let words: Vec<&[u8]> = vec![
        b"insert ",
        b"into ",
        b"values ",
        b"(42, ",
        b"'alice', ",
        b"2026-11-23",
        b");\n",
        b"select ",
        b"copy ",
        b"\t",
    ];
    let r = random_bytes(seed, n / 4 + 8);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        let w = words[usize::from(r[i % r.len()]) % words.len()];
        out.extend_from_slice(w);
        out.push(r[(i + 1) % r.len()] % 26 + b'a');
        i += 2;
    }
    out.truncate(n);
    out
}
