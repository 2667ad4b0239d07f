//! Bodies that pass through the gateway. Whatever the gateway holds stays in the runtime's
//! memory, not in the worker's (wasm memory never shrinks back); only an answer's first
//! 64 KiB are copied in, to look for an errcode. A stream is read up to a limit, and if it
//! goes on past it, what was read is replayed ahead of the rest. A request body kept for a
//! second send is held once, as a `Blob`: `fetch` reads a Blob where it copies a byte array
//! on every send, and the chunks it was read in are let go at once.

use futures_util::{stream, StreamExt};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::web_sys::{Blob, ReadableStream};

/// A body either held whole (small enough to send twice, or to read) or still streaming.
#[derive(Clone)]
pub enum Body {
    /// Bytes to read (an answer's, for its errcode or its refresh tokens).
    Kept(Uint8Array),
    /// A request body kept for a second send.
    Held(Blob),
    Stream(ReadableStream),
}

impl Body {
    /// Whether it can be sent again: a stream is consumed by its first send.
    pub fn resendable(&self) -> bool {
        !matches!(self, Self::Stream(_))
    }

    /// The value `fetch` takes as a body.
    pub fn into_js(self) -> JsValue {
        match self {
            Self::Kept(bytes) => bytes.into(),
            Self::Held(blob) => blob.into(),
            Self::Stream(stream) => stream.into(),
        }
    }
}

/// What [`read_up_to`] found: every chunk, or a stream that replays them ahead of the rest.
enum Read {
    Whole(Vec<Uint8Array>, usize),
    Longer(ReadableStream),
}

async fn read_up_to(body: ReadableStream, limit: usize) -> Result<Read, JsValue> {
    let mut chunks = wasm_streams::ReadableStream::from_raw(body.unchecked_into()).into_stream();
    let (mut seen, mut seen_len) = (Vec::new(), 0);
    while let Some(chunk) = chunks.next().await {
        let chunk: Uint8Array = chunk?.dyn_into()?;
        seen_len += chunk.length() as usize;
        seen.push(chunk);
        if seen_len > limit {
            let replay = stream::iter(seen.into_iter().map(|c| Ok(c.into()))).chain(chunks);
            let raw = wasm_streams::ReadableStream::from_stream(replay).into_raw();
            return Ok(Read::Longer(raw.unchecked_into()));
        }
    }
    Ok(Read::Whole(seen, seen_len))
}

/// Reads an answer whole if it ends within `limit` bytes, as bytes to read; otherwise gives
/// back a stream that yields what was read and then the rest.
pub async fn peek(body: ReadableStream, limit: usize) -> Result<Body, JsValue> {
    let (seen, seen_len) = match read_up_to(body, limit).await? {
        Read::Longer(stream) => return Ok(Body::Stream(stream)),
        Read::Whole(seen, seen_len) => (seen, seen_len),
    };
    if let [only] = seen.as_slice() {
        return Ok(Body::Kept(only.clone()));
    }
    let whole = Uint8Array::new_with_length(seen_len as u32);
    let mut offset = 0;
    for chunk in seen {
        whole.set(&chunk, offset);
        offset += chunk.length();
    }
    Ok(Body::Kept(whole))
}

/// Reads a request body whole if it ends within `limit` bytes, held once for as many sends
/// as it takes; otherwise gives back a stream that yields what was read and then the rest.
pub async fn hold(body: ReadableStream, limit: usize) -> Result<Body, JsValue> {
    match read_up_to(body, limit).await? {
        Read::Longer(stream) => Ok(Body::Stream(stream)),
        Read::Whole(seen, _) => {
            let parts: worker::js_sys::Array = seen.into_iter().collect();
            Ok(Body::Held(Blob::new_with_u8_array_sequence(&parts)?))
        }
    }
}
