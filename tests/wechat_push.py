"""WeChat's message encryption (消息加解密), written for the tests from WeChat's description and
independently of the worker: the fake open platform seals its pushes with it, and the tests
forge, corrupt and oversize them.

AESKey = base64(EncodingAESKey + "="); AES-256-CBC, IV = the key's first 16 bytes; plaintext =
16 random bytes + 4-byte big-endian length + message + appid, padded PKCS#7-style to a multiple
of 32 bytes; msg_signature = SHA-1 of the sorted concatenation of token, timestamp, nonce and the
ciphertext's base64."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import time

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def new_encoding_aes_key() -> str:
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


def encrypt(message: str, encoding_aes_key: str, appid: str, pad_to: int = 32) -> str:
    key = aes_key(encoding_aes_key)
    body = message.encode()
    plain = os.urandom(16) + struct.pack(">I", len(body)) + body + appid.encode()
    pad = pad_to - len(plain) % pad_to  # 1..32: a whole block of 32 when already aligned
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def envelope(to_appid: str, encrypted: str) -> str:
    return (f"<xml><AppId><![CDATA[{to_appid}]]></AppId>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")


def sealed_push(message: str, *, token: str, encoding_aes_key: str, appid: str,
                timestamp: str | None = None, nonce: str | None = None) -> tuple[str, str]:
    """The query and the body WeChat posts to the platform's 授权事件接收URL."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(int.from_bytes(os.urandom(4), "big"))
    encrypted = encrypt(message, encoding_aes_key, appid)
    sign = signature(token, timestamp, nonce, encrypted)
    query = f"timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={sign}"
    return query, envelope(appid, encrypted)


def ticket_message(appid: str, ticket: str, created_at: int | None = None) -> str:
    created_at = int(time.time()) if created_at is None else created_at
    return (f"<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>{created_at}</CreateTime>"
            "<InfoType><![CDATA[component_verify_ticket]]></InfoType>"
            f"<ComponentVerifyTicket><![CDATA[{ticket}]]></ComponentVerifyTicket></xml>")


def authorization_message(appid: str, info_type: str, authorizer: str, code: str = "",
                          created_at: int | None = None) -> str:
    created_at = int(time.time()) if created_at is None else created_at
    parts = [f"<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>{created_at}</CreateTime>",
             f"<InfoType><![CDATA[{info_type}]]></InfoType>",
             f"<AuthorizerAppid><![CDATA[{authorizer}]]></AuthorizerAppid>"]
    if code:
        parts += [f"<AuthorizationCode><![CDATA[{code}]]></AuthorizationCode>",
                  f"<AuthorizationCodeExpiredTime>{int(time.time()) + 3600}"
                  "</AuthorizationCodeExpiredTime>",
                  "<PreAuthCode><![CDATA[preauthcode@@@fake]]></PreAuthCode>"]
    return "".join(parts) + "</xml>"


def fast_registration_message(appid: str, new_appid: str, auth_code: str, status: int = 0) -> str:
    """WeChat's push after the platform registered a mini program (快速注册): its appid and
    a code to exchange like an authorization's; user-chosen text comes after, in <info>."""
    return (f"<xml><AppId><![CDATA[{appid}]]></AppId><CreateTime>{int(time.time())}</CreateTime>"
            "<InfoType><![CDATA[notify_third_fasteregister]]></InfoType>"
            f"<appid><![CDATA[{new_appid}]]></appid><status>{status}</status>"
            f"<auth_code><![CDATA[{auth_code}]]></auth_code><msg><![CDATA[OK]]></msg>"
            "<info><name><![CDATA[Shop &amp; Co <AuthorizerAppid>wxnot</AuthorizerAppid>]]>"
            "</name><code><![CDATA[123]]></code><legal_persona_wechat><![CDATA[w]]>"
            "</legal_persona_wechat></info></xml>")
