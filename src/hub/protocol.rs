//! The messages of the hub protocol, as `docs/protocol.md` writes them down:
//! what clients send, what the hub answers, and the error codes.
//!
//! Parsing goes in two steps so a client learns which of its mistakes it
//! made: text that is not JSON is `bad_json`; JSON that is not a message we
//! know, or lacks a field, is `bad_message`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Who a participant is in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Operator => "operator",
        }
    }
}

/// Who receives a difference command besides the other participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attribute {
    /// The other participants only.
    Others,
    /// The others and the sender (local echo).
    All,
}

/// A difference command as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub key: String,
    pub attribute: Attribute,
    #[serde(rename = "fn")]
    pub function: String,
    #[serde(default)]
    pub args: Vec<Value>,
}

/// The function whose command is a frame's URL key.
pub const NAVIGATE: &str = "navigate";

/// The function that asks the driver's browser to move through its own
/// history or load a path (the operator's address bar): `["load", url]`,
/// `["back"]`, `["forward"]` or `["reload"]`.
pub const GO: &str = "go";

/// Functions an operator may send without remote control: they show, they
/// do not act on the page.
pub const ALWAYS_ALLOWED: [&str; 3] = ["pointer", "draw", "clear"];

/// The command vocabulary (docs/protocol.md, "Functions and their
/// arguments"): every function the browser side sends and applies, with the
/// aspect its key ends in (`None`: a frame's URL key or a control's part).
/// Written once here: `assets.rs` serves it, with [`ALWAYS_ALLOWED`],
/// [`NAVIGATE`] and the close codes, to the browser side as `VOCABULARY`
/// ([`browser_vocabulary`]), and a test holds the JavaScript to it.
pub const FUNCTIONS: &[(&str, Option<&str>)] = &[
    (NAVIGATE, None),
    ("value", None),
    ("check", None),
    ("radio", None),
    ("select", None),
    ("html", None),
    ("files", None),
    ("masked", None),
    ("scroll", Some("@scroll")),
    ("viewport", Some("@viewport")),
    ("caret", Some("@caret")),
    ("click", Some("@click")),
    ("key", Some("@key")),
    ("dblclick", Some("@dblclick")),
    ("commit", Some("@commit")),
    ("follow", Some("@follow")),
    ("submit", Some("@submit")),
    ("pointer", Some("@pointer")),
    ("draw", Some("@draw")),
    ("clear", Some("@draw")),
    (GO, Some("@go")),
];

/// The WebSocket close code that tells a participant its session was
/// resumed by another connection (another tab or console window with a copy
/// of its resume token): it must not reconnect.
pub const CLOSE_RESUMED_ELSEWHERE: u16 = 4001;

/// The WebSocket close code (1012, service restart) that tells a
/// participant this node hands its sessions to another: reconnect and
/// `resume`, the session goes on there.
pub const CLOSE_HANDED_OVER: u16 = 1012;

/// The vocabulary as the browser side reads it (`VOCABULARY` in `agent.js`,
/// `share.js` and `console.js`): `functions` maps each function to its
/// aspect or `null`, `alwaysAllowed` is [`ALWAYS_ALLOWED`], `navigate` the
/// function whose command is a frame's URL key, `close` the close codes.
pub fn browser_vocabulary() -> Value {
    let functions: serde_json::Map<String, Value> = FUNCTIONS
        .iter()
        .map(|&(name, aspect)| (name.to_string(), aspect.map_or(Value::Null, Value::from)))
        .collect();
    serde_json::json!({
        "navigate": NAVIGATE,
        "functions": functions,
        "alwaysAllowed": ALWAYS_ALLOWED,
        "close": { "resumedElsewhere": CLOSE_RESUMED_ELSEWHERE },
    })
}

impl Command {
    /// Whether this command is the URL key of the frame its key names.
    pub fn is_frame_url(&self) -> bool {
        self.function == NAVIGATE
    }

    /// Keys are frame paths then parts: non-empty `/`-separated levels.
    pub fn check(&self) -> Result<(), Refusal> {
        if self.key.is_empty() {
            return Err(bad_command("`key` must not be empty"));
        }
        if self.key.split('/').any(str::is_empty) {
            return Err(bad_command(
                "`key` has an empty level (a leading, trailing or doubled `/`)",
            ));
        }
        if self.function.is_empty() {
            return Err(bad_command("`fn` must not be empty"));
        }
        if self.is_frame_url() {
            let url = self.args.first().and_then(Value::as_str).ok_or_else(|| {
                bad_command("a `navigate` command's first argument is its URL, a string")
            })?;
            navigation_target(url)?;
        }
        if self.function == GO {
            match self.args.first().and_then(Value::as_str) {
                Some("load") => {
                    let url = self.args.get(1).and_then(Value::as_str).ok_or_else(|| {
                        bad_command("a `go` to `load` names its URL, a string, second")
                    })?;
                    navigation_target(url)?;
                }
                Some("back" | "forward" | "reload") => {}
                _ => {
                    return Err(bad_command(
                        "a `go` command's first argument is `load`, `back`, `forward` or `reload`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A command that breaks the protocol's rules, refused with why.
fn bad_command(why: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::BadMessage, why).to("command")
}

/// Whether `url`, a frame URL key's target, stays on the proxied site: a
/// path of the page's own origin, as the agent publishes it (`pathname`,
/// `search`, `hash`). Browsers load it relative to the frame's document, so
/// anything a URL parser resolves to another origin (`//host`, `/\host`,
/// `/\t/host` once the parser drops the tab), any scheme (`javascript:`,
/// `data:`) or an absolute URL would steer other participants' frames off
/// the site. The agent checks the same rule before it applies a navigation
/// and before the console or its content frame loads anything (`sitePath`
/// in `inject/hub.js`).
pub fn navigation_target(url: &str) -> Result<(), Refusal> {
    let refuse = |why: &str| {
        Err(bad_command(format!(
            "navigate target {url:?} is not a path on this site: {why}"
        )))
    };
    if !url.starts_with('/') {
        return refuse("it must start with `/`");
    }
    // Parsers drop tabs and newlines and percent-encode the rest; a
    // location's path, query and fragment never hold them raw.
    if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return refuse("it holds whitespace or control characters");
    }
    const BASE: &str = "http://site.invalid/base/";
    let base = url::Url::parse(BASE).expect("a valid base URL");
    match base.join(url) {
        Ok(resolved) if resolved.origin() == base.origin() => Ok(()),
        Ok(_) => refuse("it resolves to another origin"),
        Err(e) => refuse(&format!("it does not parse ({e})")),
    }
}

/// A message from a client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    Call,
    Resume { session: String, resume: String },
    Join { session: String, resume: String },
    Command(Command),
    Control { granted: bool },
    Hangup,
    Ready,
    Away,
    Respond { session: String },
    Decline { session: String },
    Invite,
    // The conversation beside the page (join codes, control requests, chat).
    Code,
    JoinCode { code: String },
    RequestControl,
    AnswerControl { granted: bool },
    Chat { text: String },
}

impl ClientMessage {
    pub fn name(&self) -> &'static str {
        match self {
            ClientMessage::Call => "call",
            ClientMessage::Resume { .. } => "resume",
            ClientMessage::Join { .. } => "join",
            ClientMessage::Command(_) => "command",
            ClientMessage::Control { .. } => "control",
            ClientMessage::Hangup => "hangup",
            ClientMessage::Ready => "ready",
            ClientMessage::Away => "away",
            ClientMessage::Respond { .. } => "respond",
            ClientMessage::Decline { .. } => "decline",
            ClientMessage::Invite => "invite",
            ClientMessage::Code => "code",
            ClientMessage::JoinCode { .. } => "join_code",
            ClientMessage::RequestControl => "request_control",
            ClientMessage::AnswerControl { .. } => "answer_control",
            ClientMessage::Chat { .. } => "chat",
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadMessage,
    TooLarge,
    RateLimited,
    NotInSession,
    InSession,
    NoControl,
    UnknownSession,
    NotOffered,
    Limit,
    Forbidden,
    Unavailable,
    UnknownCode,
}

impl ErrorCode {
    /// The limit (a [`crate::telemetry::limit`] name) this refusal reports
    /// hitting, if it is one.
    pub fn limit(self) -> Option<&'static str> {
        use crate::telemetry::limit;
        match self {
            ErrorCode::RateLimited => Some(limit::RATE),
            ErrorCode::TooLarge => Some(limit::MESSAGE_SIZE),
            ErrorCode::Limit => Some(limit::CAPACITY),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotInSession => "not_in_session",
            ErrorCode::InSession => "in_session",
            ErrorCode::NoControl => "no_control",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::NotOffered => "not_offered",
            ErrorCode::Limit => "limit",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::UnknownCode => "unknown_code",
        }
    }
}

/// A refusal: the code, a sentence for people, and which request it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub request: Option<String>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            request: None,
        }
    }

    pub fn to(mut self, request: &str) -> Refusal {
        self.request = Some(request.to_string());
        self
    }

    pub fn to_json(&self) -> String {
        ServerMessage::Error {
            code: self.code,
            message: &self.message,
            request: self.request.as_deref(),
        }
        .to_json()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Parses one text frame into a client message.
pub fn parse(text: &str) -> Result<ClientMessage, Refusal> {
    // Difference commands are nearly every message: read straight into a
    // command when the message is a well-formed one, without the general
    // path's intermediate tree. Anything else, mistakes included, takes the
    // general path, which also names the mistake.
    if let Ok(m) = serde_json::from_str::<CommandMessage>(text)
        && m.kind == "command"
    {
        let command = Command {
            key: m.key,
            attribute: m.attribute,
            function: m.function,
            args: m.args,
        };
        command.check()?;
        return Ok(ClientMessage::Command(command));
    }
    parse_any(text)
}

/// Any message, through a JSON tree first, so a mistake is named.
fn parse_any(text: &str) -> Result<ClientMessage, Refusal> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Refusal::new(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Refusal::new(
            ErrorCode::BadMessage,
            "a message is a JSON object",
        ));
    };
    let request = match object.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => {
            return Err(Refusal::new(
                ErrorCode::BadMessage,
                "`type` must be a string",
            ));
        }
        None => return Err(Refusal::new(ErrorCode::BadMessage, "missing field `type`")),
    };
    let message: ClientMessage = serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        let text = if text.starts_with("unknown variant") {
            format!("unknown message type `{request}`")
        } else {
            text
        };
        Refusal::new(ErrorCode::BadMessage, text).to(&request)
    })?;
    if let ClientMessage::Command(c) = &message {
        c.check()?;
    }
    Ok(message)
}

/// A `command` message, field for field what [`ClientMessage::Command`]
/// reads: where this parses (no field twice, `type` without escapes), the
/// general path gives the same command.
#[derive(Deserialize)]
struct CommandMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    key: String,
    attribute: Attribute,
    #[serde(rename = "fn")]
    function: String,
    #[serde(default)]
    args: Vec<Value>,
}

/// One entry of a `status` message's participant list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantEntry {
    pub id: String,
    pub role: Role,
    pub name: String,
    pub connected: bool,
}

/// One waiting call in a `queue` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallEntry {
    pub session: String,
    /// Seconds since the Unix epoch when the customer called.
    pub since: u64,
    /// An operator in the session asks for another operator.
    pub invite: bool,
}

/// Where a session is in its life, as `status` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Queued,
    Offered,
    Connected,
}

/// A message from the hub. Commands and replays are serialised by the store
/// once per command, not here per receiver.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Joined {
        session: &'a str,
        participant: &'a str,
        resume: &'a str,
        role: Role,
        /// A single-use token, good for a short time, that binds this
        /// browser to the participant (`POST {prefix}bind`).
        bind: &'a str,
    },
    Status {
        session: &'a str,
        state: SessionState,
        #[serde(skip_serializing_if = "Option::is_none")]
        position: Option<usize>,
        participants: &'a [ParticipantEntry],
        control: bool,
    },
    Queue {
        /// `[CallEntry…]`, serialised once for every operator told
        /// ([`calls_json`]).
        calls: &'a RawValue,
        offer: Option<&'a str>,
    },
    Offer {
        session: &'a str,
        /// Seconds left to respond before the call goes to another operator.
        expires_in: u64,
    },
    Left {
        session: &'a str,
    },
    Ended {
        session: &'a str,
        reason: &'a str,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<&'a str>,
    },
    /// A join code for the customer to read out; never sent to anyone else.
    Code {
        session: &'a str,
        code: &'a str,
        /// Seconds until the code is void.
        expires_in: u64,
    },
    /// An operator asks the customer for control.
    ControlRequest {
        session: &'a str,
        from: &'a str,
        name: &'a str,
    },
    /// The customer's answer, to the session's operators.
    ControlAnswer {
        session: &'a str,
        granted: bool,
    },
    Chat {
        session: &'a str,
        #[serde(flatten)]
        message: &'a ChatMessage,
    },
    /// The conversation so far, for a participant who joins or comes back.
    ChatLog {
        session: &'a str,
        messages: Vec<&'a ChatMessage>,
    },
}

/// One chat message as the session keeps it and delivers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Numbers the session's messages from 1, so a client that receives a
    /// message both live and in a `chat_log` shows it once.
    pub n: u64,
    pub sender: String,
    pub name: String,
    pub role: Role,
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub text: String,
}

impl ServerMessage<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("hub messages always serialise")
    }
}

/// The `calls` of a `queue` message, serialised once for every operator
/// told: only the offer differs between them.
pub fn calls_json(calls: &[CallEntry]) -> Box<RawValue> {
    serde_json::value::to_raw_value(calls).expect("calls always serialise")
}

/// A command as the hub delivers it: stamped with the session, the sender
/// and the session's sequence number.
#[derive(Debug, Serialize)]
pub struct StampedOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub session: &'a str,
    pub sender: &'a str,
    pub seq: u64,
    #[serde(flatten)]
    pub command: &'a Command,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sorts_mistakes() {
        assert_eq!(parse("{").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse("[1]").unwrap_err().code, ErrorCode::BadMessage);
        assert_eq!(parse("{}").unwrap_err().code, ErrorCode::BadMessage);
        let e = parse(r#"{"type":"fly"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.request.as_deref()),
            (ErrorCode::BadMessage, Some("fly"))
        );
        assert!(e.message.contains("fly"), "{}", e.message);
        let e = parse(r#"{"type":"respond"}"#).unwrap_err();
        assert!(e.message.contains("session"), "{}", e.message);
        let e = parse(r#"{"type":"command","key":"top//x","attribute":"others","fn":"value"}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        let e =
            parse(r#"{"type":"command","key":"top","attribute":"some","fn":"value"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        assert_eq!(
            parse(r#"{"type":"call","extra":1}"#).unwrap(),
            ClientMessage::Call
        );
        let c = parse(
            r#"{"type":"command","key":"top","attribute":"all","fn":"navigate","args":["/x"]}"#,
        )
        .unwrap();
        assert!(
            matches!(c, ClientMessage::Command(Command { ref function, .. }) if function == "navigate")
        );
    }

    #[test]
    fn commands_read_directly_are_what_the_general_path_reads() {
        for text in [
            r#"{"type":"command","key":"top/a","attribute":"others","fn":"value","args":["x",{"t":1}]}"#,
            r#"{"key":"top/a","fn":"scroll","attribute":"all","type":"command","args":[0,1.5e3]}"#,
            r#"{"type":"command","key":"top/a","attribute":"others","fn":"clear"}"#,
            r#"{"type":"command","key":"top/a","attribute":"others","fn":"value","extra":[1]}"#,
            // A field twice: the last one counts, as it always did.
            r#"{"type":"command","key":"top/a","key":"top/b","attribute":"others","fn":"value"}"#,
            r#"{"type":"command","type":"call","key":"top/a","attribute":"others","fn":"x"}"#,
            r#"{"type":"command","key":"top/a","attribute":"others","fn":"value"}"#,
            r#"{"type":"command","key":"top//a","attribute":"others","fn":"value"}"#,
            r#"{"type":"command","key":"top","attribute":"all","fn":"navigate","args":["https://evil.example/"]}"#,
            r#"{"type":"command","key":"top","attribute":"none","fn":"value"}"#,
            r#"{"type":"command","key":"top","attribute":"others","fn":"value","args":{}}"#,
            r#"{"type":"command","key":"top","attribute":"others"}"#,
            r#"{"type":"call","key":"top","attribute":"others","fn":"value"}"#,
        ] {
            assert_eq!(
                format!("{:?}", parse(text)),
                format!("{:?}", parse_any(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn navigation_targets_stay_on_the_site() {
        for ok in [
            "/",
            "/shop?q=a%20b#top",
            "/a/b/../c",
            "/:8080/x",
            "/p?next=http://evil.example/",
            "/p#//evil",
            "/%2F%2Fevil",
            "/p?a=\\b",
        ] {
            assert_eq!(navigation_target(ok), Ok(()), "{ok}");
        }
        let bad = [
            "",
            "shop",
            "//evil.example/",
            "/\\evil.example/",
            "\\\\evil.example/",
            "/\t/localhost:8080/evil",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/ /evil.example",
            "/\u{0}/evil.example",
            "/\u{7f}/evil",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "http://evil.example/",
            "https://site.invalid/",
            "http://site.invalid:8080/",
            "//site.invalid:81/",
            "http:/evil.example",
        ];
        for url in bad {
            assert!(navigation_target(url).is_err(), "{url:?} must be refused");
        }
        let evil = r#"{"type":"command","key":"top","attribute":"all","fn":"navigate","args":["/\t/localhost:1/evil"]}"#;
        let e = parse(evil).unwrap_err();
        assert_eq!(
            (e.code, e.request.as_deref()),
            (ErrorCode::BadMessage, Some("command"))
        );
        assert!(
            e.message.contains("not a path on this site"),
            "{}",
            e.message
        );
        let e = parse(r#"{"type":"command","key":"top/iframe[0]","attribute":"all","fn":"navigate","args":[7]}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadMessage);
        // Only the URL key is checked: a part's value may be anything.
        assert!(parse(r#"{"type":"command","key":"top/input","attribute":"all","fn":"value","args":["//evil"]}"#).is_ok());
    }

    #[test]
    fn the_vocabulary_names_each_function_once_and_holds_the_gate() {
        let mut names: Vec<&str> = FUNCTIONS.iter().map(|&(name, _)| name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FUNCTIONS.len(), "a function is listed twice");
        assert!(names.contains(&NAVIGATE));
        for allowed in ALWAYS_ALLOWED {
            assert!(
                names.contains(&allowed),
                "{allowed} is not in the vocabulary"
            );
        }
        for &(name, aspect) in FUNCTIONS {
            assert!(
                aspect.is_none_or(|a| a.starts_with('@') && !a.contains('/')),
                "{name}: {aspect:?}"
            );
        }
        let v = browser_vocabulary();
        assert_eq!(v["functions"]["scroll"], "@scroll");
        assert_eq!(v["functions"]["value"], Value::Null);
        assert_eq!(v["alwaysAllowed"][0], "pointer");
        assert_eq!(v["close"]["resumedElsewhere"], 4001);
    }

    #[test]
    fn stamped_commands_carry_every_field() {
        let c = Command {
            key: "top/a".into(),
            attribute: Attribute::Others,
            function: "value".into(),
            args: vec![Value::from("x")],
        };
        let json = serde_json::to_string(&StampedOut {
            kind: "command",
            session: "s",
            sender: "p1",
            seq: 7,
            command: &c,
        })
        .unwrap();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["type"], "command");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["fn"], "value");
        assert_eq!(v["attribute"], "others");
        assert_eq!(v["args"][0], "x");
    }

    #[test]
    fn a_queue_message_carries_its_calls_as_a_list() {
        let calls = [
            CallEntry {
                session: "s\"1".into(),
                since: 7,
                invite: false,
            },
            CallEntry {
                session: "s2".into(),
                since: 9,
                invite: true,
            },
        ];
        let raw = calls_json(&calls);
        let v: Value = serde_json::from_str(
            &ServerMessage::Queue {
                calls: &raw,
                offer: Some("s2"),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "queue", "offer": "s2", "calls": [
                {"session": "s\"1", "since": 7, "invite": false},
                {"session": "s2", "since": 9, "invite": true},
            ]})
        );
    }
}
