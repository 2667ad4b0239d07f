//! What a request carries: its query, and its body, read without trusting it (at most
//! [`MAX_BODY_BYTES`] + 1 bytes are kept in memory, whatever `Content-Length` says or does
//! not say).

use crate::error::AppError;
use crate::policy::requests::{self, MAX_BODY_BYTES};
use std::cell::OnceCell;
use worker::js_sys::{Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, ReadableStream, ReadableStreamDefaultReader};
use worker::{Method, Request};

/// Past the limit, this much more is read and thrown away before giving up on the body: a
/// body left half-read breaks the connection's next request in `wrangler dev`'s proxy, and
/// reading (not keeping) a few more chunks costs little.
const DISCARD_MAX_BYTES: usize = 1 << 20;

/// A request as the runtime hands it in, wrapped in worker's `Request` only when a route asks
/// for one: the wrapper reads `request.cf`, an object the runtime builds on demand and the
/// gateway never needs.
pub struct Incoming {
    raw: web_sys::Request,
    method: Method,
    url: String,
    path: String,
    wrapped: OnceCell<Request>,
}

impl Incoming {
    pub fn new(raw: web_sys::Request) -> Self {
        let url = raw.url();
        let path = requests::path_of_url(&url).to_owned();
        Self {
            method: Method::from(raw.method()),
            raw,
            url,
            path,
            wrapped: OnceCell::new(),
        }
    }

    /// The path, as the runtime serialized it (percent-encoding kept).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn method(&self) -> Method {
        self.method.clone()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.headers().get(name).ok().flatten()
    }

    /// The query's name/value pairs.
    pub fn query(&self) -> Vec<(String, String)> {
        pairs_of_url(&self.url)
    }

    pub fn body(&self) -> Option<ReadableStream> {
        self.raw.body()
    }

    /// The request as the routes that need worker's wrapper take it.
    pub fn request(&self) -> &Request {
        // `Clone::clone` shares the one JavaScript object; `Request::clone` would copy its body.
        self.wrapped
            .get_or_init(|| Request::from(Clone::clone(&self.raw)))
    }
}

/// The query's name/value pairs.
pub fn query(request: &Request) -> Result<Vec<(String, String)>, AppError> {
    Ok(pairs_of_url(&request.inner().url()))
}

/// The runtime's URL is already parsed and serialized: its query is what follows the first
/// `?` (a `#` never reaches a server), without parsing the whole URL again.
fn pairs_of_url(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The key of `Authorization: Bearer <key>`, if the request has one.
pub fn bearer(request: &Request) -> Option<String> {
    let header = request.headers().get("authorization").ok().flatten()?;
    crate::policy::auth::bearer_token(&header).map(str::to_owned)
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A POST body: at most 8 KiB (413), and JSON unless empty (415).
pub async fn read(request: &Request) -> Result<String, AppError> {
    let content_type = request.headers().get("content-type").ok().flatten();
    let body = read_untyped(request).await?;
    requests::check_content_type(content_type.as_deref(), body.trim().is_empty())?;
    Ok(body)
}

/// A POST body of any declared type (SDKs post JSON to WeChat's own paths without saying
/// so): at most 8 KiB (413), UTF-8.
pub async fn read_untyped(request: &Request) -> Result<String, AppError> {
    let declared = request.headers().get("content-length").ok().flatten();
    requests::check_body_size(declared.as_deref(), None)?;
    let bytes = read_bytes(request, MAX_BODY_BYTES).await?;
    String::from_utf8(bytes).map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))
}

/// The body's bytes, at most `limit` of them (413 past it), read from the stream no further
/// than that (and a little more thrown away).
pub async fn read_bytes(request: &Request, limit: usize) -> Result<Vec<u8>, AppError> {
    let unreadable = |_| AppError::BadRequest("unreadable body".into());
    let Some(stream) = request.inner().body() else {
        return Ok(Vec::new());
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let (mut kept, mut discarded) = (Vec::new(), 0);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(unreadable)?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done")).map_err(unreadable)?;
        if done.as_bool() == Some(true) {
            break;
        }
        let value = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(unreadable)?;
        let value = Uint8Array::new(&value);
        if kept.len() <= limit {
            // Never more than the limit and a byte: enough to know it is too large.
            let room = limit + 1 - kept.len();
            let take = (value.length() as usize).min(room) as u32;
            kept.extend_from_slice(&value.subarray(0, take).to_vec());
            discarded += value.length() as usize - take as usize;
        } else {
            discarded += value.length() as usize;
            if discarded > DISCARD_MAX_BYTES {
                reader.release_lock();
                break;
            }
        }
    }
    if kept.len() > limit {
        return Err(AppError::PayloadTooLarge {
            limit_kib: limit / 1024,
        });
    }
    Ok(kept)
}
