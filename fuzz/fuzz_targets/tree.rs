//! Fuzzes `Tree::decode` (the plaintext of a tree blob).
//!
//! Asserts no panic, and for accepted inputs: every name is one safe path component, names are
//! strictly sorted (so `find` locates every node and `canonical` changes nothing), and the tree
//! survives encode -> decode.

#![no_main]

use cairn::tree::{Tree, valid_name};
use cairn_fuzz::assert_round_trip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(tree) = Tree::decode(input) else {
        return;
    };
    for (i, node) in tree.nodes.iter().enumerate() {
        assert!(valid_name(&node.name), "unsafe name accepted: {:?}", node.name);
        assert!(!node.name.contains(&b'/') && node.name != b".." && node.name != b".");
        if i > 0 {
            assert!(tree.nodes[i - 1].name < node.name, "names not strictly sorted");
        }
        assert_eq!(tree.find(&node.name), Some(node), "find misses a node");
    }
    match Tree::canonical(tree.nodes.clone()) {
        Ok(c) => assert_eq!(c, tree),
        Err(e) => panic!("a decoded tree is not canonical: {e}"),
    }
    assert_round_trip("tree", &tree, Tree::encode, Tree::decode);
});
