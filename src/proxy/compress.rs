//! Content-Encoding for bodies the proxy rewrites: the upstream's gzip,
//! deflate, br or zstd decoded in a stream, and the rewritten body encoded
//! again in what the client accepts. Bodies the proxy does not rewrite are
//! never decoded.
//!
//! The codecs are async-compression's writers over a `Vec`: a `Vec` never
//! makes a writer wait, so each chunk is pushed through synchronously and
//! flushed, and what a chunk produces is sent at once (a streamed page
//! renders progressively through the proxy too).

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use async_compression::Level;
use async_compression::tokio::write as codec;
use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, HeaderValue};
use tokio::io::AsyncWrite;

use super::stream::Stage;
use crate::body::BoxError;

/// The encodings the proxy can decode, as offered upstream.
pub const UPSTREAM_ACCEPT: &str = "gzip, deflate, br, zstd";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    pub fn parse(value: &str) -> Option<Coding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// What the client's `Accept-Encoding` lets the proxy send a rewritten body
/// in: the cheapest good codec first (zstd, then br, then gzip).
pub fn choose(request: &HeaderMap) -> Option<Coding> {
    let accepted: Vec<(String, f32)> = request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name, q)
        })
        .collect();
    [Coding::Zstd, Coding::Brotli, Coding::Gzip]
        .into_iter()
        .find(|c| {
            accepted
                .iter()
                .any(|(name, q)| name == c.name() && *q > 0.0)
        })
}

/// The `Accept-Encoding` to send upstream: the client's wishes limited to
/// what the proxy can decode when it must rewrite.
pub fn upstream_accept(request: &HeaderMap) -> HeaderValue {
    let wanted: Vec<&str> = request
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|item| {
            let name = item.split(';').next().unwrap_or("").trim();
            Coding::parse(name).is_some() || name.eq_ignore_ascii_case("identity")
        })
        .collect();
    if wanted.is_empty() {
        HeaderValue::from_static("identity")
    } else {
        HeaderValue::from_str(&wanted.join(", ")).unwrap_or(HeaderValue::from_static("identity"))
    }
}

/// The Content-Encoding header's codings, in the order they were applied;
/// `None` when one of them is unknown.
pub fn parse_content_encoding(headers: &HeaderMap) -> Option<Vec<Coding>> {
    let mut codings = Vec::new();
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        for item in value.to_str().ok()?.split(',') {
            let item = item.trim();
            if item.is_empty() || item.eq_ignore_ascii_case("identity") {
                continue;
            }
            codings.push(Coding::parse(item)?);
        }
    }
    Some(codings)
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per body, never moved once built"
)]
enum Writer {
    GzipD(codec::GzipDecoder<Vec<u8>>),
    ZlibD(codec::ZlibDecoder<Vec<u8>>),
    DeflateD(codec::DeflateDecoder<Vec<u8>>),
    BrotliD(codec::BrotliDecoder<Vec<u8>>),
    ZstdD(codec::ZstdDecoder<Vec<u8>>),
    GzipE(codec::GzipEncoder<Vec<u8>>),
    BrotliE(codec::BrotliEncoder<Vec<u8>>),
    ZstdE(codec::ZstdEncoder<Vec<u8>>),
    DeflateE(codec::ZlibEncoder<Vec<u8>>),
}

macro_rules! each {
    ($w:expr, $v:ident => $e:expr) => {
        match $w {
            Writer::GzipD($v) => $e,
            Writer::ZlibD($v) => $e,
            Writer::DeflateD($v) => $e,
            Writer::BrotliD($v) => $e,
            Writer::ZstdD($v) => $e,
            Writer::GzipE($v) => $e,
            Writer::BrotliE($v) => $e,
            Writer::ZstdE($v) => $e,
            Writer::DeflateE($v) => $e,
        }
    };
}

/// Drives a writer over a `Vec` to completion: it is never pending.
fn ready<T>(poll: impl FnOnce(&mut Context<'_>) -> Poll<std::io::Result<T>>) -> std::io::Result<T> {
    match poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(std::io::Error::other("codec writer over a Vec was pending")),
    }
}

/// A decoder or an encoder as a pipeline stage.
pub struct Codec {
    /// `None` until a decoder sees its first bytes (deflate has two forms).
    writer: Option<Writer>,
    pending: Option<Coding>,
    /// Bytes held until there are enough to tell deflate's two forms apart.
    held: Vec<u8>,
    encode: bool,
}

impl Codec {
    pub fn decoder(coding: Coding) -> Codec {
        Codec {
            writer: None,
            pending: Some(coding),
            held: Vec::new(),
            encode: false,
        }
    }

    pub fn encoder(coding: Coding) -> Codec {
        let writer = match coding {
            Coding::Gzip => Writer::GzipE(codec::GzipEncoder::with_quality(
                Vec::new(),
                Level::Precise(5),
            )),
            Coding::Brotli => Writer::BrotliE(codec::BrotliEncoder::with_quality(
                Vec::new(),
                Level::Precise(4),
            )),
            Coding::Zstd => Writer::ZstdE(codec::ZstdEncoder::with_quality(
                Vec::new(),
                Level::Precise(3),
            )),
            Coding::Deflate => Writer::DeflateE(codec::ZlibEncoder::with_quality(
                Vec::new(),
                Level::Precise(5),
            )),
        };
        Codec {
            writer: Some(writer),
            pending: None,
            held: Vec::new(),
            encode: true,
        }
    }

    fn writer(&mut self, first: &[u8]) -> &mut Writer {
        if let Some(coding) = self.pending.take() {
            self.writer = Some(match coding {
                Coding::Gzip => Writer::GzipD(codec::GzipDecoder::new(Vec::new())),
                Coding::Brotli => Writer::BrotliD(codec::BrotliDecoder::new(Vec::new())),
                Coding::Zstd => Writer::ZstdD(codec::ZstdDecoder::new(Vec::new())),
                // HTTP's deflate is zlib-wrapped, but servers sending raw
                // deflate exist; a zlib header tells them apart.
                Coding::Deflate if is_zlib(first) => {
                    Writer::ZlibD(codec::ZlibDecoder::new(Vec::new()))
                }
                Coding::Deflate => Writer::DeflateD(codec::DeflateDecoder::new(Vec::new())),
            });
        }
        self.writer.as_mut().expect("writer is set")
    }
}

fn is_zlib(first: &[u8]) -> bool {
    first.len() >= 2
        && first[0] & 0x0f == 8
        && (u16::from(first[0]) << 8 | u16::from(first[1])) % 31 == 0
}

impl Stage for Codec {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        if self.pending == Some(Coding::Deflate) && self.held.len() + input.len() < 2 {
            self.held.extend_from_slice(input);
            return Ok(());
        }
        let joined;
        let input = if self.held.is_empty() {
            input
        } else {
            joined = [std::mem::take(&mut self.held), input.to_vec()].concat();
            &joined
        };
        if input.is_empty() {
            return Ok(());
        }
        let what = if self.encode { "encoding" } else { "decoding" };
        let w = self.writer(input);
        each!(w, w => {
            let mut rest = input;
            while !rest.is_empty() {
                let n = ready(|cx| Pin::new(&mut *w).poll_write(cx, rest)).map_err(|e| format!("{what} the body: {e}"))?;
                if n == 0 {
                    return Err(format!("{what} the body: the codec took no input").into());
                }
                rest = &rest[n..];
            }
            ready(|cx| Pin::new(&mut *w).poll_flush(cx)).map_err(|e| format!("{what} the body: {e}"))?;
            out.append(w.get_mut());
        });
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        let what = if self.encode { "encoding" } else { "decoding" };
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.pending = self.pending.map(|_| Coding::Deflate);
            let w = self.writer(&held);
            each!(w, w => {
                ready(|cx| Pin::new(&mut *w).poll_write(cx, &held)).map_err(|e| format!("{what} the body: {e}"))?;
            });
        }
        if self.writer.is_none() {
            // An empty body: an encoder still writes its (empty) frame.
            return Ok(());
        }
        let w = self.writer.as_mut().expect("checked above");
        each!(w, w => {
            ready(|cx| Pin::new(&mut *w).poll_shutdown(cx)).map_err(|e| format!("{what} the body: {e}"))?;
            out.append(w.get_mut());
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stream::Pipeline;
    use crate::proxy::stream::tests::run_chunked;

    #[test]
    fn every_coding_round_trips_at_every_chunk_size() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i} of the page\n").into_bytes())
            .collect();
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let encoded = run_chunked(
                Pipeline::default().then(Codec::encoder(coding)),
                &text,
                4096,
            );
            assert!(
                encoded.len() < text.len() / 3,
                "{coding:?} did not compress"
            );
            for size in [1, 17, 1000, encoded.len()] {
                let decoded = run_chunked(
                    Pipeline::default().then(Codec::decoder(coding)),
                    &encoded,
                    size,
                );
                assert!(decoded == text, "{coding:?} at chunk size {size}");
            }
        }
    }

    #[test]
    fn raw_deflate_is_read_too() {
        let raw = run_chunked(
            Pipeline::default().then(Codec {
                writer: Some(Writer::DeflateE(codec::ZlibEncoder::new(Vec::new()))),
                pending: None,
                held: Vec::new(),
                encode: true,
            }),
            b"x",
            1,
        );
        assert!(is_zlib(&raw));
        assert!(!is_zlib(b"\xf3\x48"));
    }

    #[test]
    fn client_choice() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br;q=0.9"),
        );
        assert_eq!(choose(&h), Some(Coding::Brotli));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, zstd;q=0"));
        assert_eq!(choose(&h), Some(Coding::Gzip));
        assert_eq!(upstream_accept(&h), "gzip, zstd;q=0");
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("dcb, sdch"));
        assert_eq!(choose(&h), None);
        assert_eq!(upstream_accept(&h), "identity");
    }
}
