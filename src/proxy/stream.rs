//! A response body pushed through a chain of [`Stage`]s (decode, rewrite,
//! encode) as its frames arrive: each frame's output is sent on at once, so
//! no body is ever held whole and a slow upstream is seen as slow, not
//! stalled.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{self, Body, BoxError};
use crate::telemetry;

/// One step of a body transformation. Stages are synchronous: they only
/// move bytes from `input` to `out`.
pub trait Stage: Send {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), BoxError>;
    /// The input has ended: write whatever is held back.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), BoxError>;
}

/// Stages applied in order.
#[derive(Default)]
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
}

impl Pipeline {
    pub fn then(mut self, stage: impl Stage + 'static) -> Pipeline {
        self.stages.push(Box::new(stage));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    pub fn push(&mut self, input: &[u8]) -> Result<Vec<u8>, BoxError> {
        self.run_from(0, input)
    }

    fn run_from(&mut self, first: usize, input: &[u8]) -> Result<Vec<u8>, BoxError> {
        let mut data = input.to_vec();
        for stage in &mut self.stages[first..] {
            let mut out = Vec::with_capacity(data.len() + 256);
            stage.push(&data, &mut out)?;
            data = out;
        }
        Ok(data)
    }

    pub fn finish(&mut self) -> Result<Vec<u8>, BoxError> {
        let mut result = Vec::new();
        for i in 0..self.stages.len() {
            // What stage i holds back still has to go through the stages
            // after it.
            let mut held = Vec::new();
            self.stages[i].finish(&mut held)?;
            result = [result, held].concat();
            if i + 1 < self.stages.len() {
                result = self.run_from(i + 1, &result)?;
            }
        }
        Ok(result)
    }

    /// The body `inner` transformed by these stages.
    pub fn apply(self, inner: Body) -> Body {
        body::boxed(Transformed {
            inner,
            pipeline: Some(self),
            spent: Duration::ZERO,
        })
    }
}

struct Transformed {
    inner: Body,
    pipeline: Option<Pipeline>,
    /// Time spent in the stages so far, recorded once the body is done.
    spent: Duration,
}

impl Transformed {
    fn timed<T>(&mut self, run: impl FnOnce(&mut Pipeline) -> T) -> T {
        let started = Instant::now();
        let out = run(self
            .pipeline
            .as_mut()
            .expect("only run while the pipeline is there"));
        self.spent += started.elapsed();
        out
    }
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
            if self.pipeline.is_none() {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.timed(|p| p.push(&data))?;
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    // Trailers describe the upstream's bytes, not ours.
                    Err(_trailers) => {}
                },
                Some(Err(e)) => {
                    self.pipeline = None;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    let out = self.timed(Pipeline::finish);
                    self.pipeline = None;
                    let out = out?;
                    return Poll::Ready(
                        (!out.is_empty()).then(|| Ok(Frame::data(Bytes::from(out)))),
                    );
                }
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
