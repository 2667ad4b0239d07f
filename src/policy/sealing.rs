//! The appsecrets of accounts registered at runtime, sealed at rest: AES-256-GCM under
//! `ACCOUNTS_ENCRYPTION_KEY` (base64 of 32 bytes; `new,old` while rotating: seal with the
//! first, open with either). The account id is the associated data, so a sealed secret moved
//! to another account does not open. Pure: the caller supplies the nonce (12 random bytes).
//!
//! RustCrypto's `aes-gcm` rather than WebCrypto: synchronous, unit-tested natively like the
//! rest of the policy, and about the same code either way; its cost in wasm is in the README.

use crate::error::AppError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

/// Marks the sealing format, so that a later one can be told apart.
const FORMAT: &str = "v1:";
pub const NONCE_BYTES: usize = 12;
const VARIABLE: &str = "ACCOUNTS_ENCRYPTION_KEY";

/// The keys, the sealing one first. Its `Debug` shows no key.
#[derive(Clone)]
pub struct KeyRing(Vec<Aes256Gcm>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({} keys)", self.0.len())
    }
}

impl PartialEq for KeyRing {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
    }
}

impl KeyRing {
    /// `ACCOUNTS_ENCRYPTION_KEY`'s value: one or two comma-separated base64 keys of 32 bytes.
    pub fn parse(value: Option<&str>) -> Result<Self, AppError> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Err(config(
                "is not set: runtime accounts need it (base64 of 32 random bytes)",
            ));
        };
        let keys: Vec<&str> = value.split(',').map(str::trim).collect();
        if keys.len() > 2 {
            return Err(config("lists more than two keys (new,old)"));
        }
        let mut ciphers = Vec::new();
        for (index, text) in keys.iter().enumerate() {
            let bytes = BASE64
                .decode(text)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| config(&format!("key {} is not base64 of 32 bytes", index + 1)))?;
            ciphers.push(Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)));
        }
        Ok(Self(ciphers))
    }

    /// `secret` sealed under the first key for account `id`, with `nonce`.
    pub fn seal(&self, id: &str, secret: &str, nonce: [u8; NONCE_BYTES]) -> String {
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: id.as_bytes(),
        };
        let sealed = self.0[0]
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM seals any message this short");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{FORMAT}{}", BASE64.encode(bytes))
    }

    /// The secret `sealed` holds for account `id`, opened with whichever key sealed it.
    pub fn open(&self, id: &str, sealed: &str) -> Result<String, AppError> {
        let unopenable = || AppError::Config {
            variable: VARIABLE,
            problem: format!(
                "opens no sealed secret of account \"{id}\": was the key that sealed it removed?"
            ),
        };
        let bytes = sealed
            .strip_prefix(FORMAT)
            .and_then(|b| BASE64.decode(b).ok())
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or_else(unopenable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = || Payload {
            msg: ciphertext,
            aad: id.as_bytes(),
        };
        self.0
            .iter()
            .find_map(|cipher| cipher.decrypt(Nonce::from_slice(nonce), payload()).ok())
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or_else(unopenable)
    }
}

fn config(problem: &str) -> AppError {
    AppError::Config {
        variable: VARIABLE,
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const B: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn a_sealed_secret_opens_for_its_account_only() {
        let ring = KeyRing::parse(Some(A)).unwrap();
        let sealed = ring.seal("shop", "the-appsecret", [7; 12]);
        assert!(sealed.starts_with("v1:") && !sealed.contains("the-appsecret"));
        assert_eq!(ring.open("shop", &sealed).unwrap(), "the-appsecret");
        assert!(ring.open("other", &sealed).is_err());
        assert!(ring.open("shop", "v1:AAAA").is_err());
    }

    #[test]
    fn rotation_seals_with_the_new_key_and_opens_with_either() {
        let old = KeyRing::parse(Some(A)).unwrap();
        let sealed_before = old.seal("shop", "s1", [1; 12]);
        let rotating = KeyRing::parse(Some(&format!("{B}, {A}"))).unwrap();
        assert_eq!(rotating.open("shop", &sealed_before).unwrap(), "s1");
        let sealed_after = rotating.seal("shop", "s2", [2; 12]);
        assert!(old.open("shop", &sealed_after).is_err());
        let new_only = KeyRing::parse(Some(B)).unwrap();
        assert_eq!(new_only.open("shop", &sealed_after).unwrap(), "s2");
        let message = match new_only.open("shop", &sealed_before) {
            Err(AppError::Config { problem, .. }) => problem,
            other => panic!("{other:?}"),
        };
        assert!(message.contains("shop") && !message.contains("s1"));
    }

    #[test]
    fn malformed_keys_are_named_without_their_value() {
        for (value, problem) in [
            (None, "is not set"),
            (Some(""), "is not set"),
            (Some("c2hvcnQ="), "key 1 is not base64 of 32 bytes"),
            (Some(&*format!("{A},not base64!")), "key 2"),
            (Some(&*format!("{A},{A},{A}")), "more than two"),
        ] {
            match KeyRing::parse(value) {
                Err(AppError::Config {
                    variable,
                    problem: p,
                }) => {
                    assert_eq!(variable, VARIABLE);
                    assert!(p.contains(problem), "{p}");
                    assert!(!p.contains("c2hvcnQ"), "{p}");
                }
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }
}
