//! The key schedule and the AEAD. The only module that knows how keys are made and used.
//!
//! A repository has one [`MasterKey`], drawn at random by `init`: a 32-byte sealing key for
//! XChaCha20-Poly1305, a separate 32-byte key for keyed-BLAKE3 blob ids, and the 64-bit chunker
//! seed. [`seal`] draws a fresh random 24-byte nonce itself; no function takes a nonce, so
//! callers cannot reuse one. Keys are zeroed on drop and have no `Debug` that shows them.

use crate::error::FormatError;
use crate::id::BlobId;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the serialized master key: sealing key, id key, chunker seed.
pub const MASTER_KEY_LEN: usize = 32 + 32 + 8;

/// Random bytes from the operating system. A machine without randomness cannot make safe
/// nonces; aborting is the only safe answer there, so this is the one place that may panic.
pub fn random_array<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    seal_key: [u8; 32],
    id_key: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        MasterKey { seal_key: random_array(), id_key: random_array(), chunker_seed: u64::from_le_bytes(random_array()) }
    }

    /// `seal_key || id_key || chunker_seed (u64 LE)`, as sealed inside key objects.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; MASTER_KEY_LEN]> {
        let mut out = zeroize::Zeroizing::new([0u8; MASTER_KEY_LEN]);
        out[..32].copy_from_slice(&self.seal_key);
        out[32..64].copy_from_slice(&self.id_key);
        out[64..].copy_from_slice(&self.chunker_seed.to_le_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() != MASTER_KEY_LEN {
            return Err(FormatError::invalid(
                "master key",
                format!("{} bytes, expected {MASTER_KEY_LEN}", bytes.len()),
            ));
        }
        let mut key = MasterKey { seal_key: [0; 32], id_key: [0; 32], chunker_seed: 0 };
        key.seal_key.copy_from_slice(&bytes[..32]);
        key.id_key.copy_from_slice(&bytes[32..64]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&bytes[64..]);
        key.chunker_seed = u64::from_le_bytes(seed);
        Ok(key)
    }

    /// The keyed BLAKE3 hash of a blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> BlobId {
        BlobId(crate::id::Id(*blake3::keyed_hash(&self.id_key, plaintext).as_bytes()))
    }

    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal(&self.seal_key, aad, plaintext)
    }

    /// [`seal`](Self::seal) of the concatenation of `parts`, without building it first.
    pub fn seal_parts(&self, aad: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        seal_parts(&self.seal_key, aad, parts)
    }

    /// `prefix ||` [`seal`](Self::seal)`(plaintext)`, built in one buffer.
    pub fn seal_after(&self, aad: &[u8], prefix: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_after(&self.seal_key, aad, prefix, &[plaintext])
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
        open(&self.seal_key, aad, sealed)
    }

    /// [`open`](Self::open) into `plain` (cleared first), reusing its allocation.
    pub fn open_to(&self, aad: &[u8], sealed: &[u8], plain: &mut Vec<u8>) -> Result<(), FormatError> {
        open_to(&self.seal_key, aad, sealed, plain)
    }
}

/// `nonce[24] || ciphertext || tag[16]`, with a fresh random nonce.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    seal_parts(key, aad, &[plaintext])
}

/// [`seal`] of the concatenation of `parts`: each is copied once, into the message, which is
/// then encrypted in place.
pub fn seal_parts(key: &[u8; 32], aad: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    seal_after(key, aad, &[], parts)
}

/// `prefix || seal(concatenation of parts)` in one allocation: an envelope's version byte goes
/// in front without copying the sealed message again.
pub fn seal_after(key: &[u8; 32], aad: &[u8], prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE_LEN] = random_array();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(prefix.len() + len + SEAL_OVERHEAD);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&nonce);
    for part in parts {
        out.extend_from_slice(part);
    }
    let body = prefix.len() + NONCE_LEN;
    let tag = match cipher.encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut out[body..]).into()) {
        Ok(tag) => tag,
        // Only messages over 256 GiB fail; nothing cairn seals comes near that.
        Err(_) => unreachable_seal(),
    };
    out.extend_from_slice(tag.as_slice());
    out
}

#[cold]
fn unreachable_seal() -> ! {
    #[allow(clippy::panic)]
    {
        panic!("XChaCha20-Poly1305 refused a message far below its size limit")
    }
}

/// Opens what [`seal`] made; fails if a byte, the key or the associated data differ.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut plain = Vec::new();
    open_to(key, aad, sealed, &mut plain)?;
    Ok(plain)
}

/// [`open`] into `plain`, which is cleared first; on failure it holds no plaintext (only
/// ciphertext or nothing).
pub fn open_to(key: &[u8; 32], aad: &[u8], sealed: &[u8], plain: &mut Vec<u8>) -> Result<(), FormatError> {
    plain.clear();
    if sealed.len() < SEAL_OVERHEAD {
        return Err(FormatError::Truncated { needed: SEAL_OVERHEAD as u64, available: sealed.len() as u64 });
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    plain.extend_from_slice(ciphertext);
    let nonce = XNonce::try_from(nonce).map_err(|_| FormatError::Authentication)?;
    let tag = Tag::try_from(tag).map_err(|_| FormatError::Authentication)?;
    cipher
        .decrypt_inout_detached(&nonce, aad, plain.as_mut_slice().into(), &tag)
        .map_err(|_| FormatError::Authentication)
}

/// Argon2id parameters of a key object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl KdfParams {
    /// 46 MiB, 2 passes, 2 lanes: twice OWASP's first recommended Argon2id setting (46 MiB, one
    /// pass). The two lanes run on two cores (Argon2's `parallel` feature): the same memory and
    /// work for a guesser, 65-70 ms instead of 85-90 here. Every command pays it, and its memory
    /// is most of the peak of `check` and of a backup that changed nothing, so it is not higher.
    pub const DEFAULT: KdfParams = KdfParams { m_cost: 46 * 1024, t_cost: 2, p_cost: 2 };
    /// For tests only: the cheapest parameters Argon2 accepts.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { m_cost: 8, t_cost: 1, p_cost: 1 };
    /// Key objects asking for more than this are refused rather than exhausting memory.
    pub const MAX_M_COST: u32 = 4 * 1024 * 1024;
    pub const MAX_T_COST: u32 = 64;
    pub const MAX_P_COST: u32 = 16;

    pub fn validate(&self) -> Result<(), FormatError> {
        if self.m_cost > Self::MAX_M_COST || self.t_cost > Self::MAX_T_COST || self.p_cost > Self::MAX_P_COST {
            return Err(FormatError::invalid("key", "Argon2id parameters over cairn's limits"));
        }
        argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map(|_| ())
            .map_err(|e| FormatError::invalid("key", format!("Argon2id parameters: {e}")))
    }
}

/// Derives the 32-byte key-encryption key from a password with Argon2id (version 0x13).
pub fn derive_kek(
    password: &[u8],
    salt: &[u8; 32],
    params: KdfParams,
) -> Result<zeroize::Zeroizing<[u8; 32]>, FormatError> {
    params.validate()?;
    let p = argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| FormatError::invalid("key", format!("Argon2id parameters: {e}")))?;
    let blocks = p.block_count();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    // The argon2 crate's own allocation of its memory is zeroed by one thread (its blocks are
    // over-aligned, so there is no calloc), which faulted in 46 MiB page by page: 40-50 ms of a
    // 300 ms unchanged backup. Zeroed on every core instead.
    let mut memory: Vec<argon2::Block> = Vec::new();
    {
        use rayon::prelude::*;
        (0..blocks).into_par_iter().map(|_| argon2::Block::new()).collect_into_vec(&mut memory);
    }
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(password, salt, out.as_mut(), memory.as_mut_slice())
        .map_err(|e| FormatError::invalid("key", format!("Argon2id: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_kek_is_argon2id_as_the_crate_computes_it() {
        let params = KdfParams { m_cost: 256, t_cost: 2, p_cost: 2 };
        let p = argon2::Params::new(256, 2, 2, Some(32)).unwrap();
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut expected = [0u8; 32];
        argon.hash_password_into(b"pw", &[9; 32], &mut expected).unwrap();
        assert_eq!(*derive_kek(b"pw", &[9; 32], params).unwrap(), expected);
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..4096), aad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let key = MasterKey::generate();
            let sealed = key.seal(&aad, &data);
            prop_assert_eq!(sealed.len(), data.len() + SEAL_OVERHEAD);
            prop_assert_eq!(key.open(&aad, &sealed).unwrap(), data);
        }

        #[test]
        fn sealed_parts_open_as_their_concatenation(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5)) {
            let key = MasterKey::generate();
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let sealed = key.seal_parts(b"aad", &slices);
            prop_assert_eq!(key.open(b"aad", &sealed).unwrap(), parts.concat());
        }

        #[test]
        fn sealed_after_a_prefix_opens_past_it(prefix in proptest::collection::vec(any::<u8>(), 0..8), data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let key = MasterKey::generate();
            let out = key.seal_after(b"aad", &prefix, &data);
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(key.open(b"aad", &out[prefix.len()..]).unwrap(), data);
        }
    }

    #[test]
    fn any_flipped_bit_or_wrong_aad_fails() {
        let key = MasterKey::generate();
        let sealed = key.seal(b"aad", b"hello world");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(key.open(b"aad", &bad), Err(FormatError::Authentication));
        }
        assert_eq!(key.open(b"aab", &sealed), Err(FormatError::Authentication));
        assert!(MasterKey::generate().open(b"aad", &sealed).is_err());
        assert!(key.open(b"aad", &sealed[..10]).is_err());
    }

    #[test]
    fn master_key_bytes_round_trip() {
        let key = MasterKey::generate();
        let back = MasterKey::from_bytes(key.to_bytes().as_ref()).unwrap();
        assert_eq!(key.to_bytes().as_ref(), back.to_bytes().as_ref());
        assert!(MasterKey::from_bytes(&[0; 5]).is_err());
    }
}
