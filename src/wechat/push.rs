//! WeChat's encrypted pushes to a third-party platform (消息加解密): the signature, the
//! AES-256-CBC envelope, and the few XML fields the platform's events carry. Pure.
//!
//! `msg_signature` is the SHA-1 of the sorted concatenation of the token, `timestamp`, `nonce`
//! and the `Encrypt` text. The AES key is base64 of `EncodingAESKey` + "=", the IV its first 16
//! bytes; the plaintext is 16 random bytes, a 4-byte big-endian length, the message, and the
//! sender's appid, padded to a multiple of 32 bytes (so a pad byte runs from 1 to 32, and a
//! 16-byte PKCS#7 unpadding would refuse valid messages).

use crate::policy::auth::digests_equal;
use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// WeChat pads to this block size, not AES's 16.
const PAD_BLOCK: usize = 32;

/// Why a push was refused. The messages name what is wrong, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushError {
    /// `msg_signature` does not match: not from WeChat, or another token.
    BadSignature,
    /// Not the XML, base64 or layout WeChat sends.
    Malformed(&'static str),
    /// Decrypted under none of the keys, or for another appid.
    Undecryptable(&'static str),
}

/// Checks `msg_signature`, comparing digests in full.
pub fn verify_signature(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypted: &str,
    msg_signature: &str,
) -> Result<(), PushError> {
    let mut parts = [token, timestamp, nonce, encrypted];
    parts.sort_unstable();
    let expected = sha1_smol::Sha1::from(parts.concat()).digest().bytes();
    let presented = decode_hex(msg_signature).ok_or(PushError::BadSignature)?;
    match digests_equal(&expected, &presented) {
        true => Ok(()),
        false => Err(PushError::BadSignature),
    }
}

fn decode_hex(text: &str) -> Option<[u8; 20]> {
    let text = text.as_bytes();
    if text.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (byte, pair) in out.iter_mut().zip(text.chunks(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// The message inside `encrypted`, tried under each key in turn (the current
/// `encoding_aes_key`, then the previous one while WeChat's change of key settles); it must
/// name `appid` as its sender.
pub fn decrypt(encrypted: &str, keys: &[[u8; 32]], appid: &str) -> Result<String, PushError> {
    let ciphertext = BASE64
        .decode(encrypted.trim())
        .map_err(|_| PushError::Malformed("Encrypt is not base64"))?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(PushError::Malformed("Encrypt is not whole AES blocks"));
    }
    let mut last = PushError::Undecryptable("no EncodingAESKey is configured");
    for key in keys {
        match open(&ciphertext, key, appid) {
            Ok(message) => return Ok(message),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn open(ciphertext: &[u8], key: &[u8; 32], appid: &str) -> Result<String, PushError> {
    let mut buffer = ciphertext.to_vec();
    let decryptor = Aes256CbcDec::new(key.into(), key[..16].into());
    let plain = decryptor
        .decrypt_padded_mut::<cbc::cipher::block_padding::NoPadding>(&mut buffer)
        .map_err(|_| PushError::Undecryptable("not whole blocks"))?;
    let unpadded = unpad(plain).ok_or(PushError::Undecryptable(
        "bad padding: another EncodingAESKey?",
    ))?;
    if unpadded.len() < 20 {
        return Err(PushError::Undecryptable("too short"));
    }
    let length = u32::from_be_bytes([unpadded[16], unpadded[17], unpadded[18], unpadded[19]]);
    let rest = &unpadded[20..];
    let length = length as usize;
    if length > rest.len() {
        return Err(PushError::Undecryptable(
            "bad length: another EncodingAESKey?",
        ));
    }
    let (message, sender) = rest.split_at(length);
    if sender != appid.as_bytes() {
        return Err(PushError::Undecryptable(
            "sent for another appid than WECHAT_COMPONENT's",
        ));
    }
    String::from_utf8(message.to_vec()).map_err(|_| PushError::Malformed("not UTF-8"))
}

/// WeChat's padding: the last byte `n` (1 to 32), repeated `n` times.
fn unpad(plain: &[u8]) -> Option<&[u8]> {
    let pad = *plain.last()? as usize;
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return None;
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    padding.iter().all(|b| *b as usize == pad).then_some(body)
}

/// The text of a top-level element of WeChat's flat XML (`<Name><![CDATA[…]]></Name>` or
/// `<Name>…</Name>`), if the document is one `<xml>` element and has it.
pub fn xml_field(xml: &str, name: &str) -> Option<String> {
    let body = xml.trim();
    let body = body.strip_prefix("<xml>")?.strip_suffix("</xml>")?;
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&close)?;
    let inner = body[start..end].trim();
    let text = match inner.strip_prefix("<![CDATA[") {
        Some(rest) => rest.strip_suffix("]]>")?,
        None if inner.contains('<') => return None,
        None => inner,
    };
    Some(text.to_owned())
}

/// What the platform is told, once decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformEvent {
    /// Every ten minutes: the ticket that the component token is fetched with.
    VerifyTicket { ticket: String, created_at: u64 },
    /// An account authorized the platform, or changed what it authorized.
    Authorized { authorizer: String, code: String },
    /// An account withdrew its authorization.
    Unauthorized { authorizer: String },
    /// Anything else (registration results and the like): acknowledged, not acted on.
    Other { info_type: String },
}

/// Reads a decrypted push; `component_appid` must be the platform's.
pub fn parse_event(message: &str, component_appid: &str) -> Result<PlatformEvent, PushError> {
    let field = |name| xml_field(message, name);
    let info_type = field("InfoType").ok_or(PushError::Malformed("no InfoType"))?;
    if field("AppId").is_some_and(|appid| appid != component_appid) {
        return Err(PushError::Undecryptable(
            "sent for another appid than WECHAT_COMPONENT's",
        ));
    }
    let authorizer = || {
        field("AuthorizerAppid")
            .filter(|a| !a.is_empty())
            .ok_or(PushError::Malformed("no AuthorizerAppid"))
    };
    Ok(match info_type.as_str() {
        "component_verify_ticket" => PlatformEvent::VerifyTicket {
            ticket: field("ComponentVerifyTicket")
                .filter(|t| !t.is_empty())
                .ok_or(PushError::Malformed("no ComponentVerifyTicket"))?,
            created_at: field("CreateTime")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
        },
        "authorized" | "updateauthorized" => PlatformEvent::Authorized {
            authorizer: authorizer()?,
            code: field("AuthorizationCode")
                .filter(|c| !c.is_empty())
                .ok_or(PushError::Malformed("no AuthorizationCode"))?,
        },
        "unauthorized" => PlatformEvent::Unauthorized {
            authorizer: authorizer()?,
        },
        _ => PlatformEvent::Other { info_type },
    })
}

#[cfg(test)]
mod tests;
