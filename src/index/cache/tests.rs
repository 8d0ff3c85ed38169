//! The index cache's tests.

use super::*;
use crate::index::file::IndexPack;
use crate::pack::PackBlob;

fn file(pack: u8, blobs: &[u8]) -> IndexFile {
    IndexFile {
        packs: vec![IndexPack {
            id: PackId(Id([pack; 32])),
            blobs: blobs
                .iter()
                .map(|b| PackBlob {
                    kind: BlobType::Data,
                    id: BlobId(Id([*b; 32])),
                    offset: u32::from(*b),
                    length: 50,
                    raw_offset: u32::from(*b) % 3,
                    raw_length: 7,
                })
                .collect(),
        }],
    }
}

#[test]
fn sync_adds_new_and_rebuilds_when_an_index_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = IndexCache::open(dir.path()).unwrap();
    let (a, b) = (IndexId(Id([1; 32])), IndexId(Id([2; 32])));
    let load = |id: &IndexId| Ok(if *id == a { file(10, &[1, 2]) } else { file(20, &[3]) });
    assert!(c.sync(&[a, b], load).unwrap().is_empty());
    assert_eq!(c.lookup(BlobType::Data, &BlobId(Id([3; 32]))).unwrap().unwrap().pack, PackId(Id([20; 32])));
    assert_eq!(c.lookup(BlobType::Tree, &BlobId(Id([3; 32]))).unwrap(), None);
    assert!(c.sync(&[a, b], load).unwrap().is_empty());
    // index b removed from the repository: rebuilt, and blob 3 is gone
    assert!(c.sync(&[a], load).unwrap().is_empty());
    assert_eq!(c.lookup(BlobType::Data, &BlobId(Id([3; 32]))).unwrap(), None);
    assert!(c.lookup(BlobType::Data, &BlobId(Id([1; 32]))).unwrap().is_some());
}

#[test]
fn lookup_many_answers_in_the_callers_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = IndexCache::open(dir.path()).unwrap();
    let stored: Vec<u8> = (0..=255u8).filter(|b| b % 3 != 0).collect();
    let a = IndexId(Id([1; 32]));
    assert!(c.sync(&[a], |_| Ok(file(10, &stored))).unwrap().is_empty());
    // Unsorted, with repeats and misses, longer than one RocksDB batch.
    let ids: Vec<BlobId> = (0..5000).map(|i| BlobId(Id([(i * 7919 % 256) as u8; 32]))).collect();
    let many = c.lookup_many(BlobType::Data, &ids).unwrap();
    assert_eq!(many.len(), ids.len());
    for (id, got) in ids.iter().zip(&many) {
        assert_eq!(*got, c.lookup(BlobType::Data, id).unwrap(), "{id:?}");
        assert_eq!(got.is_some(), id.as_bytes()[0] % 3 != 0);
    }
    assert!(c.lookup_many(BlobType::Tree, &ids).unwrap().iter().all(Option::is_none));
    // Large enough to be cut into stretches looked up on several threads.
    let many_ids: Vec<BlobId> = (0..PARALLEL_MIN * 3).map(|i| BlobId(Id([(i * 31 % 256) as u8; 32]))).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let found = pool.install(|| c.lookup_many(BlobType::Data, &many_ids)).unwrap();
    for (id, got) in many_ids.iter().zip(&found) {
        assert_eq!(got.is_some(), id.as_bytes()[0] % 3 != 0, "{id:?}");
    }
    // Far apart (seeks rather than steps), and past the last key.
    let far: Vec<BlobId> = [250u8, 1, 0, 255, 254].iter().map(|b| BlobId(Id([*b; 32]))).collect();
    let found: Vec<bool> = c.lookup_many(BlobType::Data, &far).unwrap().iter().map(Option::is_some).collect();
    assert_eq!(found, [true, true, false, false, true]);
}

#[test]
fn stored_between_scales_with_the_span_of_the_ids() {
    let key = |first: u8| blob_key(BlobType::Data, &BlobId(Id([first; 32])));
    assert_eq!(stored_between(1000, &[]), 1000);
    assert_eq!(stored_between(1000, &[key(7), key(7)]), 0);
    let half = stored_between(1000, &[key(0), key(0x80)]);
    assert!((495..=505).contains(&half), "{half}");
    assert_eq!(stored_between(1000, &[key(0), key(0xff)]), 1000);
}

#[test]
fn reopening_does_not_pile_up_empty_logs() {
    let dir = tempfile::tempdir().unwrap();
    let logs = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
            .count()
    };
    let (a, b) = (IndexId(Id([1; 32])), IndexId(Id([2; 32])));
    let load = |id: &IndexId| Ok(if *id == a { file(10, &[1, 2]) } else { file(20, &[3]) });
    IndexCache::open(dir.path()).unwrap().sync(&[a, b], load).unwrap();
    for _ in 0..5 {
        let c = IndexCache::open(dir.path()).unwrap();
        assert!(c.lookup(BlobType::Data, &BlobId(Id([3; 32]))).unwrap().is_some());
    }
    assert!(logs() <= 2, "{} write-ahead logs after 6 opens", logs());
}

#[test]
fn damaged_cache_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("CURRENT"), b"garbage").unwrap();
    let c = IndexCache::open(dir.path()).unwrap();
    assert!(c.mirrored().unwrap().is_empty());
}
