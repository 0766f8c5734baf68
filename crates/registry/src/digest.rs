//! Content digests (`sha256:…`, `sha512:…`).

use sha2::{Digest as _, Sha256, Sha512};

use crate::RegistryError;

/// Incremental hasher for the algorithm of an expected digest.
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    /// Validates `digest` and returns a hasher for its algorithm.
    pub(crate) fn for_digest(digest: &str) -> Result<Self, RegistryError> {
        crate::reference::validate_digest(digest).map_err(|reason| {
            RegistryError::InvalidDigest {
                digest: digest.to_string(),
                reason,
            }
        })?;
        match digest.split_once(':').map(|(a, _)| a) {
            Some("sha256") => Ok(Hasher::Sha256(Sha256::new())),
            Some("sha512") => Ok(Hasher::Sha512(Sha512::new())),
            _ => Err(RegistryError::InvalidDigest {
                digest: digest.to_string(),
                reason: "unsupported digest algorithm (sha256 and sha512 are)".to_string(),
            }),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Checks that `data` hashes to `expected` (sha256 or sha512).
pub(crate) fn verify(what: &str, data: &[u8], expected: &str) -> Result<(), RegistryError> {
    let mut h = Hasher::for_digest(expected)?;
    h.update(data);
    let actual = h.finish();
    if actual != expected {
        return Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_verify() {
        let d = sha256_digest(b"hello");
        assert_eq!(
            d,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        verify("x", b"hello", &d).unwrap();
        assert!(matches!(
            verify("x", b"hellO", &d),
            Err(RegistryError::DigestMismatch { .. })
        ));
        assert!(matches!(
            verify("x", b"hello", "sha256:zz"),
            Err(RegistryError::InvalidDigest { .. })
        ));
        let mut h = Hasher::for_digest(&format!("sha512:{}", "0".repeat(128))).unwrap();
        h.update(b"");
        assert!(h.finish().starts_with("sha512:cf83e135"));
    }
}
