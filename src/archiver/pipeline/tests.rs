//! The pipeline's own pieces: pack buffers handed back, batches cut into bundles, the dedup set
//! after an index object is saved.

use super::*;

/// An uploaded pack's buffer comes back to the packer whole: same allocation, same capacity.
#[test]
fn pack_buffers_are_handed_back_without_a_copy() {
    let (tx, rx) = bounded::<Vec<u8>>(1);
    let mut buf = pack_buffer(&rx, 1 << 20);
    buf.extend_from_slice(b"a finished pack");
    let (ptr, capacity) = (buf.as_ptr(), buf.capacity());
    let bytes = bytes::Bytes::from(buf);
    let held = bytes.clone();
    let bytes = bytes.try_into_mut().unwrap_err(); // still held: not handed back
    drop(held);
    tx.try_send(Vec::from(bytes.try_into_mut().unwrap())).unwrap();
    let again = pack_buffer(&rx, 1 << 20);
    assert_eq!((again.as_ptr(), again.capacity(), again.len()), (ptr, capacity, 0));
    // A spare too small for the pack size is not used.
    tx.try_send(Vec::with_capacity(10)).unwrap();
    assert!(pack_buffer(&rx, 1 << 20).capacity() >= 1 << 20);
}

/// Data blobs are bundled up to the size, a larger one alone; trees and format 1 alone.
#[test]
fn batches_are_cut_into_bundles() {
    use crate::id::Id;
    let job = |kind, len: usize| Job { kind, id: BlobId(Id([len as u8; 32])), data: vec![0; len] };
    let (d, t) = (BlobType::Data, BlobType::Tree);
    let batch =
        vec![job(d, 40), job(d, 60), job(d, 1), job(d, 200), job(d, 30), job(t, 5), job(t, 5), job(d, 10), job(d, 100)];
    assert_eq!(bundles(&batch, Sealing::Bundles, 100), vec![0..2, 2..3, 3..4, 4..5, 5..6, 6..7, 7..8, 8..9]);
    assert_eq!(bundles(&batch, Sealing::Bundles, 101), vec![0..3, 3..4, 4..5, 5..6, 6..7, 7..8, 8..9]);
    assert_eq!(bundles(&batch, Sealing::Bundles, 0).len(), batch.len());
    assert_eq!(bundles(&batch, Sealing::Single, 1 << 20).len(), batch.len());
    assert!(bundles(&[], Sealing::Bundles, 100).is_empty());
}

/// Once an index object is saved its blobs leave the dedup set, and the index answers for
/// them: the set holds only blobs not yet indexed.
#[test]
fn indexed_blobs_leave_the_dedup_set_and_stay_known() {
    use crate::id::{Id, PackId};
    use crate::pack::PackBlob;
    let t = crate::repo::testing::memory_repo();
    let shared = Shared::default();
    let ids: Vec<BlobId> = (0..3u8).map(|i| BlobId(Id([i; 32]))).collect();
    shared.queued.lock().unwrap().extend(ids.iter().map(|id| (BlobType::Data, *id)));
    let blobs = ids[..2]
        .iter()
        .map(|id| PackBlob { kind: BlobType::Data, id: *id, offset: 0, length: 40, raw_offset: 0, raw_length: 1 })
        .collect();
    let file = IndexFile { packs: vec![IndexPack { id: PackId(Id([9; 32])), blobs }] };
    save_index(&t.repo, &file, &shared).unwrap();
    assert_eq!(*shared.queued.lock().unwrap(), HashSet::from([(BlobType::Data, ids[2])]));
    let sub = Submitter { repo: &t.repo, jobs: bounded(1).0, shared: Arc::new(shared) };
    for id in &ids {
        assert!(!sub.is_new(BlobType::Data, id).unwrap(), "{id:?} counted as new");
    }
    assert!(sub.is_new(BlobType::Data, &BlobId(Id([7; 32]))).unwrap());
}
