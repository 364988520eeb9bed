//! The streaming HTML rewrite: lol_html sees the body chunk by chunk as it
//! arrives from the upstream and its output is sent on at once, so no
//! document is ever held whole.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use lol_html::html_content::ContentType;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{MemorySettings, element};
use tracing::warn;

use crate::body::{self, Body, BoxError};

type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// Rewrites `inner` (an HTML body) so the agent script is the first thing in
/// `<head>`.
pub fn inject_agent(inner: Body, prefix: &str, memory_limit: usize) -> Body {
    let tag = format!("<script src=\"{prefix}agent.js\"></script>");
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink_out = out.clone();
    let sink: Sink = Box::new(move |chunk: &[u8]| sink_out.lock().expect("sink lock").extend_from_slice(chunk));
    let mut injected = false;
    let settings = Settings::new_send()
        .with_memory_settings(
            // Past the limit lol_html stops rewriting and passes the rest of
            // the document through as it came.
            MemorySettings::new()
                .with_max_allowed_memory_usage(memory_limit)
                .with_graceful_bail_out_on_memory_limit_exceeded(true),
        )
        .append_element_content_handler(element!("head", move |el| {
            if !injected {
                el.prepend(&tag, ContentType::Html);
                injected = true;
            }
            Ok(())
        }));
    let rewriter = HtmlRewriter::new(settings, sink);
    body::boxed(RewriteBody { inner, rewriter: Some(rewriter), out })
}

struct RewriteBody {
    inner: Body,
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl RewriteBody {
    fn take_output(&self) -> Option<Bytes> {
        let mut out = self.out.lock().expect("sink lock");
        (!out.is_empty()).then(|| Bytes::from(std::mem::take(&mut *out)))
    }
}

impl HttpBody for RewriteBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(rewriter) = self.rewriter.as_mut() {
                            if let Err(e) = rewriter.write(&data) {
                                warn!(error = %e, "HTML rewrite stopped; passing the rest through");
                                self.rewriter = None;
                            }
                        } else {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        if let Some(bytes) = self.take_output() {
                            return Poll::Ready(Some(Ok(Frame::data(bytes))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    if let Some(rewriter) = self.rewriter.take() {
                        if let Err(e) = rewriter.end() {
                            warn!(error = %e, "HTML rewrite failed at the end of the document");
                        }
                    }
                    return Poll::Ready(self.take_output().map(|b| Ok(Frame::data(b))));
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
