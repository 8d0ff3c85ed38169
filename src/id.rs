//! Ids: 32 bytes, shown as 64 lowercase hex digits. Typed wrappers keep a [`PackId`] from being
//! passed where a [`BlobId`] is wanted.
//!
//! Blob ids are keyed BLAKE3 hashes of plaintext (see `crypto.rs`); pack, index and snapshot ids
//! are plain BLAKE3 hashes of the stored bytes, so anyone can verify storage integrity by name.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        s
    }

    pub fn from_hex(s: &str) -> Option<Id> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Id(out))
    }

    /// The first 8 hex digits, as shown in listings.
    pub fn short(&self) -> String {
        let mut s = self.to_hex();
        s.truncate(8);
        s
    }

    /// Plain (unkeyed) BLAKE3 of stored bytes: the name of packs, index objects and snapshots.
    pub fn of_stored(bytes: &[u8]) -> Id {
        Id(*blake3::hash(bytes).as_bytes())
    }

    pub fn random() -> Id {
        Id(crate::crypto::random_array())
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
            }
            pub fn short(&self) -> String {
                self.0.short()
            }
            pub fn from_hex(s: &str) -> Option<Self> {
                Id::from_hex(s).map($name)
            }
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.short())
            }
        }
    };
}

typed_id!(
    /// Keyed BLAKE3 of a blob's plaintext.
    BlobId
);
typed_id!(
    /// BLAKE3 of a pack's stored bytes.
    PackId
);
typed_id!(
    /// BLAKE3 of an index object's stored bytes.
    IndexId
);
typed_id!(
    /// BLAKE3 of a snapshot object's stored bytes.
    SnapshotId
);
typed_id!(
    /// BLAKE3 of a key object's stored bytes.
    KeyId
);
typed_id!(
    /// A random id naming a lock object.
    LockId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let id = Id(bytes);
            prop_assert_eq!(Id::from_hex(&id.to_hex()), Some(id));
        }
    }

    #[test]
    fn rejects_bad_hex() {
        assert_eq!(Id::from_hex("zz"), None);
        assert_eq!(Id::from_hex(&"A".repeat(64)), None);
        assert_eq!(Id::from_hex(&"0".repeat(63)), None);
    }
}
