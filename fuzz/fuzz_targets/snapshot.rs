//! Fuzzes `Snapshot::decode` (the opened plaintext of a snapshot object).
//!
//! Asserts no panic, also in what `snapshots` and `restore` do with a decoded snapshot next
//! (format its time, match filters, select `latest`), and that it survives encode -> decode.

#![no_main]

use cairn::id::{Id, SnapshotId};
use cairn::snapshot::{Filter, Snapshot, select};
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(snap) = Snapshot::decode(input) else {
        return;
    };
    let _ = snap.time_string();
    let filter = Filter { hosts: vec![snap.host.clone()], tags: snap.tags.clone(), paths: snap.paths.clone() };
    assert!(filter.matches(&snap), "a snapshot does not match its own host, tags and paths");
    let id = SnapshotId(Id::of_stored(input));
    let all = [(id, snap.clone())];
    match select(&all, "latest", &filter) {
        Ok((found, _)) => assert_eq!(found, id),
        Err(e) => panic!("latest of one snapshot not selected: {e}"),
    }
    assert!(select(&all, &id.short(), &Filter::default()).is_ok(), "id prefix not selected");
    assert_round_trip("snapshot", &snap, Snapshot::encode, Snapshot::decode);
});
