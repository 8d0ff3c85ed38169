//! Key objects: the master key sealed under a password.
//!
//! Layout (166 bytes, all integers little-endian):
//! `magic "CAIRNKEY" (8) || version (1) = 1 || kdf (1) = 1 Argon2id v0x13 || m_cost u32 (KiB) ||
//! t_cost u32 || p_cost u32 || salt (32) || sealed master key (24 + 72 + 16)`.
//! The sealed part's associated data is every byte before it, so the parameters and salt cannot
//! be changed without the open failing. Several key objects may open one repository.

use crate::crypto::{self, KdfParams, MASTER_KEY_LEN, MasterKey, SEAL_OVERHEAD};
use crate::error::FormatError;

pub const KEY_MAGIC: &[u8; 8] = b"CAIRNKEY";
pub const KEY_VERSION: u8 = 1;
pub const KDF_ARGON2ID: u8 = 1;
const PREFIX_LEN: usize = 8 + 1 + 1 + 12 + 32;
pub const KEY_LEN: usize = PREFIX_LEN + MASTER_KEY_LEN + SEAL_OVERHEAD;

/// A key object's readable part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub params: KdfParams,
    pub salt: [u8; 32],
    pub sealed: Vec<u8>,
}

impl KeyFile {
    /// Seals `master` under `password` with a new random salt.
    pub fn create(master: &MasterKey, password: &[u8], params: KdfParams) -> Result<KeyFile, FormatError> {
        let salt = crypto::random_array();
        let kek = crypto::derive_kek(password, &salt, params)?;
        let mut kf = KeyFile { params, salt, sealed: Vec::new() };
        kf.sealed = crypto::seal(&kek, &kf.prefix(), master.to_bytes().as_ref());
        Ok(kf)
    }

    fn prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PREFIX_LEN);
        out.extend_from_slice(KEY_MAGIC);
        out.push(KEY_VERSION);
        out.push(KDF_ARGON2ID);
        out.extend_from_slice(&self.params.m_cost.to_le_bytes());
        out.extend_from_slice(&self.params.t_cost.to_le_bytes());
        out.extend_from_slice(&self.params.p_cost.to_le_bytes());
        out.extend_from_slice(&self.salt);
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.prefix();
        out.extend_from_slice(&self.sealed);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<KeyFile, FormatError> {
        if bytes.len() != KEY_LEN {
            return Err(FormatError::invalid("key", format!("{} bytes, expected {KEY_LEN}", bytes.len())));
        }
        if &bytes[..8] != KEY_MAGIC {
            return Err(FormatError::invalid("key", "not a cairn key object (bad magic)"));
        }
        if bytes[8] != KEY_VERSION {
            return Err(FormatError::UnsupportedVersion { what: "key", version: bytes[8], supported: KEY_VERSION });
        }
        if bytes[9] != KDF_ARGON2ID {
            return Err(FormatError::invalid("key", format!("unknown key derivation {}", bytes[9])));
        }
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let params = KdfParams { m_cost: u32_at(10), t_cost: u32_at(14), p_cost: u32_at(18) };
        params.validate()?;
        let mut salt = [0u8; 32];
        salt.copy_from_slice(&bytes[22..54]);
        Ok(KeyFile { params, salt, sealed: bytes[PREFIX_LEN..].to_vec() })
    }

    /// The master key, or `Authentication` if the password is not this key's.
    pub fn open(&self, password: &[u8]) -> Result<MasterKey, FormatError> {
        let kek = crypto::derive_kek(password, &self.salt, self.params)?;
        let plain = zeroize::Zeroizing::new(crypto::open(&kek, &self.prefix(), &self.sealed)?);
        MasterKey::from_bytes(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn create_open_and_wrong_password() {
        let master = MasterKey::generate();
        let kf = KeyFile::create(&master, b"pw", KdfParams::INSECURE_FOR_TESTS).unwrap();
        let bytes = kf.encode();
        assert_eq!(bytes.len(), KEY_LEN);
        let back = KeyFile::decode(&bytes).unwrap();
        assert_eq!(back.open(b"pw").unwrap().to_bytes().as_ref(), master.to_bytes().as_ref());
        assert_eq!(back.open(b"px").unwrap_err(), FormatError::Authentication);
        let mut tampered = bytes.clone();
        tampered[14] ^= 1; // t_cost
        assert!(KeyFile::decode(&tampered).and_then(|k| k.open(b"pw")).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = KeyFile::decode(&bytes);
        }
    }
}
