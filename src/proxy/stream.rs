//! A response body pushed through a chain of [`Stage`]s (decode, rewrite,
//! encode) as its frames arrive: each frame's output is sent on at once, so
//! no body is ever held whole and a slow upstream is seen as slow, not
//! stalled.
//!
//! Decoding comes first and is pulled from in bounded pieces (a few bytes of
//! gzip can stand for gigabytes): each piece goes through the other stages
//! and out as a frame before the next is decoded, and the decoded size of a
//! document is bounded. Past the bound, or on a body that does not decode,
//! the client's response is aborted, never ended as if it were complete.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tracing::warn;

use super::compress::{Coding, Decoder};
use super::stage::Stage;
use crate::body::{self, Body, BoxError};
use crate::telemetry;

/// The most decoded bytes handled at once: a decoder stops there until the
/// piece has gone through the stages after it.
const PIECE: usize = 64 * 1024;

/// Decoders (outermost coding first), then stages applied in order.
#[derive(Default)]
pub struct Pipeline {
    decoders: Vec<Decoder>,
    stages: Vec<Box<dyn Stage>>,
    /// Input not yet through the stages, when there is no decoder.
    plain: Vec<u8>,
    /// Bytes that went into the stages, and the most allowed.
    decoded: u64,
    limit: Option<u64>,
    finished: bool,
}

impl Pipeline {
    /// A pipeline whose decoded input may not exceed `limit` bytes.
    pub fn bounded(limit: u64) -> Pipeline {
        Pipeline {
            limit: Some(limit),
            ..Pipeline::default()
        }
    }

    /// Undoes a content coding before the stages; call once per coding,
    /// the last one applied first.
    pub fn decode(mut self, coding: Coding) -> Pipeline {
        self.decoders.push(Decoder::new(coding));
        self
    }

    pub fn then(mut self, stage: impl Stage + 'static) -> Pipeline {
        self.stages.push(Box::new(stage));
        self
    }

    /// Whether the input decoded past the bound (what made it fail).
    pub fn over_limit(&self) -> bool {
        self.limit.is_some_and(|l| self.decoded > l)
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty() && self.decoders.is_empty()
    }

    /// Queues input from the body.
    pub fn feed(&mut self, input: &[u8]) {
        match self.decoders.first_mut() {
            Some(d) => d.give(input),
            None => self.plain.extend_from_slice(input),
        }
    }

    /// The next piece of output; `None` when more input is needed or, with
    /// `end` (the input has ended), when everything was output.
    pub fn next(&mut self, end: bool) -> Result<Option<Vec<u8>>, BoxError> {
        loop {
            let Some(piece) = self.next_decoded(end)? else {
                if end && !self.finished {
                    self.finished = true;
                    let out = self.finish_stages()?;
                    if !out.is_empty() {
                        return Ok(Some(out));
                    }
                }
                return Ok(None);
            };
            self.decoded += piece.len() as u64;
            if let Some(limit) = self.limit.filter(|l| self.decoded > *l) {
                telemetry::limit_hit(telemetry::limit::DECODED_SIZE);
                return Err(format!(
                    "the document decodes to more than {limit} bytes (proxy.max_decoded_bytes)"
                )
                .into());
            }
            let out = self.run_stages(0, piece)?;
            if !out.is_empty() {
                return Ok(Some(out));
            }
        }
    }

    /// The next piece of decoded input for the stages. The innermost
    /// decoder is drained first, so no decoder runs ahead of the next one.
    fn next_decoded(&mut self, end: bool) -> Result<Option<Vec<u8>>, BoxError> {
        if self.decoders.is_empty() {
            if self.plain.is_empty() {
                return Ok(None);
            }
            // Handed on whole when it fits, not copied.
            if self.plain.len() <= PIECE {
                return Ok(Some(std::mem::take(&mut self.plain)));
            }
            let rest = self.plain.split_off(PIECE);
            return Ok(Some(std::mem::replace(&mut self.plain, rest)));
        }
        'again: loop {
            for i in (0..self.decoders.len()).rev() {
                let input_ended = end && (i == 0 || self.decoders[i - 1].is_done());
                let mut piece = Vec::new();
                self.decoders[i].take(&mut piece, PIECE, input_ended)?;
                if piece.is_empty() {
                    continue;
                }
                if i + 1 == self.decoders.len() {
                    return Ok(Some(piece));
                }
                self.decoders[i + 1].give(&piece);
                continue 'again;
            }
            // A decoder whose input ended while it waited on the one before
            // gets its turn to finish.
            if end
                && self.decoders.iter().any(|d| !d.is_done())
                && self.decoders.iter().rev().skip(1).all(Decoder::is_done)
            {
                continue;
            }
            return Ok(None);
        }
    }

    fn run_stages(&mut self, first: usize, mut data: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        for stage in &mut self.stages[first..] {
            let mut out = Vec::with_capacity(data.len() + 256);
            stage.push(&data, &mut out)?;
            data = out;
        }
        Ok(data)
    }

    fn finish_stages(&mut self) -> Result<Vec<u8>, BoxError> {
        let mut result = Vec::new();
        for i in 0..self.stages.len() {
            // What stage i holds back still has to go through the stages
            // after it.
            let mut held = Vec::new();
            self.stages[i].finish(&mut held)?;
            result.append(&mut held);
            if i + 1 < self.stages.len() {
                result = self.run_stages(i + 1, result)?;
            }
        }
        Ok(result)
    }

    /// All output for `input` (tests and benchmarks; a body is pulled from
    /// piece by piece instead).
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<u8>, BoxError> {
        self.feed(input);
        let mut out = Vec::new();
        while let Some(piece) = self.next(false)? {
            out.extend(piece);
        }
        Ok(out)
    }

    /// All output left once the input has ended.
    pub fn finish(&mut self) -> Result<Vec<u8>, BoxError> {
        let mut out = Vec::new();
        while let Some(piece) = self.next(true)? {
            out.extend(piece);
        }
        Ok(out)
    }

    /// The body `inner` transformed by these stages.
    pub fn apply(self, inner: Body) -> Body {
        body::boxed(Transformed {
            inner,
            pipeline: Some(self),
            ended: false,
            spent: Duration::ZERO,
        })
    }
}

struct Transformed {
    inner: Body,
    pipeline: Option<Pipeline>,
    /// The inner body has ended.
    ended: bool,
    /// Time spent in the stages so far, recorded once the body is done.
    spent: Duration,
}

impl Drop for Transformed {
    /// Finished, failed, or dropped by a client that went away: the time
    /// spent counts the same.
    fn drop(&mut self) {
        metrics::histogram!(telemetry::REWRITE_DURATION).record(self.spent.as_secs_f64());
    }
}

impl HttpBody for Transformed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let ended = self.ended;
            let Some(pipeline) = self.pipeline.as_mut() else {
                return Poll::Ready(None);
            };
            let started = Instant::now();
            let next = pipeline.next(ended);
            self.spent += started.elapsed();
            match next {
                Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                Ok(None) if ended => {
                    self.pipeline = None;
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => {
                    // The client must not take what it got for the whole
                    // document: the error aborts the response.
                    warn!(error = %e, "rewritten body aborted");
                    self.pipeline = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers describe the upstream's bytes, not ours.
                    if let Ok(data) = frame.into_data() {
                        let started = Instant::now();
                        self.pipeline.as_mut().expect("checked above").feed(&data);
                        self.spent += started.elapsed();
                    }
                }
                Some(Err(e)) => {
                    self.pipeline = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => self.ended = true,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pipeline.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `input` through `pipeline` cut into `size`-byte chunks.
    pub fn run_chunked(mut pipeline: Pipeline, input: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in input.chunks(size.max(1)) {
            out.extend(pipeline.push(chunk).unwrap());
        }
        out.extend(pipeline.finish().unwrap());
        out
    }

    struct Upper;
    impl Stage for Upper {
        fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError> {
            out.extend(input.to_ascii_uppercase());
            Ok(())
        }
        fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError> {
            out.extend_from_slice(b"!");
            Ok(())
        }
    }

    #[test]
    fn held_back_output_goes_through_later_stages() {
        let out = run_chunked(Pipeline::default().then(Upper).then(Upper), b"ab", 1);
        assert_eq!(out, b"AB!!");
    }
}
