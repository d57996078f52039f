//! A minimal Socket.IO v5 / Engine.IO v4 client over a raw websocket.
//!
//! Only what the benchmark needs: the handshake with an auth token, answering pings, events,
//! and emits with acknowledgements. Incoming events are handed to a callback as the raw text
//! after the `42` prefix (e.g. `["message",{...}]`) so receivers can do as little work as they like.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Callback for incoming events: gets the text after `42`, e.g. `["message",{...}]`.
pub type EventFn = Arc<dyn Fn(&str) + Send + Sync>;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<String>>>>;

pub struct Socket {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

/// `http://host:port` -> `ws://host:port/socket.io/?EIO=4&transport=websocket`.
pub fn ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_string());
    format!("{rest}/socket.io/?EIO=4&transport=websocket")
}

/// Resolves the host:port of a `ws://` url.
pub async fn resolve(ws_url: &str) -> Result<SocketAddr> {
    let hostport = ws_url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("only plain ws:// (http://) urls are supported"))?
        .split('/')
        .next()
        .unwrap_or_default();
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = tokio::net::lookup_host(hostport.as_str())
        .await?
        .next()
        .ok_or_else(|| anyhow!("cannot resolve {hostport}"))?;
    Ok(addr)
}

async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let sock = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            sock.bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind {ip}"))?;
            sock.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn text_of(msg: &Message) -> Option<&str> {
    match msg {
        Message::Text(t) => Some(t.as_str()),
        _ => None,
    }
}

/// Connects, performs the Engine.IO open and the Socket.IO namespace connect with `{"token"}`.
pub async fn connect(
    ws_url: &str,
    addr: SocketAddr,
    token: &str,
    source: Option<IpAddr>,
    on_event: Option<EventFn>,
) -> Result<Socket> {
    let stream = tcp(addr, source).await?;
    let request = ws_url.into_client_request()?;
    // tungstenite's default 128 KiB read buffer is zeroed on every read: with thousands of
    // receivers that memset dominated the bench's own CPU profile. Frames here are small.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .context("websocket handshake")?;
    let (mut sink, mut stream) = ws.split();

    // Engine.IO open packet.
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .context("timeout waiting for the engine.io open packet")?
        .ok_or_else(|| anyhow!("closed before open"))??;
    match text_of(&first) {
        Some(t) if t.starts_with('0') => {}
        other => bail!("unexpected first frame: {other:?}"),
    }
    let connect_frame = format!("40{}", serde_json::json!({ "token": token }));
    sink.send(Message::text(connect_frame)).await?;

    // Wait for 40 (ok) or 44 (error); answer pings meanwhile.
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .context("timeout waiting for the socket.io connect ack")?
            .ok_or_else(|| anyhow!("closed during connect"))??;
        let Some(t) = text_of(&frame) else { continue };
        if t == "2" {
            sink.send(Message::text("3")).await?;
        } else if t.starts_with("40") {
            break;
        } else if let Some(err) = t.strip_prefix("44") {
            bail!("connect refused: {err}");
        }
    }

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let closed = Arc::new(AtomicBool::new(false));

    // Writer: batches whatever is queued, then flushes once.
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let is_close = matches!(m, Message::Close(_));
            if sink.feed(m).await.is_err() {
                break;
            }
            if is_close {
                let _ = sink.close().await;
                break;
            }
            while let Ok(m) = out_rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
    });

    // Reader.
    {
        let out = out_tx.clone();
        let pending = pending.clone();
        let closed = closed.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Some(t) = text_of(&frame) else {
                    if matches!(frame, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                let b = t.as_bytes();
                if b.len() >= 2 && b[0] == b'4' && b[1] == b'2' {
                    if let Some(f) = &on_event {
                        f(&t[2..]);
                    }
                } else if b.len() >= 2 && b[0] == b'4' && b[1] == b'3' {
                    let rest = &t[2..];
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    if let Ok(id) = rest[..digits].parse::<u64>() {
                        let tx = pending.lock().expect("pending lock").remove(&id);
                        if let Some(tx) = tx {
                            let _ = tx.send(rest[digits..].to_string());
                        }
                    }
                } else if t == "2" {
                    if out.send(Message::text("3")).is_err() {
                        break;
                    }
                } else if t.starts_with('1') || t.starts_with("41") {
                    break;
                }
            }
            closed.store(true, Ordering::Relaxed);
            pending.lock().expect("pending lock").clear();
        });
    }

    Ok(Socket {
        out: out_tx,
        pending,
        next_id: AtomicU64::new(1),
        closed,
    })
}

impl Socket {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Emits `event` with an ack id; the receiver yields the raw ack array text (`[{...}]`).
    pub fn emit_ack(&self, event: &str, payload: &Value) -> oneshot::Receiver<String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let frame = format!("42{id}{}", serde_json::json!([event, payload]));
        // If the socket is gone the sender is dropped with the map entry: the receiver errors.
        if self.out.send(Message::text(frame)).is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
        }
        rx
    }

    /// Emits and waits for the ack; errors on `{"ok":false}`, a timeout or a closed socket.
    pub async fn call(&self, event: &str, payload: &Value, timeout: Duration) -> Result<Value> {
        let rx = self.emit_ack(event, payload);
        let raw = tokio::time::timeout(timeout, rx)
            .await
            .with_context(|| format!("{event}: ack timeout"))?
            .map_err(|_| anyhow!("{event}: socket closed"))?;
        let mut v: Value = serde_json::from_str(&raw).with_context(|| format!("bad ack {raw}"))?;
        let first = v
            .get_mut(0)
            .map(Value::take)
            .ok_or_else(|| anyhow!("empty ack"))?;
        if first.get("ok").and_then(Value::as_bool) != Some(true) {
            bail!("{event} refused: {first}");
        }
        Ok(first)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.out.send(Message::Close(None));
    }
}

/// True when an ack text (`[{...}]`) says ok. Cheap check; bodies sent by the bench never
/// contain this text.
pub fn ack_ok(raw: &str) -> bool {
    raw.contains("\"ok\":true")
}

/// The error code of a refused ack, for reporting.
pub fn ack_error_code(raw: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|v| {
            v.get(0)?
                .get("error")?
                .get("code")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unparsable".to_string())
}

/// Parses the unsigned integer right after `key` in `text` (e.g. key `"seq":`).
pub fn u64_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let rest = &text.as_bytes()[start..];
    let mut n: u64 = 0;
    let mut any = false;
    for &c in rest {
        if c.is_ascii_digit() {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(n)
}
