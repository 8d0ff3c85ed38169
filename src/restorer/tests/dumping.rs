//! dump's tests: a file's content in order across packs and bundles, stopping before a missing
//! or damaged blob, and run buffers reused without showing old bytes.

use super::*;

#[test]
fn find_node_and_dump() {
    let mut f = Fixture::new();
    let (root, _) = sample(&mut f);
    let repo = f.repo();
    for path in [&b"sub/deeper/file"[..], b"/sub/deeper/file", b"sub//./deeper/file"] {
        let n = find_node(repo, &root, path).unwrap();
        assert_eq!(n.name, b"file");
        let mut out = Vec::new();
        dump(repo, &n, &mut out).unwrap();
        assert_eq!(out, b"nested");
    }
    let mut out = Vec::new();
    dump(repo, &find_node(repo, &root, b"sparse").unwrap(), &mut out).unwrap();
    assert_eq!(out.len(), 2 * MIB + 6);
    assert_eq!(&out[MIB..MIB + 6], b"middle");
    assert_eq!(find_node(repo, &root, b"caf\xe9").unwrap().name, b"caf\xe9");
    for bad in [&b""[..], b"/", b"nope", b"hello.txt/x", b"sub/../hello.txt", b"sub/nope"] {
        assert!(matches!(find_node(repo, &root, bad), Err(Error::Usage(_))), "{}", String::from_utf8_lossy(bad));
    }
    let dir = find_node(repo, &root, b"sub").unwrap();
    assert!(matches!(dump(repo, &dir, &mut Vec::new()), Err(Error::Usage(_))));
}

#[test]
fn dump_keeps_order_across_packs_and_stops_at_a_missing_blob() {
    let mut f = Fixture::new();
    let mut content = Vec::new();
    let mut expect = Vec::new();
    // Bundles of three, packs of nine: a bundle may span two runs or two reads.
    for i in (0..40u32).step_by(3) {
        let parts: Vec<String> =
            (i..(i + 3).min(40)).map(|i| format!("part {i} ").repeat(1 + i as usize % 7)).collect();
        content.extend(f.bundle(&parts.iter().map(|p| p.as_bytes()).collect::<Vec<_>>()));
        parts.iter().for_each(|p| expect.extend_from_slice(p.as_bytes()));
        if i % 9 == 6 {
            f.flush(None);
        }
    }
    f.flush(None);
    // Blobs again, out of pack order, then an unknown one, then more.
    content.extend([content[3], content[1]]);
    let again: Vec<u8> =
        [3usize, 1].iter().flat_map(|&i| format!("part {i} ").repeat(1 + i % 7).into_bytes()).collect();
    expect.extend_from_slice(&again);
    let whole = node(b"f", NodeKind::File { content: content.clone() }, 0o100644, (1, 0));
    for workers in [1, 3] {
        let mut out = Vec::new();
        dump::dump_from(f.repo(), f.repo(), &whole, &mut out, workers).unwrap();
        assert_eq!(out, expect);
    }
    content.extend([BlobId(crate::id::Id([9; 32])), content[0]]);
    let broken = node(b"f", NodeKind::File { content }, 0o100644, (1, 0));
    let mut out = Vec::new();
    let err = dump(f.repo(), &broken, &mut out).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert_eq!(out, expect);
}

#[test]
fn dump_refuses_a_damaged_blob_before_writing_it() {
    let mut f = Fixture::new();
    let first = f.blob(BlobType::Data, b"first part;");
    let second = f.blob(BlobType::Data, b"second part");
    f.flush(Some(second));
    let n = node(b"f", NodeKind::File { content: vec![first, second] }, 0o100644, (1, 0));
    let mut out = Vec::new();
    let err = dump(f.repo(), &n, &mut out).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert_eq!(out, b"first part;");
    // Blobs after the damaged one, in its pack or another, are not written either.
    let third = f.blob(BlobType::Data, b"third part");
    f.flush(None);
    for workers in [1, 2] {
        let n = node(b"f", NodeKind::File { content: vec![first, second, first, third] }, 0o100644, (1, 0));
        let mut out = Vec::new();
        let err = dump::dump_from(f.repo(), f.repo(), &n, &mut out, workers).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(out, b"first part;");
    }
}

/// dump reuses a run's buffer without zeroing it: none of its old bytes may show, whether the
/// new run is shorter or longer than the old one, or stops at a damaged blob.
#[test]
fn a_reused_run_buffer_shows_none_of_its_old_bytes() {
    let mut f = Fixture::new();
    let good = f.bundle(&[b"one ", b"two ", b"three "]);
    let bad = f.bundle(&[b"four ", b"five "]);
    f.flush(Some(bad[1]));
    let run = |ids: &[BlobId]| dump::Run {
        blobs: ids.iter().map(|id| (*id, f.repo().locate_data(id).unwrap().unwrap())).collect(),
    };
    // One read buffer for all: each read overwrites a longer or shorter one before it.
    let (mut bundle, mut read) = (LastBundle::default(), ReadBuf::default());
    for stale in [vec![0xAA; 3], vec![0xAA; 1000]] {
        // Out of bundle order, so blobs land in the buffer out of order.
        let opened =
            dump::open_run(f.repo(), &run(&[good[2], good[0], good[1]]), stale.clone(), &mut read, &mut bundle);
        assert!(opened.failed.is_none());
        assert_eq!(opened.plain, b"three one two ");
        let opened = dump::open_run(f.repo(), &run(&[good[1], bad[0], good[0]]), stale, &mut read, &mut bundle);
        assert!(matches!(opened.failed, Some(Error::Corrupt { .. })));
        assert_eq!(opened.plain, b"two ");
    }
}
