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

use super::error::Error;
use super::stage::Stage;
use crate::body::BoxError;
use crate::web;

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
/// in: zstd, then gzip, then br. gzip goes before br although br's output is
/// smaller: at the fast levels below, re-encoding the 64 KiB benchmark page
/// costs brotli about four times gzip's CPU (docs/performance.md, B2) for
/// a quarter fewer bytes, and the proxy pays it on every response.
pub fn choose(request: &HeaderMap) -> Option<Coding> {
    let accepted: Vec<(String, f32)> = web::tokens(request, ACCEPT_ENCODING)
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
    [Coding::Zstd, Coding::Gzip, Coding::Brotli]
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
    let wanted: Vec<&str> = web::tokens(request, ACCEPT_ENCODING)
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

/// The most content codings stacked on one body the proxy accepts: each
/// multiplies what a few bytes may decode to.
pub const MAX_STACKED: usize = 2;

/// Refuses (502) a response with more than [`MAX_STACKED`] content codings
/// (whether or not its body would be rewritten: nothing legitimate sends
/// them).
pub fn refuse_deep_stacking(headers: &HeaderMap) -> Result<(), Error> {
    let Some(codings) = parse_content_encoding(headers) else {
        return Ok(());
    };
    if codings.len() <= MAX_STACKED {
        return Ok(());
    }
    Err(Error::StackedEncodings {
        codings: codings.len(),
        max: MAX_STACKED,
        header: headers.get(http::header::CONTENT_ENCODING).cloned(),
    })
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
    GzipE(codec::GzipEncoder<Vec<u8>>),
    BrotliE(codec::BrotliEncoder<Vec<u8>>),
    ZstdE(codec::ZstdEncoder<Vec<u8>>),
    DeflateE(codec::ZlibEncoder<Vec<u8>>),
}

macro_rules! each {
    ($w:expr, $v:ident => $e:expr) => {
        match $w {
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

/// An encoder as a pipeline stage: its output is never much larger than its
/// input, so it writes into a `Vec` in one go.
pub struct Codec {
    writer: Writer,
}

/// Levels for a body compressed again on every response, while it streams:
/// fast ones. Measured on the 64 KiB benchmark page (docs/performance.md,
/// B2): gzip at 1 (nginx's default `gzip_comp_level`) is about 3× as fast
/// as at 5 for a third more bytes; brotli at quality 2 is 2.5× as fast as
/// at 4 for 14 % more bytes, and still smaller than gzip.
const GZIP_LEVEL: i32 = 1;
const BROTLI_QUALITY: i32 = 2;
/// Brotli's window, as a power of two: 256 KiB. Its default (4 MiB) sizes
/// the encoder's tables for large files, set up again for each response:
/// twice the time for a page, for no smaller output.
const BROTLI_WINDOW: i32 = 18;
/// zstd at level 1: about twice as fast as at 3 for 4 % more bytes, and
/// smaller than gzip at 1. Its window (as a power of two, 256 KiB) instead
/// of level 3's 2 MiB: the encoder's buffers are allocated for every
/// response, and each page of them is faulted in and zeroed.
const ZSTD_LEVEL: i32 = 1;
const ZSTD_WINDOW: u32 = 18;

impl Codec {
    pub fn encoder(coding: Coding) -> Codec {
        let writer = match coding {
            Coding::Gzip => Writer::GzipE(codec::GzipEncoder::with_quality(
                Vec::new(),
                Level::Precise(GZIP_LEVEL),
            )),
            Coding::Brotli => Writer::BrotliE(codec::BrotliEncoder::with_params(
                Vec::new(),
                async_compression::brotli::EncoderParams::default()
                    .quality(Level::Precise(BROTLI_QUALITY))
                    .window_size(BROTLI_WINDOW),
            )),
            Coding::Zstd => Writer::ZstdE(codec::ZstdEncoder::with_quality_and_params(
                Vec::new(),
                Level::Precise(ZSTD_LEVEL),
                &[async_compression::zstd::CParameter::window_log(ZSTD_WINDOW)],
            )),
            Coding::Deflate => Writer::DeflateE(codec::ZlibEncoder::with_quality(
                Vec::new(),
                Level::Precise(GZIP_LEVEL),
            )),
        };
        Codec { writer }
    }
}

fn is_zlib(first: &[u8]) -> bool {
    first.len() >= 2
        && first[0] & 0x0f == 8
        && (u16::from(first[0]) << 8 | u16::from(first[1])) % 31 == 0
}

impl Stage for Codec {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
        if input.is_empty() {
            return Ok(());
        }
        each!(&mut self.writer, w => {
            let mut rest = input;
            while !rest.is_empty() {
                let n = ready(|cx| Pin::new(&mut *w).poll_write(cx, rest)).map_err(|e| format!("encoding the body: {e}"))?;
                if n == 0 {
                    return Err("encoding the body: the codec took no input".into());
                }
                rest = &rest[n..];
            }
            ready(|cx| Pin::new(&mut *w).poll_flush(cx)).map_err(|e| format!("encoding the body: {e}"))?;
            out.append(w.get_mut());
        });
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
        each!(&mut self.writer, w => {
            ready(|cx| Pin::new(&mut *w).poll_shutdown(cx)).map_err(|e| format!("encoding the body: {e}"))?;
            out.append(w.get_mut());
        });
        Ok(())
    }
}

/// Where a decoder writes: a buffer that takes at most `room` bytes and then
/// says it is full (pending), so a decoder never produces more than that
/// before its output is taken away. A few compressed bytes can stand for
/// gigabytes; this is what keeps them from being produced at once.
struct Capped {
    buf: Vec<u8>,
    room: usize,
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let free = self.room.saturating_sub(self.buf.len());
        if free == 0 {
            return Poll::Pending;
        }
        let n = free.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per body, never moved once built"
)]
enum Decoding {
    Gzip(codec::GzipDecoder<Capped>),
    Zlib(codec::ZlibDecoder<Capped>),
    Deflate(codec::DeflateDecoder<Capped>),
    Brotli(codec::BrotliDecoder<Capped>),
    Zstd(codec::ZstdDecoder<Capped>),
}

macro_rules! each_decoding {
    ($w:expr, $v:ident => $e:expr) => {
        match $w {
            Decoding::Gzip($v) => $e,
            Decoding::Zlib($v) => $e,
            Decoding::Deflate($v) => $e,
            Decoding::Brotli($v) => $e,
            Decoding::Zstd($v) => $e,
        }
    };
}

/// One content coding undone, pulled from in bounded pieces: input is
/// queued with [`Decoder::give`], and [`Decoder::take`] hands out at most
/// a piece of decoded output at a time, decoding no further ahead.
pub struct Decoder {
    coding: Coding,
    /// `None` until the first bytes are seen (deflate has two forms).
    decoding: Option<Decoding>,
    /// Compressed bytes given and not yet taken in by the decoder.
    input: Vec<u8>,
    /// The decoder has taken all input and written all output it had.
    flushed: bool,
    done: bool,
}

/// How much of the input queue a decoder is handed at once.
const INPUT_SLICE: usize = 16 * 1024;

impl Decoder {
    pub fn new(coding: Coding) -> Decoder {
        Decoder {
            coding,
            decoding: None,
            input: Vec::new(),
            flushed: true,
            done: false,
        }
    }

    /// Queues compressed bytes.
    pub fn give(&mut self, input: &[u8]) {
        if !input.is_empty() {
            self.input.extend_from_slice(input);
            self.flushed = false;
        }
    }

    /// Whether the decoder has ended: everything given was decoded and the
    /// stream's end was checked.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends at most `piece` bytes of decoded output to `out`. Nothing
    /// appended means the decoder needs more input, or (with `end`, no more
    /// input coming) that it is done.
    pub fn take(&mut self, out: &mut Vec<u8>, piece: usize, end: bool) -> Result<(), BoxError> {
        if self.done {
            return Ok(());
        }
        if self.decoding.is_none() {
            // HTTP's deflate is zlib-wrapped, but servers sending raw
            // deflate exist; a zlib header tells them apart.
            if self.coding == Coding::Deflate && self.input.len() < 2 && !end {
                return Ok(());
            }
            if self.input.is_empty() && end {
                // An empty body decodes to nothing.
                self.done = true;
                return Ok(());
            }
            let sink = || Capped {
                buf: Vec::new(),
                room: piece,
            };
            self.decoding = Some(match self.coding {
                Coding::Gzip => Decoding::Gzip(codec::GzipDecoder::new(sink())),
                Coding::Brotli => Decoding::Brotli(codec::BrotliDecoder::new(sink())),
                Coding::Zstd => Decoding::Zstd(codec::ZstdDecoder::new(sink())),
                Coding::Deflate if is_zlib(&self.input) => {
                    Decoding::Zlib(codec::ZlibDecoder::new(sink()))
                }
                Coding::Deflate => Decoding::Deflate(codec::DeflateDecoder::new(sink())),
            });
        }
        let error = |e: std::io::Error| -> BoxError {
            format!("decoding the {} body: {e}", self.coding.name()).into()
        };
        let decoding = self.decoding.as_mut().expect("set above");
        let mut cx = Context::from_waker(Waker::noop());
        each_decoding!(decoding, w => {
            w.get_mut().room = piece;
            // Pending below means the output is full: the piece is ready.
            loop {
                if w.get_mut().buf.len() >= piece {
                    break;
                }
                if !self.input.is_empty() {
                    let slice = self.input.len().min(INPUT_SLICE);
                    match Pin::new(&mut *w).poll_write(&mut cx, &self.input[..slice]) {
                        Poll::Ready(Ok(0)) => return Err(format!("decoding the {} body: the decoder took no input", self.coding.name()).into()),
                        Poll::Ready(Ok(n)) => {
                            self.input.drain(..n);
                        }
                        Poll::Ready(Err(e)) => return Err(error(e)),
                        Poll::Pending => break,
                    }
                } else if !self.flushed {
                    match Pin::new(&mut *w).poll_flush(&mut cx) {
                        Poll::Ready(Ok(())) => self.flushed = true,
                        Poll::Ready(Err(e)) => return Err(error(e)),
                        Poll::Pending => break,
                    }
                } else if end {
                    match Pin::new(&mut *w).poll_shutdown(&mut cx) {
                        Poll::Ready(Ok(())) => {
                            self.done = true;
                            break;
                        }
                        Poll::Ready(Err(e)) => return Err(error(e)),
                        Poll::Pending => break,
                    }
                } else {
                    break;
                }
            }
            out.append(&mut w.get_mut().buf);
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
                let decoded = run_chunked(Pipeline::default().decode(coding), &encoded, size);
                assert!(decoded == text, "{coding:?} at chunk size {size}");
            }
        }
    }

    #[test]
    fn raw_deflate_is_read_too() {
        let mut raw = codec::DeflateEncoder::new(Vec::new());
        ready(|cx| Pin::new(&mut raw).poll_write(cx, b"raw deflate body")).unwrap();
        ready(|cx| Pin::new(&mut raw).poll_shutdown(cx)).unwrap();
        let raw = raw.into_inner();
        assert!(!is_zlib(&raw));
        let zlib = run_chunked(
            Pipeline::default().then(Codec::encoder(Coding::Deflate)),
            b"x",
            1,
        );
        assert!(is_zlib(&zlib));
        for size in [1, 2, raw.len()] {
            assert_eq!(
                run_chunked(Pipeline::default().decode(Coding::Deflate), &raw, size),
                b"raw deflate body",
                "chunk size {size}"
            );
        }
    }

    /// Zeros compressed twice: a few kilobytes that decode to `size` bytes.
    fn bomb(size: usize) -> Vec<u8> {
        let mut once = Pipeline::default().then(Codec::encoder(Coding::Gzip));
        let zeros = vec![0u8; 1024 * 1024];
        let mut inner = Vec::new();
        for _ in 0..size / zeros.len() {
            inner.extend(once.push(&zeros).unwrap());
        }
        inner.extend(once.finish().unwrap());
        run_chunked(
            Pipeline::default().then(Codec::encoder(Coding::Gzip)),
            &inner,
            inner.len(),
        )
    }

    #[test]
    fn stacked_decoders_hand_out_bounded_pieces() {
        let body = bomb(256 * 1024 * 1024);
        assert!(body.len() < 64 * 1024, "{} bytes", body.len());
        let mut p = Pipeline::default()
            .decode(Coding::Gzip)
            .decode(Coding::Gzip);
        p.feed(&body);
        let (mut total, mut largest) = (0usize, 0usize);
        while let Some(piece) = p.next(true).unwrap() {
            total += piece.len();
            largest = largest.max(piece.len());
        }
        assert_eq!(total, 256 * 1024 * 1024);
        assert!(largest <= 64 * 1024, "a piece of {largest} bytes");
    }

    #[test]
    fn decoded_size_is_bounded() {
        let body = bomb(8 * 1024 * 1024);
        let mut p = Pipeline::bounded(1024 * 1024)
            .decode(Coding::Gzip)
            .decode(Coding::Gzip);
        p.feed(&body);
        let mut out = 0;
        let error = loop {
            match p.next(true) {
                Ok(Some(piece)) => out += piece.len(),
                Ok(None) => panic!("the whole bomb came out ({out} bytes)"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(out <= 1024 * 1024, "{out} bytes out before the error");
        assert!(error.contains("max_decoded_bytes"), "{error}");
    }

    #[test]
    fn more_than_two_codings_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip, gzip"),
        );
        assert!(refuse_deep_stacking(&h).is_ok());
        h.insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip, br, gzip"),
        );
        assert_eq!(
            refuse_deep_stacking(&h).unwrap_err().status(),
            http::StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn client_choice() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br;q=0.9"),
        );
        // gzip costs the proxy far less CPU than br (see `choose`).
        assert_eq!(choose(&h), Some(Coding::Gzip));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0"));
        assert_eq!(choose(&h), Some(Coding::Brotli));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, br, zstd"));
        assert_eq!(choose(&h), Some(Coding::Zstd));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip, zstd;q=0"));
        assert_eq!(choose(&h), Some(Coding::Gzip));
        assert_eq!(upstream_accept(&h), "gzip, zstd;q=0");
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("dcb, sdch"));
        assert_eq!(choose(&h), None);
        assert_eq!(upstream_accept(&h), "identity");
    }
}
