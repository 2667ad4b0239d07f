//! The appsecrets of accounts registered at runtime, sealed at rest: AES-256-GCM under
//! `ACCOUNTS_ENCRYPTION_KEY` (base64 of 32 bytes; `new,old` while rotating: seal with the
//! first, open with either). The account id is the associated data, so a sealed secret moved
//! to another account does not open. A sealed secret names its key (`v2:<key id>:…`, the id
//! derived from the key), so that the registry can count what an older key still seals and a
//! key is never removed while it does. Pure: the caller supplies the nonce (12 random bytes).
//!
//! RustCrypto's `aes-gcm` rather than WebCrypto: synchronous, unit-tested natively like the
//! rest of the policy, and about the same code either way; its cost in wasm is in the README.

use crate::error::AppError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The sealing formats: `v2:<key id>:<base64>`, and the first one, `v1:<base64>`, which names
/// no key (still opened, with whichever key does; `POST /admin/reseal` turns it into `v2`).
const FORMAT: &str = "v2:";
const FIRST_FORMAT: &str = "v1:";
/// What a `v1` secret counts as in the census of keys.
pub const UNNAMED_KEY: &str = "v1";
/// What a `v1` secret that no listed key opens counts as.
pub const UNOPENED_V1: &str = "v1-unopened";
pub const NONCE_BYTES: usize = 12;
const VARIABLE: &str = "ACCOUNTS_ENCRYPTION_KEY";

/// The keys with their ids, the sealing one first. Its `Debug` shows the ids only.
#[derive(Clone)]
pub struct KeyRing(Vec<(String, Aes256Gcm)>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyRing({:?})", self.ids())
    }
}

/// A key's id: the first 8 hex characters of a SHA-256 over a label and the key. Names the
/// key in sealed secrets and messages; tells nothing of it.
fn key_id(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"wechat-token-edge sealing key id\0")
        .chain_update(key)
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of the key that sealed `sealed` ([`UNNAMED_KEY`] for the first format), if it is
/// a sealed secret at all.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    if sealed.starts_with(FIRST_FORMAT) {
        return Some(UNNAMED_KEY);
    }
    let (id, _) = sealed.strip_prefix(FORMAT)?.split_once(':')?;
    Some(id)
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
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes));
            ciphers.push((key_id(&bytes), cipher));
        }
        Ok(Self(ciphers))
    }

    /// The keys' ids, the sealing one first.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// The id of the key that seals.
    pub fn sealing_id(&self) -> &str {
        &self.0[0].0
    }

    /// `secret` sealed under the first key for account `id`, with `nonce`.
    pub fn seal(&self, id: &str, secret: &str, nonce: [u8; NONCE_BYTES]) -> String {
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: id.as_bytes(),
        };
        let (id, cipher) = &self.0[0];
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-GCM seals any message this short");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{FORMAT}{id}:{}", BASE64.encode(bytes))
    }

    /// The secret `sealed` holds for account `id`, opened with whichever key sealed it.
    pub fn open(&self, id: &str, sealed: &str) -> Result<String, AppError> {
        let unopenable = || AppError::Config {
            variable: VARIABLE,
            problem: format!(
                "opens no sealed secret of account \"{id}\": was the key that sealed it removed?"
            ),
        };
        let (named, encoded) = match sealed.strip_prefix(FIRST_FORMAT) {
            Some(encoded) => (None, encoded),
            None => sealed
                .strip_prefix(FORMAT)
                .and_then(|rest| rest.split_once(':'))
                .map(|(key, encoded)| (Some(key), encoded))
                .ok_or_else(unopenable)?,
        };
        let bytes = BASE64
            .decode(encoded)
            .ok()
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or_else(unopenable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let payload = || Payload {
            msg: ciphertext,
            aad: id.as_bytes(),
        };
        self.0
            .iter()
            .filter(|(key, _)| named.is_none_or(|named| named == key))
            .find_map(|(_, cipher)| cipher.decrypt(Nonce::from_slice(nonce), payload()).ok())
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or_else(unopenable)
    }

    /// `sealed` sealed again under the sealing key, if another key sealed it (None: it is
    /// sealed under the sealing key already).
    pub fn reseal(
        &self,
        id: &str,
        sealed: &str,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Option<String>, AppError> {
        if sealed_key_id(sealed) == Some(self.sealing_id()) {
            return Ok(None);
        }
        let secret = self.open(id, sealed)?;
        Ok(Some(self.seal(id, &secret, nonce)))
    }

    /// Refuses a ring that no longer holds a key that still seals secrets: `census` lists
    /// each key id with how many secrets it seals.
    pub fn check_census(&self, census: &[(String, u64)]) -> Result<(), AppError> {
        let missing: Vec<&(String, u64)> = census
            .iter()
            .filter(|(key, count)| {
                *count > 0
                    && key != UNNAMED_KEY
                    && key != UNOPENED_V1
                    && !self.ids().contains(&key.as_str())
            })
            .collect();
        if let Some((_, count)) = census.iter().find(|(key, n)| key == UNOPENED_V1 && *n > 0) {
            return Err(config(&format!(
                "opens none of the {count} runtime account(s) sealed in the first format (v1) \
                 that it was tried on: put back the key that sealed them (new,old), POST \
                 /admin/reseal until none is left, then remove it"
            )));
        }
        match missing.as_slice() {
            [] => Ok(()),
            keys => {
                let count: u64 = keys.iter().map(|(_, n)| n).sum();
                let ids: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
                Err(config(&format!(
                    "no longer lists the key {} that still seals {count} runtime account(s): \
                     put it back (new,old), POST /admin/reseal until none is left, then remove it",
                    ids.join(", ")
                )))
            }
        }
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
        assert!(sealed.starts_with("v2:") && !sealed.contains("the-appsecret"));
        assert_eq!(sealed_key_id(&sealed), Some(ring.sealing_id()));
        assert_eq!(ring.sealing_id().len(), 8);
        assert_eq!(ring.open("shop", &sealed).unwrap(), "the-appsecret");
        assert!(ring.open("other", &sealed).is_err());
        assert!(ring.open("shop", "v1:AAAA").is_err());
        assert!(ring.open("shop", "v2:AAAA").is_err());
        // The first format (no key named) still opens.
        let first = format!("v1:{}", sealed.splitn(3, ':').nth(2).unwrap());
        assert_eq!(sealed_key_id(&first), Some(UNNAMED_KEY));
        assert_eq!(ring.open("shop", &first).unwrap(), "the-appsecret");
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
    fn a_reseal_moves_a_secret_to_the_sealing_key_and_a_census_keeps_keys_in_use() {
        let old = KeyRing::parse(Some(A)).unwrap();
        let rotating = KeyRing::parse(Some(&format!("{B},{A}"))).unwrap();
        let sealed = old.seal("shop", "s1", [1; 12]);
        let resealed = rotating.reseal("shop", &sealed, [2; 12]).unwrap().unwrap();
        assert_eq!(sealed_key_id(&resealed), Some(rotating.sealing_id()));
        assert_eq!(rotating.reseal("shop", &resealed, [3; 12]).unwrap(), None);
        let new_only = KeyRing::parse(Some(B)).unwrap();
        assert_eq!(new_only.open("shop", &resealed).unwrap(), "s1");
        let old_id = old.sealing_id().to_owned();
        let census = [(old_id.clone(), 3), (new_only.sealing_id().to_owned(), 7)];
        assert_eq!(rotating.check_census(&census), Ok(()));
        match new_only.check_census(&census) {
            Err(AppError::Config { problem, .. }) => {
                assert!(
                    problem.contains(&old_id) && problem.contains("3 runtime"),
                    "{problem}"
                )
            }
            other => panic!("{other:?}"),
        }
        let done = [(old_id, 0), (UNNAMED_KEY.to_owned(), 2)];
        assert_eq!(new_only.check_census(&done), Ok(()));
        let unopened = [(UNNAMED_KEY.to_owned(), 2), (UNOPENED_V1.to_owned(), 2)];
        match new_only.check_census(&unopened) {
            Err(AppError::Config { problem, .. }) => assert!(problem.contains("first format")),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{new_only:?}").contains(B));
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
