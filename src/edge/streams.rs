//! Bodies that pass through the gateway without being held whole: a stream is read up to a
//! limit, and if it goes on past it, what was read is replayed ahead of the rest (the chunks
//! stay JavaScript values; nothing past the limit is copied into the worker's memory).

use futures_util::{stream, StreamExt};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{self, ReadableStream};

/// A body either held (small enough to send twice or to read) or still streaming.
#[derive(Clone)]
pub enum Body {
    Whole(Vec<u8>),
    Stream(ReadableStream),
}

impl Body {
    /// The value `fetch` takes as a body. A stream can be sent only once.
    pub fn into_js(self) -> JsValue {
        match self {
            Self::Whole(bytes) => Uint8Array::from(bytes.as_slice()).into(),
            Self::Stream(stream) => stream.into(),
        }
    }
}

/// Reads `body` whole if it ends within `limit` bytes; otherwise gives back a stream that
/// yields what was read and then the rest.
pub async fn peek(body: ReadableStream, limit: usize) -> Result<Body, JsValue> {
    let mut chunks = wasm_streams::ReadableStream::from_raw(body.unchecked_into()).into_stream();
    let (mut seen, mut seen_len) = (Vec::new(), 0);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        seen_len += Uint8Array::new(&chunk).length() as usize;
        seen.push(chunk);
        if seen_len > limit {
            let replay = stream::iter(seen.into_iter().map(Ok)).chain(chunks);
            let raw = wasm_streams::ReadableStream::from_stream(replay).into_raw();
            return Ok(Body::Stream(raw.unchecked_into()));
        }
    }
    let mut whole = Vec::with_capacity(seen_len);
    for chunk in seen {
        whole.extend_from_slice(&Uint8Array::new(&chunk).to_vec());
    }
    Ok(Body::Whole(whole))
}

/// A whole body in one read by the runtime (cheaper than pumping the stream chunk by chunk
/// through the worker).
pub async fn whole(body: &ReadableStream) -> Result<Vec<u8>, JsValue> {
    let reader = web_sys::Response::new_with_opt_readable_stream(Some(body))?;
    let buffer = JsFuture::from(reader.array_buffer()?).await?;
    Ok(Uint8Array::new(&buffer).to_vec())
}
