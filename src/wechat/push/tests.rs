use super::*;
use crate::policy::platform::encoding_aes_key;
use aes::cipher::BlockEncryptMut;
use cbc::cipher::block_padding::NoPadding;

// WeChat's published sample (its message-encryption sample code): token, key, appid, and a
// message pushed at 1409735669 with nonce 1320562132.
const SAMPLE_TOKEN: &str = "spamtest";
const SAMPLE_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SAMPLE_APPID: &str = "wx2c2769f8efd9abc2";
const SAMPLE_SIGNATURE: &str = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
const SAMPLE_ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+\
LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41\
IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KW\
wMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+\
C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

fn sample_key() -> [u8; 32] {
    encoding_aes_key(SAMPLE_KEY).unwrap()
}

/// Seals like WeChat: 16 bytes, the length, the message, the appid, WeChat's padding.
fn seal(message: &str, key: &[u8; 32], appid: &str) -> String {
    let mut plain = vec![7u8; 16];
    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
    plain.extend_from_slice(message.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let length = plain.len();
    let encryptor = cbc::Encryptor::<aes::Aes256>::new(key.into(), key[..16].into());
    let sealed = encryptor
        .encrypt_padded_mut::<NoPadding>(&mut plain, length)
        .unwrap();
    BASE64.encode(sealed)
}

#[test]
fn wechats_published_sample_verifies_and_opens() {
    assert_eq!(
        verify_signature(
            SAMPLE_TOKEN,
            "1409735669",
            "1320562132",
            SAMPLE_ENCRYPT,
            SAMPLE_SIGNATURE
        ),
        Ok(())
    );
    let message = decrypt(SAMPLE_ENCRYPT, &[sample_key()], SAMPLE_APPID).unwrap();
    assert_eq!(xml_field(&message, "Content").as_deref(), Some("abcdteT"));
    assert_eq!(
        xml_field(&message, "CreateTime").as_deref(),
        Some("1409735668")
    );
    assert_eq!(
        decrypt(SAMPLE_ENCRYPT, &[sample_key()], "wxsomeoneelse00000"),
        Err(PushError::Undecryptable(
            "sent for another appid than WECHAT_COMPONENT's"
        ))
    );
}

#[test]
fn a_wrong_signature_or_one_of_another_token_is_refused() {
    let other = "0".repeat(40);
    for (token, signature) in [
        (SAMPLE_TOKEN, other.as_str()),
        ("another", SAMPLE_SIGNATURE),
        (SAMPLE_TOKEN, "not hex"),
        (SAMPLE_TOKEN, ""),
    ] {
        assert_eq!(
            verify_signature(token, "1409735669", "1320562132", SAMPLE_ENCRYPT, signature),
            Err(PushError::BadSignature)
        );
    }
}

#[test]
fn the_padding_runs_to_a_whole_block_of_32() {
    let key = sample_key();
    // 16 + 4 + 12 + 18 = 50 bytes; and 16 + 4 + 26 + 18 = 64, already aligned: a pad of 32,
    // which a 16-byte PKCS#7 unpadding refuses.
    for message in [
        "<xml>ab</xml>"[..12].to_owned(),
        "x".repeat(26),
        String::new(),
    ] {
        let sealed = seal(&message, &key, SAMPLE_APPID);
        assert_eq!(
            decrypt(&sealed, &[key], SAMPLE_APPID).as_ref(),
            Ok(&message)
        );
    }
    assert_eq!(unpad(&[1, 2, 3, 1]), Some(&[1u8, 2, 3][..]));
    assert_eq!(unpad(&[9; 3]), None, "a pad longer than what it pads");
    assert_eq!(unpad(&[32; 32]), Some(&[][..]));
    assert_eq!(unpad(&[0; 32]), None);
    assert_eq!(unpad(&[33; 64]), None);
    assert_eq!(unpad(&[1, 2, 3, 2]), None, "every pad byte must agree");
}

#[test]
fn the_previous_key_opens_what_the_current_does_not() {
    let (old, new) = ([3u8; 32], sample_key());
    let sealed = seal("<xml><InfoType>x</InfoType></xml>", &old, SAMPLE_APPID);
    assert!(decrypt(&sealed, &[new], SAMPLE_APPID).is_err());
    assert!(decrypt(&sealed, &[new, old], SAMPLE_APPID).is_ok());
}

#[test]
fn garbage_is_refused_with_a_reason() {
    let key = sample_key();
    assert_eq!(
        decrypt("%%%", &[key], SAMPLE_APPID),
        Err(PushError::Malformed("Encrypt is not base64"))
    );
    assert_eq!(
        decrypt(&BASE64.encode([1u8; 20]), &[key], SAMPLE_APPID),
        Err(PushError::Malformed("Encrypt is not whole AES blocks"))
    );
    assert!(decrypt(&BASE64.encode([1u8; 64]), &[key], SAMPLE_APPID).is_err());
}

#[test]
fn flat_xml_fields() {
    let xml = "<xml><AppId><![CDATA[wxc]]></AppId><CreateTime>1413192605</CreateTime>\
               <InfoType><![CDATA[component_verify_ticket]]></InfoType>\
               <ComponentVerifyTicket><![CDATA[ticket@@@a<b>]]></ComponentVerifyTicket></xml>";
    assert_eq!(
        parse_event(xml, "wxc"),
        Ok(PlatformEvent::VerifyTicket {
            ticket: "ticket@@@a<b>".into(),
            created_at: 1_413_192_605
        })
    );
    assert!(matches!(
        parse_event(xml, "wxother"),
        Err(PushError::Undecryptable(_))
    ));
    assert_eq!(xml_field("<root><A>1</A></root>", "A"), None);
    assert_eq!(xml_field("<xml><A><B>1</B></A></xml>", "A"), None);
    assert_eq!(xml_field("<xml><A>1</xml>", "A"), None);
    let authorized = "<xml><AppId>wxc</AppId><InfoType>authorized</InfoType>\
                      <AuthorizerAppid>wxa</AuthorizerAppid>\
                      <AuthorizationCode>code@@@1</AuthorizationCode></xml>";
    assert_eq!(
        parse_event(authorized, "wxc"),
        Ok(PlatformEvent::Authorized {
            authorizer: "wxa".into(),
            code: "code@@@1".into(),
            created_at: 0
        })
    );
    let gone = "<xml><InfoType>unauthorized</InfoType><AuthorizerAppid>wxa</AuthorizerAppid></xml>";
    assert_eq!(
        parse_event(gone, "wxc"),
        Ok(PlatformEvent::Unauthorized {
            authorizer: "wxa".into(),
            created_at: 0
        })
    );
    assert_eq!(
        parse_event("<xml><AppId>wxc</AppId></xml>", "wxc"),
        Err(PushError::Malformed("no InfoType"))
    );
}

#[test]
fn the_flat_xml_is_read_one_top_level_element_after_another() {
    // A user-chosen name further on cannot stand in for a field: a duplicate is refused.
    let doubled = "<xml><InfoType>unauthorized</InfoType><AuthorizerAppid>wxa</AuthorizerAppid>\
                   <AuthorizerAppid>wxb</AuthorizerAppid></xml>";
    assert_eq!(
        parse_event(doubled, "wxc"),
        Err(PushError::Malformed("an element appears twice"))
    );
    // Nested elements are not top-level fields, whatever their names.
    let nested = "<xml><InfoType>unauthorized</InfoType>\
                  <info><AuthorizerAppid>wxz</AuthorizerAppid></info>\
                  <AuthorizerAppid>wxa</AuthorizerAppid></xml>";
    assert_eq!(
        parse_event(nested, "wxc"),
        Ok(PlatformEvent::Unauthorized {
            authorizer: "wxa".into(),
            created_at: 0
        })
    );
    assert_eq!(
        xml_field("<xml><A> x &amp; y &lt;z&gt; &#20013;</A></xml>", "A").as_deref(),
        Some("x & y <z> 中")
    );
    assert_eq!(xml_field("<xml><A>&bogus;</A></xml>", "A"), None);
    assert_eq!(
        xml_field("<xml><A>1</A><B/></xml>", "B").as_deref(),
        Some("")
    );
    assert_eq!(xml_field("<xml><A x=\"1\">1</A></xml>", "A"), None);
    assert_eq!(
        xml_field("<xml><A><A>1</A></A><B>2</B></xml>", "B").as_deref(),
        Some("2")
    );
    // A CDATA text inside a nested element may hold what looks like its end.
    let text = "<xml><info><name><![CDATA[a</info>b]]></name></info><B>2</B></xml>";
    assert_eq!(xml_field(text, "B").as_deref(), Some("2"));
}

#[test]
fn a_fast_registration_is_an_authorization_with_its_code() {
    let registered = "<xml><AppId><![CDATA[wxc]]></AppId><CreateTime>1535442403</CreateTime>\
                      <InfoType><![CDATA[notify_third_fasteregister]]></InfoType>\
                      <appid>wxnew</appid><status>0</status><auth_code>auth@@@1</auth_code>\
                      <msg>OK</msg><info><name><![CDATA[Shop & Co]]></name>\
                      <code><![CDATA[123]]></code></info></xml>";
    assert_eq!(
        parse_event(registered, "wxc"),
        Ok(PlatformEvent::Authorized {
            authorizer: "wxnew".into(),
            code: "auth@@@1".into(),
            created_at: 1_535_442_403
        })
    );
    let failed = registered.replace("<status>0</status>", "<status>89249</status>");
    assert_eq!(
        parse_event(&failed, "wxc"),
        Ok(PlatformEvent::Other {
            info_type: "notify_third_fasteregister".into()
        })
    );
}
