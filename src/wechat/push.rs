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

/// A refused push as answered: 401 for a signature that does not match, 400 otherwise.
impl From<PushError> for crate::error::AppError {
    fn from(error: PushError) -> Self {
        match error {
            PushError::BadSignature => Self::BadSignature,
            PushError::Malformed(why) | PushError::Undecryptable(why) => {
                Self::BadRequest(format!("push refused: {why}"))
            }
        }
    }
}

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

/// WeChat's flat XML (`<xml><Name><![CDATA[…]]></Name><Other>…</Other>…</xml>`), read one
/// top-level element after another: each name once (a duplicate refuses the document, so no
/// user-chosen text further on can stand in for a field), its text with XML's entities
/// decoded, or no text if it holds elements (a fast registration's `<info>`). No DTD is read:
/// no entity can expand and no outside file be named.
pub struct FlatXml(Vec<(String, Option<String>)>);

impl FlatXml {
    pub fn parse(xml: &str) -> Result<Self, PushError> {
        let malformed = || PushError::Malformed("not the flat <xml> WeChat sends");
        let body = xml.trim();
        let body = body.strip_prefix("<xml>").ok_or_else(malformed)?;
        let mut rest = body.strip_suffix("</xml>").ok_or_else(malformed)?;
        let mut fields: Vec<(String, Option<String>)> = Vec::new();
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                return Ok(Self(fields));
            }
            let (name, value, after) = element(rest).ok_or_else(malformed)?;
            if fields.iter().any(|(seen, _)| seen == name) {
                return Err(PushError::Malformed("an element appears twice"));
            }
            fields.push((name.to_owned(), value));
            rest = after;
        }
    }

    /// The text of the top-level element `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(seen, _)| seen == name)
            .and_then(|(_, value)| value.as_deref())
    }
}

/// The text of a top-level element of WeChat's flat XML, if the document is one `<xml>`
/// element and has it (see [`FlatXml`]).
pub fn xml_field(xml: &str, name: &str) -> Option<String> {
    FlatXml::parse(xml).ok()?.get(name).map(str::to_owned)
}

/// One element at the start of `xml`: its name, its text (None if it holds elements), and
/// what follows it.
fn element(xml: &str) -> Option<(&str, Option<String>, &str)> {
    let open = xml.strip_prefix('<')?;
    let end = open.find('>')?;
    let name = &open[..end];
    let after = &open[end + 1..];
    if let Some(empty) = name.strip_suffix('/') {
        return is_name(empty).then(|| (empty, Some(String::new()), after));
    }
    if !is_name(name) {
        return None;
    }
    let close = format!("</{name}>");
    if let Some(cdata) = after.trim_start().strip_prefix("<![CDATA[") {
        let stop = cdata.find("]]>")?;
        let rest = cdata[stop + 3..]
            .trim_start()
            .strip_prefix(close.as_str())?;
        return Some((name, Some(cdata[..stop].to_owned()), rest));
    }
    let stop = matching_close(after, name)?;
    let inner = &after[..stop];
    let text = match inner.contains('<') {
        true => None,
        false => Some(decode_entities(inner.trim())?),
    };
    Some((name, text, &after[stop + close.len()..]))
}

fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Where the `</name>` that closes an element begins, past any nested ones of the same name
/// and past CDATA sections (whose text may hold anything, `</name>` included).
fn matching_close(xml: &str, name: &str) -> Option<usize> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let (mut depth, mut at) = (0usize, 0usize);
    loop {
        let next_close = at + xml[at..].find(&close)?;
        let next_cdata = xml[at..].find("<![CDATA[").map(|i| at + i);
        if let Some(cdata) = next_cdata.filter(|c| *c < next_close) {
            at = cdata + xml[cdata..].find("]]>")? + 3;
            continue;
        }
        match xml[at..].find(&open).map(|i| at + i) {
            Some(next_open) if next_open < next_close => {
                depth += 1;
                at = next_open + open.len();
            }
            _ if depth == 0 => return Some(next_close),
            _ => {
                depth -= 1;
                at = next_close + close.len();
            }
        }
    }
}

/// XML's five entities and character references; anything else is not WeChat's XML.
fn decode_entities(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        let entity = &rest[at + 1..end];
        let decoded = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match entity.strip_prefix("#x").or(entity.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => entity.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(code)?
            }
        };
        out.push(decoded);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// What the platform is told, once decrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlatformEvent {
    /// Every ten minutes: the ticket that the component token is fetched with.
    VerifyTicket { ticket: String, created_at: u64 },
    /// An account authorized the platform, or changed what it authorized, or a mini program
    /// the platform registered (快速注册) came into being: its code to exchange.
    Authorized {
        authorizer: String,
        code: String,
        created_at: u64,
    },
    /// An account withdrew its authorization.
    Unauthorized { authorizer: String, created_at: u64 },
    /// Anything else (a failed registration and the like): acknowledged, not acted on.
    Other { info_type: String },
}

/// Reads a decrypted push; `component_appid` must be the platform's.
pub fn parse_event(message: &str, component_appid: &str) -> Result<PlatformEvent, PushError> {
    let xml = FlatXml::parse(message)?;
    let field = |name| xml.get(name).map(str::to_owned);
    let info_type = field("InfoType").ok_or(PushError::Malformed("no InfoType"))?;
    if field("AppId").is_some_and(|appid| appid != component_appid) {
        return Err(PushError::Undecryptable(
            "sent for another appid than WECHAT_COMPONENT's",
        ));
    }
    let created_at = field("CreateTime")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let required = |name, missing| field(name).filter(|v| !v.is_empty()).ok_or(missing);
    let authorizer = || {
        required(
            "AuthorizerAppid",
            PushError::Malformed("no AuthorizerAppid"),
        )
    };
    Ok(match info_type.as_str() {
        "component_verify_ticket" => PlatformEvent::VerifyTicket {
            ticket: required(
                "ComponentVerifyTicket",
                PushError::Malformed("no ComponentVerifyTicket"),
            )?,
            created_at,
        },
        "authorized" | "updateauthorized" => PlatformEvent::Authorized {
            authorizer: authorizer()?,
            code: required(
                "AuthorizationCode",
                PushError::Malformed("no AuthorizationCode"),
            )?,
            created_at,
        },
        // A fast registration's result: on success (status 0), the new mini program's appid
        // and a code to exchange like an authorization's.
        "notify_third_fasteregister" if field("status").as_deref() == Some("0") => {
            PlatformEvent::Authorized {
                authorizer: required("appid", PushError::Malformed("no appid"))?,
                code: required("auth_code", PushError::Malformed("no auth_code"))?,
                created_at,
            }
        }
        "unauthorized" => PlatformEvent::Unauthorized {
            authorizer: authorizer()?,
            created_at,
        },
        _ => PlatformEvent::Other { info_type },
    })
}

#[cfg(test)]
mod tests;
