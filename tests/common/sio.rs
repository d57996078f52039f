//! A minimal Socket.IO v5 / Engine.IO v4 client for tests, over either transport: websocket
//! only, or HTTP long-polling only (never upgraded).
//!
//! Each client runs background tasks that own the transport: they answer the server's pings,
//! route acks by id to the futures waiting for them, and buffer received events until a test
//! takes them. Outgoing packets go through one channel, so they reach the wire in call order
//! on both transports (polling POSTs are serialized by a single writer task). Dropping the
//! client closes its Engine.IO session and stops its tasks.
//!
//! Set `SIO_TRACE=1` to print every packet in and out.
#![allow(dead_code)]

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::{
    sync::{mpsc, oneshot, watch, Notify},
    task::AbortHandle,
    time::{timeout, timeout_at, Instant},
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

use super::{Api, Session};

/// How long `call`, `next`, `wait_disconnected` and the connection itself may take.
const WAIT: Duration = Duration::from_secs(10);
/// The most a polling client puts in one POST (the server caps a payload at MAX_BODY_BYTES).
const MAX_POST_BYTES: usize = 64 * 1024;
/// The Engine.IO record separator between packets of a polling payload.
const SEPARATOR: char = '\x1e';

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Polling,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::WebSocket, Transport::Polling];
}

/// How the client authenticates at the handshake.
#[derive(Clone, Debug)]
pub enum Auth<'a> {
    /// `auth: {token}` in the CONNECT packet.
    Token(&'a str),
    /// `Authorization: Bearer <token>` on the handshake request(s), no CONNECT payload.
    Header(&'a str),
    /// Any CONNECT payload.
    Payload(Value),
    /// Nothing at all.
    None,
}

/// Runs each named scenario (`async fn name(t: Transport)`) once per transport, as the tests
/// `name::websocket` and `name::polling`. A leading attribute replaces `#[tokio::test]`, for
/// scenarios that want another runtime, e.g.
/// `both_transports!(#[tokio::test(flavor = "multi_thread", worker_threads = 2)] a, b);`
// The allows: only the socket suites use it, but every test crate compiles this module.
#[allow(unused_macros)]
macro_rules! both_transports {
    (#[$test:meta] $($name:ident),+ $(,)?) => {$(
        mod $name {
            #[$test]
            async fn websocket() {
                super::$name($crate::common::sio::Transport::WebSocket).await
            }
            #[$test]
            async fn polling() {
                super::$name($crate::common::sio::Transport::Polling).await
            }
        }
    )+};
    ($($name:ident),+ $(,)?) => {
        $crate::common::sio::both_transports!(#[tokio::test] $($name),+);
    };
}
#[allow(unused_imports)]
pub(crate) use both_transports;

/// Asserts a successful ack (`{ok: true, ...}`) and returns it, as `Reply::ok` does for REST.
#[track_caller]
pub fn ack_ok(ack: &Value) -> &Value {
    assert_eq!(ack["ok"], true, "ack: {ack}");
    ack
}

/// Asserts an error ack of the contract's shape (`{ok: false, error: {code, message}}`) and
/// returns its `error` object, as `Reply::error` does for REST.
#[track_caller]
pub fn ack_error<'a>(ack: &'a Value, code: &str) -> &'a Value {
    assert_eq!(ack["ok"], false, "ack: {ack}");
    let error = &ack["error"];
    assert_eq!(error["code"], code, "ack: {ack}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "ack: {ack}"
    );
    error
}

// On `Api`, so a `TestApp` and each node of a `TestCluster` have them.
impl Api {
    /// A socket authenticated with `auth: {token}`, panicking if the server refuses it.
    pub async fn socket(&self, token: &str, transport: Transport) -> SioClient {
        SioClient::connect_token(&self.base, token, transport).await
    }

    /// The usual arrangement: a new socket of `who` that has joined `room` (a name or an id)
    /// with `joinRoom`, and what its own join sent it taken out of its buffer, so that the next
    /// events it takes are the ones the test causes. The ack, the one `history` and the welcome
    /// notice are checked; `presence` is not, as only a user's first socket in a room has one.
    /// All of these arrive before the ack (one connection keeps the server's order), so none is
    /// left behind; what the room's other sockets hear of the join stays theirs to take.
    pub async fn in_room(&self, who: &Session, room: &str, transport: Transport) -> SioClient {
        let s = self.socket(&who.access, transport).await;
        let ack = s.call("joinRoom", json!(room)).await;
        let name = ack_ok(&ack)["room"]["name"].as_str().unwrap().to_owned();
        let history = s.drain("history");
        assert_eq!(history.len(), 1, "one history for the join: {history:?}");
        assert_eq!(history[0]["room"]["name"], name.as_str());
        let welcome = format!("Welcome {} to the {name} room!", who.username);
        let notices = s.drain("message");
        assert!(
            notices.iter().any(|m| m["body"] == welcome.as_str()),
            "no {welcome:?} among {notices:?}"
        );
        s.drain("presence");
        s
    }
}

/// What the API hands the transport task.
enum Out {
    /// A whole Engine.IO packet (type digit included), e.g. `3` or `442["x",1]`.
    Engine(String),
    /// Close the Engine.IO session and stop.
    Close,
}

/// State shared by the client handle and its transport tasks.
struct Inner {
    events: Mutex<VecDeque<(String, Value)>>,
    event_added: Notify,
    acks: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next_ack: AtomicU64,
    /// True from the server's CONNECT until the socket is gone.
    connected: watch::Sender<bool>,
    /// The outcome of the CONNECT: the socket id, or the CONNECT_ERROR message.
    connect_result: Mutex<Option<oneshot::Sender<Result<String, String>>>>,
    trace: bool,
}

impl Inner {
    fn set_disconnected(&self) {
        self.connected.send_replace(false);
        // Waiting `call`s fail at once instead of timing out.
        self.acks.lock().unwrap().clear();
        if let Some(tx) = self.connect_result.lock().unwrap().take() {
            let _ = tx.send(Err("transport closed before the CONNECT answer".into()));
        }
        self.event_added.notify_waiters();
    }

    fn take(&self, event: &str) -> Option<Value> {
        let mut events = self.events.lock().unwrap();
        let i = events.iter().position(|(name, _)| name == event)?;
        events.remove(i).map(|(_, v)| v)
    }

    fn buffered_names(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events.iter().map(|(name, _)| name.clone()).collect()
    }

    fn trace(&self, dir: &str, packet: &str) {
        if self.trace {
            eprintln!("[sio {dir}] {packet}");
        }
    }
}

/// What to do after an incoming Engine.IO packet.
enum Action {
    Nothing,
    /// Send this Engine.IO packet back (a pong).
    Reply(String),
    /// The server ended the socket (Engine.IO close, Socket.IO DISCONNECT or CONNECT_ERROR).
    Stop,
}

fn on_engine_packet(inner: &Inner, packet: &str) -> Action {
    inner.trace("in ", packet);
    match packet.as_bytes().first() {
        Some(b'1') => Action::Stop,
        Some(b'2') => Action::Reply(format!("3{}", &packet[1..])),
        Some(b'4') => on_socketio_packet(inner, &packet[1..]),
        // 0 open (handled at the handshake), 3 pong, 6 noop, `b...` binary (unused here).
        _ => Action::Nothing,
    }
}

fn on_socketio_packet(inner: &Inner, packet: &str) -> Action {
    let Some(kind) = packet.as_bytes().first().copied() else {
        return Action::Nothing;
    };
    let mut rest = &packet[1..];
    if matches!(kind, b'5' | b'6') {
        // Binary packets: `<attachments>-` first. The server sends none; skip the count.
        if let Some(i) = rest.find('-') {
            rest = &rest[i + 1..];
        }
    }
    if rest.starts_with('/') {
        // A namespace other than `/`: `/name,`.
        rest = rest.find(',').map_or("", |i| &rest[i + 1..]);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id: Option<u64> = rest[..digits].parse().ok();
    let data = &rest[digits..];
    match kind {
        b'0' => {
            let sid = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v["sid"].as_str().map(str::to_owned))
                .unwrap_or_default();
            inner.connected.send_replace(true);
            if let Some(tx) = inner.connect_result.lock().unwrap().take() {
                let _ = tx.send(Ok(sid));
            }
            Action::Nothing
        }
        b'1' => Action::Stop,
        b'2' | b'5' => {
            let Ok(mut args) = serde_json::from_str::<Vec<Value>>(data) else {
                eprintln!("[sio] unparsable event packet: {packet}");
                return Action::Nothing;
            };
            let Some(Value::String(name)) = args.first().cloned() else {
                eprintln!("[sio] event packet without a name: {packet}");
                return Action::Nothing;
            };
            let first = if args.len() > 1 {
                args.swap_remove(1)
            } else {
                Value::Null
            };
            inner.events.lock().unwrap().push_back((name, first));
            inner.event_added.notify_waiters();
            Action::Nothing
        }
        b'3' | b'6' => {
            let first = serde_json::from_str::<Vec<Value>>(data)
                .ok()
                .and_then(|args| args.into_iter().next())
                .unwrap_or(Value::Null);
            let waiter = id.and_then(|id| inner.acks.lock().unwrap().remove(&id));
            match waiter {
                Some(tx) => {
                    let _ = tx.send(first);
                }
                None => eprintln!("[sio] ack nobody waits for: {packet}"),
            }
            Action::Nothing
        }
        b'4' => {
            let message = serde_json::from_str::<Value>(data)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| data.to_owned());
            if let Some(tx) = inner.connect_result.lock().unwrap().take() {
                let _ = tx.send(Err(message));
            }
            Action::Stop
        }
        _ => Action::Nothing,
    }
}

/// The Engine.IO open packet's fields this client uses.
struct Open {
    sid: String,
    /// How long the server may stay silent: ping interval + ping timeout.
    silence: Duration,
}

fn parse_open(packet: &str) -> Result<Open, String> {
    let json = packet
        .strip_prefix('0')
        .ok_or_else(|| format!("expected an Engine.IO open packet, got {packet:?}"))?;
    let v: Value = serde_json::from_str(json).map_err(|e| format!("bad open packet: {e}"))?;
    let sid = v["sid"]
        .as_str()
        .ok_or("open packet without sid")?
        .to_owned();
    let ms =
        v["pingInterval"].as_u64().unwrap_or(25_000) + v["pingTimeout"].as_u64().unwrap_or(20_000);
    Ok(Open {
        sid,
        silence: Duration::from_millis(ms),
    })
}

// Tests share clients across tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<SioClient>();
};

pub struct SioClient {
    inner: Arc<Inner>,
    out: mpsc::UnboundedSender<Out>,
    sid: String,
    /// Tasks to abort on drop (the polling reader); writers stop when `out` closes.
    abort_on_drop: Vec<AbortHandle>,
}

impl Drop for SioClient {
    fn drop(&mut self) {
        for task in &self.abort_on_drop {
            task.abort();
        }
    }
}

impl SioClient {
    /// Connects to `base` (e.g. "http://127.0.0.1:1234"). Err(message) when the server answers
    /// CONNECT_ERROR (its `message`, e.g. "unauthorized") or the connection fails.
    pub async fn connect(base: &str, auth: Auth<'_>, transport: Transport) -> Result<Self, String> {
        let inner = Arc::new(Inner {
            events: Mutex::default(),
            event_added: Notify::new(),
            acks: Mutex::default(),
            next_ack: AtomicU64::new(0),
            connected: watch::Sender::new(false),
            connect_result: Mutex::default(),
            trace: std::env::var_os("SIO_TRACE").is_some(),
        });
        let (result_tx, result_rx) = oneshot::channel();
        *inner.connect_result.lock().unwrap() = Some(result_tx);

        let (header, connect) = match auth {
            Auth::Token(token) => (None, format!("40{}", json!({ "token": token }))),
            Auth::Header(token) => (Some(format!("Bearer {token}")), "40".to_owned()),
            Auth::Payload(payload) => (None, format!("40{payload}")),
            Auth::None => (None, "40".to_owned()),
        };
        let (out, out_rx) = mpsc::unbounded_channel();
        // The CONNECT is the first packet on the wire.
        out.send(Out::Engine(connect)).unwrap();

        let base = base.trim_end_matches('/');
        let abort_on_drop = match transport {
            Transport::WebSocket => {
                ws_start(base, header, inner.clone(), out_rx).await?;
                Vec::new()
            }
            Transport::Polling => polling_start(base, header, inner.clone(), out_rx).await?,
        };
        let mut client = SioClient {
            inner,
            out,
            sid: String::new(),
            abort_on_drop,
        };
        match timeout(WAIT, result_rx).await {
            Ok(Ok(Ok(sid))) => {
                client.sid = sid;
                Ok(client)
            }
            Ok(Ok(Err(message))) => Err(message),
            Ok(Err(_)) => Err("the client task stopped before the CONNECT answer".into()),
            Err(_) => Err("no CONNECT answer within 10 s".into()),
        }
    }

    /// Connects with `auth: {token}`, panicking on failure.
    pub async fn connect_token(base: &str, token: &str, transport: Transport) -> Self {
        match Self::connect(base, Auth::Token(token), transport).await {
            Ok(client) => client,
            Err(e) => panic!("socket connect over {transport:?} failed: {e}"),
        }
    }

    /// Sends any Engine.IO packet text as it is (for fuzzing): false once the socket is gone.
    pub fn send_raw(&self, engine_packet: String) -> bool {
        self.out.send(Out::Engine(engine_packet)).is_ok()
    }

    fn send_socketio(&self, packet: String) -> bool {
        self.out.send(Out::Engine(format!("4{packet}"))).is_ok()
    }

    /// Emits an event with one argument, no ack.
    pub async fn emit(&self, event: &str, data: Value) {
        self.send_socketio(format!("2{}", json!([event, data])));
    }

    /// Sends an event with an ack id; the future resolves to the ack's first argument.
    fn send_with_ack(
        &self,
        event: &str,
        args: Value,
    ) -> impl Future<Output = Value> + Send + 'static {
        let id = self.inner.next_ack.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.inner.acks.lock().unwrap().insert(id, tx);
        let sent = self.send_socketio(format!("2{id}{args}"));
        // Checked after registering: a disconnect from here on drops the waiter.
        let live = sent && self.is_connected();
        if !live {
            self.inner.acks.lock().unwrap().remove(&id);
        }
        let event = event.to_owned();
        async move {
            if !live {
                panic!("`{event}` emitted on a disconnected socket");
            }
            match timeout(WAIT, rx).await {
                Ok(Ok(v)) => v,
                Ok(Err(_)) => panic!("the socket was disconnected before the ack of `{event}`"),
                Err(_) => panic!("no ack for `{event}` within 10 s"),
            }
        }
    }

    /// Emits with an ack and waits for it (10 s). Returns the first ack argument.
    pub async fn call(&self, event: &str, data: Value) -> Value {
        self.send_with_ack(event, json!([event, data])).await
    }

    /// Emits with an ack without waiting: the packet is on its way (in call order) when this
    /// returns; the future resolves to the ack's first argument (or panics after 10 s).
    pub fn call_later(
        &self,
        event: &str,
        data: Value,
    ) -> impl Future<Output = Value> + Send + 'static {
        self.send_with_ack(event, json!([event, data]))
    }

    /// Sends `sendMessage` to `room` with the body "m<i>" for each `i`, without waiting: they
    /// are on the wire, in this order, when this returns. The future asserts that each was
    /// acknowledged `ok` and resolves to the acks, in the same order.
    pub fn send_burst<I>(
        &self,
        room: &str,
        numbers: I,
    ) -> impl Future<Output = Vec<Value>> + Send + 'static
    where
        I: IntoIterator,
        I::Item: std::fmt::Display,
    {
        let pending: Vec<_> = numbers
            .into_iter()
            .map(|i| {
                self.call_later(
                    "sendMessage",
                    json!({"room": room, "body": format!("m{i}")}),
                )
            })
            .collect();
        async move {
            let acks = futures::future::join_all(pending).await;
            for ack in &acks {
                ack_ok(ack);
            }
            acks
        }
    }

    /// Emits an event with no arguments at all (`42<id>["name"]`), with an ack.
    pub async fn call_no_args(&self, event: &str) -> Value {
        self.send_with_ack(event, json!([event])).await
    }

    /// Emits with an ack; None if no ack arrives within `within` (or the socket disconnects).
    pub async fn call_within(&self, event: &str, data: Value, within: Duration) -> Option<Value> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.inner.acks.lock().unwrap().insert(id, tx);
        self.send_socketio(format!("2{id}{}", json!([event, data])));
        let got = timeout(within, rx).await.ok().and_then(Result::ok);
        self.inner.acks.lock().unwrap().remove(&id);
        got
    }

    /// Waits for an event; `stop_if_disconnected` returns early once none can arrive any more.
    async fn wait_event(
        &self,
        event: &str,
        within: Duration,
        stop_if_disconnected: bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let added = self.inner.event_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            if let Some(v) = self.inner.take(event) {
                return Some(v);
            }
            if stop_if_disconnected && !self.is_connected() {
                return None;
            }
            if timeout_at(deadline, added).await.is_err() {
                return self.inner.take(event);
            }
        }
    }

    /// Waits (10 s) for the next event named `event`; returns its first argument. Events of
    /// other names stay buffered for later calls.
    pub async fn next(&self, event: &str) -> Value {
        match self.wait_event(event, WAIT, true).await {
            Some(v) => v,
            None => panic!(
                "no `{event}` event within 10 s (socket {}; buffered: {:?})",
                if self.is_connected() {
                    "connected"
                } else {
                    "disconnected"
                },
                self.inner.buffered_names()
            ),
        }
    }

    /// Takes `event`s until one satisfies `pred` (the others are dropped); panics after the
    /// usual timeout.
    pub async fn until(&self, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next(event).await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Like `next`, but None if no such event arrives within `within`.
    pub async fn next_within(&self, event: &str, within: Duration) -> Option<Value> {
        self.wait_event(event, within, true).await
    }

    /// Every event named `event` received and not yet taken, oldest first, without waiting.
    pub fn drain(&self, event: &str) -> Vec<Value> {
        let mut events = self.inner.events.lock().unwrap();
        let mut taken = Vec::new();
        events.retain(|(name, v)| {
            if name == event {
                taken.push(v.clone());
                false
            } else {
                true
            }
        });
        taken
    }

    /// Asserts that no event named `event` is buffered or arrives within `within`.
    pub async fn assert_silent(&self, event: &str, within: Duration) {
        if let Some(v) = self.drain(event).into_iter().next() {
            panic!("unexpected `{event}` event (already received): {v}");
        }
        if let Some(v) = self.wait_event(event, within, false).await {
            panic!("unexpected `{event}` event: {v}");
        }
    }

    /// Resolves when the server has disconnected this socket (10 s, else panics).
    pub async fn wait_disconnected(&self) {
        let mut rx = self.inner.connected.subscribe();
        if timeout(WAIT, rx.wait_for(|c| !*c)).await.is_err() {
            panic!("the socket {} was not disconnected within 10 s", self.sid);
        }
    }

    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Client-side disconnect: sends DISCONNECT (`41`), then closes the transport.
    pub async fn disconnect(&self) {
        self.send_socketio("1".to_owned());
        let _ = self.out.send(Out::Close);
        let mut rx = self.inner.connected.subscribe();
        let _ = timeout(WAIT, rx.wait_for(|c| !*c)).await;
    }

    /// The socket id the server gave in its CONNECT answer.
    pub fn sid(&self) -> String {
        self.sid.clone()
    }
}

// ------------------------------------------------------------------ websocket

async fn ws_start(
    base: &str,
    header: Option<String>,
    inner: Arc<Inner>,
    out_rx: mpsc::UnboundedReceiver<Out>,
) -> Result<(), String> {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("http", "ws", 1)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad websocket url {url}: {e}"))?;
    if let Some(value) = header {
        let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        request.headers_mut().insert("authorization", value);
    }
    let (mut ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| "websocket connect timed out".to_owned())?
        .map_err(|e| format!("websocket connect failed: {e}"))?;
    let open = match timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => {
            inner.trace("in ", text.as_str());
            parse_open(text.as_str())?
        }
        other => return Err(format!("no Engine.IO open packet: {other:?}")),
    };
    tokio::spawn(ws_task(ws, inner, out_rx, open));
    Ok(())
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Owns the websocket: ends when the server or the client closes it, or the client is dropped.
async fn ws_task(
    mut ws: WsStream,
    inner: Arc<Inner>,
    mut out_rx: mpsc::UnboundedReceiver<Out>,
    open: Open,
) {
    // The server pings every interval: silence beyond interval + timeout means it is gone.
    let silence = open.silence + Duration::from_secs(5);
    loop {
        tokio::select! {
            incoming = timeout(silence, ws.next()) => match incoming {
                Ok(Some(Ok(Message::Text(text)))) => match on_engine_packet(&inner, text.as_str()) {
                    Action::Nothing => {}
                    Action::Reply(packet) => {
                        inner.trace("out", &packet);
                        if !ws_send(&mut ws, packet).await {
                            break;
                        }
                    }
                    Action::Stop => {
                        let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
                        break;
                    }
                },
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => break,
                Ok(Some(Ok(_))) => {}
            },
            out = out_rx.recv() => match out {
                Some(Out::Engine(packet)) => {
                    inner.trace("out", &packet);
                    if !ws_send(&mut ws, packet).await {
                        break;
                    }
                }
                Some(Out::Close) | None => {
                    let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
                    break;
                }
            },
        }
    }
    inner.set_disconnected();
}

/// Sends one text frame; false when the connection is gone or stuck.
async fn ws_send(ws: &mut WsStream, packet: String) -> bool {
    matches!(
        timeout(WAIT, ws.send(Message::text(packet))).await,
        Ok(Ok(()))
    )
}

// ------------------------------------------------------------------ long-polling

async fn polling_start(
    base: &str,
    header: Option<String>,
    inner: Arc<Inner>,
    out_rx: mpsc::UnboundedReceiver<Out>,
) -> Result<Vec<AbortHandle>, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = header {
        let value = reqwest::header::HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())?;
    let handshake = format!("{base}/socket.io/?EIO=4&transport=polling");
    let res = http
        .get(&handshake)
        .timeout(WAIT)
        .send()
        .await
        .map_err(|e| format!("polling handshake failed: {e}"))?;
    let status = res.status();
    let body = res.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("polling handshake answered {status}: {body}"));
    }
    inner.trace("in ", &body);
    let first = body.split(SEPARATOR).next().unwrap_or_default();
    let open = parse_open(first)?;
    let url = format!("{handshake}&sid={}", open.sid);

    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(poll_reader(
        http.clone(),
        url.clone(),
        inner.clone(),
        ctl_tx,
        open.silence + Duration::from_secs(5),
    ));
    tokio::spawn(poll_writer(http, url, inner, out_rx, ctl_rx));
    Ok(vec![reader.abort_handle()])
}

/// One GET at a time (the server closes a session polled twice at once). Pongs and the close
/// after a server-side disconnect go to the writer.
async fn poll_reader(
    http: reqwest::Client,
    url: String,
    inner: Arc<Inner>,
    ctl: mpsc::UnboundedSender<Out>,
    silence: Duration,
) {
    'poll: loop {
        let body = match http.get(&url).timeout(silence).send().await {
            Ok(res) if res.status().is_success() => match res.text().await {
                Ok(body) => body,
                Err(_) => break,
            },
            _ => break,
        };
        // An empty answer: the session was closed while polling.
        if body.is_empty() {
            break;
        }
        for packet in body.split(SEPARATOR) {
            match on_engine_packet(&inner, packet) {
                Action::Nothing => {}
                Action::Reply(packet) => {
                    let _ = ctl.send(Out::Engine(packet));
                }
                Action::Stop => {
                    let _ = ctl.send(Out::Close);
                    break 'poll;
                }
            }
        }
    }
    inner.set_disconnected();
}

/// Sends every outgoing packet, in order, one POST at a time (several packets per POST when
/// they are already waiting). Ends after the close, or when the client is dropped.
async fn poll_writer(
    http: reqwest::Client,
    url: String,
    inner: Arc<Inner>,
    mut api: mpsc::UnboundedReceiver<Out>,
    mut ctl: mpsc::UnboundedReceiver<Out>,
) {
    let mut pending_close = false;
    loop {
        let first = if std::mem::take(&mut pending_close) {
            Out::Close
        } else {
            tokio::select! {
                biased;
                Some(out) = ctl.recv() => out,
                out = api.recv() => out.unwrap_or(Out::Close),
            }
        };
        let mut batch: Vec<String> = Vec::new();
        let mut size = 0;
        let mut close = false;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Engine(packet) => {
                    size += packet.len() + 1;
                    batch.push(packet);
                }
                // Like socket.io-client, the close goes alone once the packets before it were
                // delivered (it is only sent when the channel is closed or after a DISCONNECT).
                Out::Close if batch.is_empty() => {
                    batch.push("1".to_owned());
                    close = true;
                    break;
                }
                Out::Close => {
                    pending_close = true;
                    break;
                }
            }
            if size < MAX_POST_BYTES {
                next = ctl.try_recv().or_else(|_| api.try_recv()).ok();
            }
        }
        let body = batch.join("\x1e");
        inner.trace("out", &body);
        let posted = http
            .post(&url)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
            .timeout(WAIT)
            .send()
            .await;
        let ok = matches!(&posted, Ok(res) if res.status().is_success());
        if !ok || close {
            if !ok {
                inner.trace("err", &format!("POST failed: {posted:?}"));
            }
            inner.set_disconnected();
            break;
        }
    }
}
