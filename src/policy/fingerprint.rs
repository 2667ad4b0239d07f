//! Short, one-way names for secrets and tokens, for logs and `/status`. Pure.

use sha2::{Digest, Sha256};

/// The first 8 hex characters of the SHA-256 of a token or ticket: enough to tell two apart
/// in a log, useless for calling WeChat.
pub fn fingerprint(value: &str) -> String {
    hex_prefix(&Sha256::digest(value.as_bytes()), 8)
}

/// Changes whenever an account's appid or secret does, so that "stop retrying until the
/// configuration changes" can notice the change without storing the secret.
pub fn config_fingerprint(appid: &str, secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(appid.as_bytes());
    hasher.update([0]);
    hasher.update(secret.as_bytes());
    hex_prefix(&hasher.finalize(), 16)
}

/// Names the configuration that fetches an account's tokens (see `Account::issuer`).
pub fn issuer_fingerprint(appid: &str, kind: &str, api: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [appid, kind, api] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex_prefix(&hasher.finalize(), 16)
}

/// The KV index key of an issued token, so that a token alone names its account (32 hex
/// characters of its SHA-256: one-way, and no collision in practice).
pub fn token_index_id(token: &str) -> String {
    hex_prefix(&Sha256::digest(token.as_bytes()), 32)
}

fn hex_prefix(bytes: &[u8], chars: usize) -> String {
    let mut hex = format!("{:x}", Sha256Output::from_slice(bytes));
    hex.truncate(chars);
    hex
}

type Sha256Output = sha2::digest::Output<Sha256>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_sha256_prefixes() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(fingerprint("abc"), "ba7816bf");
        assert_ne!(
            config_fingerprint("wx1", "a"),
            config_fingerprint("wx1", "b")
        );
        assert_ne!(
            config_fingerprint("wx1a", ""),
            config_fingerprint("wx1", "a")
        );
        assert_eq!(config_fingerprint("wx1", "a").len(), 16);
        assert_ne!(
            issuer_fingerprint("wx1", "official_account", "classic"),
            issuer_fingerprint("wx1", "official_account", "stable")
        );
        assert_eq!(token_index_id("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }
}
