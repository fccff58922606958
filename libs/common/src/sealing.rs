//! Secrets the services keep in Postgres (the gateway's token signing keys, A2A push-notification
//! credentials, the tokens of workflow nodes that call remote agents and tools), sealed with
//! ChaCha20-Poly1305 under a key derived (SHA-256) from a configured key-encryption secret.
//!
//! Each sealed value is bound to what it belongs to by its associated data (a key id; a tenant,
//! a row and a field), so a ciphertext copied into another row, another tenant's or another
//! field does not open. Nonces are random (96 bits): the few values sealed under one key stay far
//! from the point where a repeat is likely.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Digest as _;

/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 12;

/// Why a value could not be sealed or opened. Never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The cipher refused the plaintext (larger than it can seal).
    #[error("the value could not be sealed")]
    Seal,
    /// Wrong key, other associated data, or altered ciphertext.
    #[error(
        "the value does not open: the key-encryption key is not the one it was sealed with, or the value was altered or moved"
    )]
    Open,
    /// Not the shape [`SealingKey::seal_text`] writes.
    #[error("the sealed value is malformed")]
    Malformed,
}

/// The AEAD key of a configured key-encryption secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SealingKey {
    key: [u8; 32],
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// The key of `secret` (its SHA-256): the same secret always gives the same key, so every
    /// replica opens what another sealed.
    pub fn new(secret: &SecretString) -> Self {
        Self { key: sha2::Sha256::digest(secret.expose_secret().as_bytes()).into() }
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(self.key))
    }

    /// Seals `plaintext` bound to `aad` under a fresh random nonce: `(nonce, ciphertext)`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<([u8; NONCE_BYTES], Vec<u8>), SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed =
            self.cipher().encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad }).map_err(|_| SealError::Seal)?;
        Ok((nonce, sealed))
    }

    /// Opens what [`Self::seal`] sealed with the same `aad`.
    pub fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        self.cipher().decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad }).map_err(|_| SealError::Open)
    }

    /// Seals a text as one printable string, base64 of nonce then ciphertext, for a text column
    /// or a JSON string.
    pub fn seal_text(&self, plaintext: &str, aad: &[u8]) -> Result<String, SealError> {
        let (nonce, sealed) = self.seal(plaintext.as_bytes(), aad)?;
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        Ok(STANDARD.encode(bytes))
    }

    /// Opens what [`Self::seal_text`] sealed with the same `aad`.
    pub fn open_text(&self, sealed: &str, aad: &[u8]) -> Result<String, SealError> {
        let bytes = STANDARD.decode(sealed).map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        String::from_utf8(self.open(nonce, ciphertext, aad)?).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> SealingKey {
        SealingKey::new(&SecretString::from(secret))
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_associated_data() {
        let k = key("a-key-encryption-secret-of-32-bytes-or-more");
        let (nonce, sealed) = k.seal(b"private", b"k1").unwrap();
        assert_ne!(sealed.as_slice(), b"private".as_slice());
        assert_eq!(k.open(&nonce, &sealed, b"k1").unwrap(), b"private");
        // Another row's associated data, or another secret: refused.
        assert_eq!(k.open(&nonce, &sealed, b"k2"), Err(SealError::Open));
        let other = key("another-key-encryption-secret-of-32-bytes");
        assert_eq!(other.open(&nonce, &sealed, b"k1"), Err(SealError::Open));
        assert_eq!(k.open(&nonce[..4], &sealed, b"k1"), Err(SealError::Malformed));
    }

    #[test]
    fn sealed_texts_round_trip_and_never_show_the_plaintext() {
        let k = key("a-key-encryption-secret-of-32-bytes-or-more");
        let a = k.seal_text("tok-very-secret", b"t1/f").unwrap();
        let b = k.seal_text("tok-very-secret", b"t1/f").unwrap();
        assert!(!a.contains("tok-very-secret"));
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(k.open_text(&a, b"t1/f").unwrap(), "tok-very-secret");
        assert_eq!(k.open_text(&a, b"t2/f"), Err(SealError::Open));
        assert_eq!(k.open_text("not base64!", b"t1/f"), Err(SealError::Malformed));
        assert_eq!(k.open_text("AAAA", b"t1/f"), Err(SealError::Malformed));
        assert_eq!(format!("{k:?}"), "SealingKey(..)");
    }
}
