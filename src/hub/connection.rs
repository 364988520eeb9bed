//! One participant's WebSocket, written against a generic `Sink`/`Stream`
//! of messages so it runs on a real socket or on channels in tests.
//!
//! Two tasks per connection that end each other: the reader parses, checks
//! and dispatches what the client sends; the writer delivers what the hub
//! queued for it and, once the connection joined a session, the session's
//! commands from the store's feed, resynchronising from the store when it
//! falls behind.
//!
//! Memory per connection is bounded by bytes: what the hub queued for it
//! ([`Outbox`], `hub.max_outbound_bytes`), one message being read (at most
//! four times `hub.max_message_bytes`, tungstenite refuses larger frames and
//! messages), and what is being written: short messages batched up to
//! [`FRAGMENT`] bytes, longer ones sent in fragments of that size, so the
//! socket's write buffer never grows past about one fragment.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info};

use super::auth::Account;
use super::outbox::{Outbound, Outbox};
use super::protocol::{self, ClientMessage, ErrorCode, Refusal, Role};
use super::session::ConnId;
use super::state::Shared;
use super::state::store_refusal;
use super::store::{FeedError, Stamped, StoreError, Subscription};
use crate::telemetry;

/// How often an idle connection is pinged, so dead peers are noticed.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Text messages longer than this go out as fragments of this size: the
/// socket's write buffer keeps the capacity of the largest frame it ever
/// held, for as long as the connection lives.
pub const FRAGMENT: usize = 16 * 1024;

/// A rate-limited connection is told so at most once per this window.
const TELL_RATE_LIMITED_EVERY: Duration = Duration::from_secs(1);

/// Who is at the other end of a connection, as the handshake found out.
#[derive(Debug, Clone)]
pub struct Peer {
    pub remote: IpAddr,
    pub role: Role,
    /// The logged-in operator, for operators.
    pub account: Option<Account>,
}

struct Following {
    session: String,
    participant: String,
    feed: Subscription,
    /// Commands up to this one were delivered or replayed.
    last_seq: u64,
}

/// Serves one connection until either side ends it.
pub async fn serve<Si, St, E>(shared: Arc<Shared>, sink: Si, stream: St, peer: Peer)
where
    Si: Sink<Message> + Send + Unpin + 'static,
    St: Stream<Item = Result<Message, E>> + Send + Unpin + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let Peer {
        remote,
        role,
        account,
    } = peer;
    let (conn, outbox, cancel) = shared.connect(remote, role, account);
    info!(conn, "hub connection opened");
    // Both tasks log in the connection's span (its id).
    let mut writer =
        tokio::spawn(write(shared.clone(), outbox, sink, cancel.clone()).in_current_span());
    let mut reader =
        tokio::spawn(read(shared.clone(), conn, stream, cancel.clone()).in_current_span());
    tokio::select! {
        _ = &mut writer => reader.abort(),
        _ = &mut reader => {
            // Let the writer flush what is queued (a close frame, an error),
            // but not forever.
            cancel.cancel();
            if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
                writer.abort();
            }
        }
    }
    shared.disconnect(conn);
    info!(conn, "hub connection closed");
}

async fn read<St, E>(shared: Arc<Shared>, conn: ConnId, mut stream: St, cancel: CancellationToken)
where
    St: Stream<Item = Result<Message, E>> + Unpin,
    E: std::fmt::Display,
{
    let limits = &shared.config.hub;
    let rate = NonZeroU32::new(limits.messages_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not 0"));
    let limiter: DefaultDirectRateLimiter =
        RateLimiter::direct(Quota::per_second(rate).allow_burst(burst));
    // One `rate_limited` per window: answering every refused message would
    // let a flood grow our outbound queue instead.
    let mut told_rate_limited: Option<Instant> = None;
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => break,
            m = stream.next() => m,
        };
        let message = match message {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Err(e)) => {
                // Among them a frame or message over tungstenite's limit.
                debug!(conn, error = %e, "connection read failed");
                break;
            }
            Some(Ok(m)) => m,
        };
        // Every frame costs us work, whatever its kind: all count.
        if limiter.check().is_err() {
            metrics::counter!(telemetry::HUB_RATE_LIMITED).increment(1);
            if told_rate_limited.is_none_or(|t| t.elapsed() >= TELL_RATE_LIMITED_EVERY) {
                told_rate_limited = Some(Instant::now());
                refuse(
                    &shared,
                    conn,
                    Refusal::new(
                        ErrorCode::RateLimited,
                        format!(
                            "more than {} messages per second; slow down",
                            limits.messages_per_second
                        ),
                    ),
                );
            }
            continue;
        }
        let text = match message {
            Message::Text(t) => t,
            Message::Binary(_) => {
                refuse(
                    &shared,
                    conn,
                    Refusal::new(
                        ErrorCode::BadMessage,
                        "binary frames are not part of the protocol; send JSON text",
                    ),
                );
                continue;
            }
            _ => continue,
        };
        if text.len() > limits.max_message_bytes {
            refuse(
                &shared,
                conn,
                Refusal::new(
                    ErrorCode::TooLarge,
                    format!(
                        "{} bytes is over the limit of {}",
                        text.len(),
                        limits.max_message_bytes
                    ),
                ),
            );
            continue;
        }
        let message = match protocol::parse(&text) {
            Ok(m) => m,
            Err(r) => {
                refuse(&shared, conn, r);
                continue;
            }
        };
        let name = message.name();
        if let Err(r) = dispatch(&shared, conn, message).await {
            refuse(&shared, conn, r.to(name));
        }
    }
}

fn refuse(shared: &Shared, conn: ConnId, refusal: Refusal) {
    // `detail`, not `message`: that field is the line's own text.
    info!(conn, code = refusal.code.as_str(), request = refusal.request.as_deref().unwrap_or(""), detail = %refusal.message, "message refused");
    shared.refuse(conn, &refusal);
}

async fn dispatch(
    shared: &Arc<Shared>,
    conn: ConnId,
    message: ClientMessage,
) -> Result<(), Refusal> {
    match message {
        ClientMessage::Call => shared.call(conn).await,
        ClientMessage::Resume { session, resume } => shared.resume(conn, &session, &resume),
        ClientMessage::Join { session, resume } => shared.join(conn, &session, &resume),
        ClientMessage::Command(c) => shared.command(conn, c).await,
        ClientMessage::Control { granted } => shared.control(conn, granted),
        ClientMessage::Hangup => shared.hangup(conn),
        ClientMessage::Ready => shared.ready(conn),
        ClientMessage::Away => shared.away(conn),
        ClientMessage::Respond { session } => shared.respond(conn, &session),
        ClientMessage::Decline { session } => shared.decline(conn, &session),
        ClientMessage::Invite => shared.invite(conn),
        ClientMessage::Code => shared.issue_code(conn),
        ClientMessage::JoinCode { code } => shared.join_by_code(conn, &code),
        ClientMessage::RequestControl => shared.request_control(conn),
        ClientMessage::AnswerControl { granted } => shared.answer_control(conn, granted),
        ClientMessage::Chat { text } => shared.chat(conn, &text),
    }
}

/// The next command from the feed, or never when not following.
/// How long a participant waits before its follow is tried again when the
/// store could not serve it: the store's own health check runs at this pace.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// A follow to try again.
struct Retry {
    at: tokio::time::Instant,
    session: String,
    participant: String,
    replay: bool,
}

impl Retry {
    fn soon(session: String, participant: String, replay: bool) -> Retry {
        Retry {
            at: tokio::time::Instant::now() + FOLLOW_RETRY,
            session,
            participant,
            replay,
        }
    }
}

async fn retry_due(retry: &Option<Retry>) {
    match retry {
        Some(r) => tokio::time::sleep_until(r.at).await,
        None => std::future::pending().await,
    }
}

/// What became of a follow.
enum Followed {
    Now(Following),
    /// The store is unavailable: the participant was told, and it is tried
    /// again, so the view catches up when the store answers.
    Later(Retry),
    /// The session is gone from the store.
    Never,
}

/// Starts following `session` for `participant`: the replay (or, without
/// one, what raced ahead of it), the conversation so far, then the live
/// feed. `Err` when the connection is gone.
async fn follow<Si>(
    shared: &Shared,
    sink: &mut Out<Si>,
    session: String,
    participant: String,
    replay: bool,
) -> Result<Followed, Si::Error>
where
    Si: Sink<Message> + Unpin,
{
    let (feed, snapshot) = match shared.store.follow(&session).await {
        Ok(followed) => followed,
        Err(e @ StoreError::Unavailable(_)) => {
            sink.text(store_refusal(e).to_json()).await?;
            return Ok(Followed::Later(Retry::soon(session, participant, replay)));
        }
        Err(e) => {
            debug!(session, error = %e, "not following a session gone from the store");
            return Ok(Followed::Never);
        }
    };
    // Without a replay, commands that raced ahead of this (a new session's
    // first ones) still reach the participant, as they would have live.
    let text = if replay {
        Some(snapshot.replay_json(&session))
    } else if snapshot.last_seq > 0 {
        Some(snapshot.replay_json_for(&session, Some(&participant)))
    } else {
        None
    };
    let last_seq = snapshot.last_seq;
    drop(snapshot);
    if let Some(text) = text {
        sink.text(text).await?;
    }
    // The conversation so far, after the page; a message also queued live
    // is told apart by its `n`.
    let chat = shared.conversation.chats().log_json(&session);
    if let Some(text) = chat {
        sink.text(text).await?;
    }
    Ok(Followed::Now(Following {
        session,
        participant,
        feed,
        last_seq,
    }))
}

async fn next_command(following: &mut Option<Following>) -> Result<Arc<Stamped>, FeedError> {
    match following {
        Some(f) => f.feed.recv().await,
        None => std::future::pending().await,
    }
}

/// The socket side of a connection's writer. Messages are fed into the
/// socket's write buffer and written out once nothing more is ready to go
/// (one write for a burst of commands rather than a write per command), or
/// sooner when what waits would pass [`FRAGMENT`] bytes: the write buffer
/// still holds about one fragment at most.
struct Out<Si> {
    sink: Si,
    /// Bytes fed since the socket was last flushed.
    unflushed: usize,
}

impl<Si> Out<Si>
where
    Si: Sink<Message> + Unpin,
{
    fn new(sink: Si) -> Out<Si> {
        Out { sink, unflushed: 0 }
    }

    /// Queues one text message, in fragments when it is long (see
    /// [`FRAGMENT`]). `Err` when the connection is gone.
    async fn text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Si::Error> {
        let text: Utf8Bytes = text.into();
        if text.len() <= FRAGMENT {
            if self.unflushed + text.len() > FRAGMENT {
                self.flush().await?;
            }
            self.unflushed += text.len();
            return self.sink.feed(Message::Text(text)).await;
        }
        self.flush().await?;
        // Cut on character boundaries, so each fragment is UTF-8 on its own too.
        let mut cuts = Vec::with_capacity(text.len() / FRAGMENT + 1);
        let mut start = 0;
        while start < text.len() {
            let mut end = (start + FRAGMENT).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            cuts.push((start, end));
            start = end;
        }
        let bytes = Bytes::from(text);
        // Each fragment is written out on its own.
        for (i, &(start, end)) in cuts.iter().enumerate() {
            let opcode = OpCode::Data(if i == 0 { Data::Text } else { Data::Continue });
            let frame = Frame::message(bytes.slice(start..end), opcode, i + 1 == cuts.len());
            self.sink.send(Message::Frame(frame)).await?;
        }
        Ok(())
    }

    /// Sends anything else (a ping, a close), with what was queued before it.
    async fn send(&mut self, message: Message) -> Result<(), Si::Error> {
        self.unflushed = 0;
        self.sink.send(message).await
    }

    /// Writes out what was queued.
    async fn flush(&mut self) -> Result<(), Si::Error> {
        if self.unflushed > 0 {
            self.sink.flush().await?;
            self.unflushed = 0;
        }
        Ok(())
    }
}

async fn write<Si>(shared: Arc<Shared>, outbox: Arc<Outbox>, sink: Si, cancel: CancellationToken)
where
    Si: Sink<Message> + Unpin,
{
    let mut sink = Out::new(sink);
    let mut following: Option<Following> = None;
    // A follow the store could not serve (unavailable), tried again later.
    let mut retry: Option<Retry> = None;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                // Flush what was queued before the end (errors, `ended`).
                while let Some(out) = outbox.try_recv() {
                    if let Outbound::Text(t) | Outbound::Latest { text: t, .. } = out
                        && sink.text(t).await.is_err()
                    {
                        break;
                    }
                }
                break;
            }
            out = outbox.recv() => {
                let Some(out) = out else { break };
                match out {
                    Outbound::Text(t) | Outbound::Latest { text: t, .. } => {
                        if sink.text(t).await.is_err() {
                            break;
                        }
                    }
                    Outbound::Follow { session, participant, replay } => {
                        retry = None;
                        match follow(&shared, &mut sink, session, participant, replay).await {
                            Ok(Followed::Now(f)) => following = Some(f),
                            Ok(Followed::Later(r)) => retry = Some(r),
                            Ok(Followed::Never) => {}
                            Err(_) => break,
                        }
                    }
                    Outbound::Unfollow => {
                        following = None;
                        retry = None;
                    }
                    Outbound::Close { code, reason } => {
                        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break;
                    }
                }
            }
            next = next_command(&mut following) => {
                let f = following.as_mut().expect("only polled while following");
                match next {
                    Ok(c) => {
                        // At or below `last_seq`: already in the replay.
                        if c.seq > f.last_seq {
                            f.last_seq = c.seq;
                            if c.is_for(&f.participant) && sink.text(c.json.clone()).await.is_err() {
                                break;
                            }
                        }
                    }
                    Err(FeedError::Lagged(missed)) => {
                        // Too slow for the live feed: what the feed dropped
                        // is replaced by the state it led to.
                        metrics::counter!(telemetry::HUB_RESYNCS).increment(1);
                        info!(session = %f.session, participant = %f.participant, missed, "receiver fell behind; resynchronising from the store");
                        match shared.store.snapshot(&f.session).await {
                            Ok(snapshot) => {
                                f.last_seq = snapshot.last_seq;
                                f.feed.skip_to(snapshot.last_seq);
                                let replay = snapshot.replay_json_for(&f.session, Some(&f.participant));
                                // The snapshot's commands are the store's: let
                                // go of them before the wait to send.
                                drop(snapshot);
                                if sink.text(replay).await.is_err() {
                                    break;
                                }
                            }
                            Err(e) => {
                                let f = following.take().expect("following");
                                if let StoreError::Unavailable(_) = e {
                                    if sink.text(store_refusal(e).to_json()).await.is_err() {
                                        break;
                                    }
                                    retry = Some(Retry::soon(f.session, f.participant, false));
                                }
                            }
                        }
                    }
                    Err(FeedError::Closed) => following = None,
                }
            }
            () = retry_due(&retry) => {
                let r = retry.take().expect("only due when set");
                match follow(&shared, &mut sink, r.session, r.participant, r.replay).await {
                    Ok(Followed::Now(f)) => following = Some(f),
                    Ok(Followed::Later(r)) => retry = Some(r),
                    Ok(Followed::Never) => {}
                    Err(_) => break,
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            // Last: only once nothing else is ready is what was queued
            // written out, in one go.
            written = sink.flush().map(|r| r.is_ok()), if sink.unflushed > 0 => {
                if !written {
                    break;
                }
            }
        }
    }
    let _ = sink.sink.close().await;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A socket that records, for each write-out, how many text bytes were
    /// fed since the last one.
    #[derive(Default)]
    struct Recorder {
        fed: usize,
        written: Vec<usize>,
        messages: usize,
    }

    impl Sink<Message> for Recorder {
        type Error = std::convert::Infallible;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(mut self: Pin<&mut Self>, m: Message) -> Result<(), Self::Error> {
            self.fed += match &m {
                Message::Frame(f) => f.payload().len(),
                m => m.len(),
            };
            self.messages += 1;
            Ok(())
        }

        fn poll_flush(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            if self.fed > 0 {
                let fed = std::mem::take(&mut self.fed);
                self.written.push(fed);
            }
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.poll_flush(cx)
        }
    }

    #[tokio::test]
    async fn a_burst_is_written_in_few_writes_none_over_a_fragment() {
        let mut out = Out::new(Recorder::default());
        for i in 0..200 {
            out.text(format!("{i:0>1000}")).await.unwrap();
        }
        // A long one between: its fragments go out on their own.
        out.text("y".repeat(3 * FRAGMENT)).await.unwrap();
        out.text("z").await.unwrap();
        out.flush().await.unwrap();
        let r = out.sink;
        assert_eq!(r.messages, 200 + 3 + 1);
        assert_eq!(
            r.written.iter().sum::<usize>(),
            200 * 1000 + 3 * FRAGMENT + 1
        );
        assert!(r.written.iter().all(|&n| n <= FRAGMENT), "{:?}", r.written);
        // 200 KB of short messages in 16 KiB writes, not 200 writes.
        assert!(r.written.len() <= 20, "{} writes", r.written.len());
    }
}
