//! Minimal Centrifugo client protocol v2 (JSON) client.
//!
//! Handshake replies are parsed with serde (rare, small); the hot path — pushes — is scanned
//! without parsing: [`scan_frame`] counts `"pub":` occurrences and reads the publisher's `"t":`
//! timestamp out of each one. A frame may carry several newline-separated replies/pushes; an empty
//! object `{}` on its own line is the server's ping and is answered with `{}`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// The `{}` pong frame.
pub fn pong() -> Message {
    Message::Text(Utf8Bytes::from_static("{}"))
}

/// Where to connect: the WebSocket URL and its resolved socket address.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Resolves `ws://host:port/path` (or `http://`, for uni SSE) once, so thousands of dials do
    /// not each do a lookup.
    pub async fn resolve(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| anyhow!("only ws:// (and http:// for uni SSE) URLs are supported (got `{url}`)"))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let hostport = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:80") };
        let addr = tokio::net::lookup_host(&hostport)
            .await
            .with_context(|| format!("resolving {hostport}"))?
            .next()
            .ok_or_else(|| anyhow!("{hostport} resolved to nothing"))?;
        Ok(Self { url: url.to_string(), addr })
    }

    pub fn is_loopback(&self) -> bool {
        self.addr.ip().is_loopback()
    }
}

/// Loopback source address number `i` of a spread: 127.0.0.2, 127.0.0.3, ...
pub fn loopback_source(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + i))
}

/// Small buffers: the client side of a load test holds tens of thousands of these.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

/// What one connection should do after the WebSocket handshake.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub token: Option<String>,
    /// Channels to subscribe to, in order.
    pub channels: Vec<String>,
}

/// The server's connect reply, the parts we report.
#[derive(Clone, Debug, Default)]
pub struct ConnectInfo {
    pub client: String,
    pub ping: Option<u64>,
    pub pong: bool,
}

/// Opens TCP (optionally bound to `source`) and performs the WebSocket upgrade.
pub async fn open(target: &Target, source: Option<IpAddr>) -> Result<Ws> {
    let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.context("socket")?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("bind {ip}"))?;
    }
    let stream = socket.connect(target.addr).await.with_context(|| format!("tcp connect {}", target.addr))?;
    stream.set_nodelay(true).context("nodelay")?;
    // Abortive close on drop: no TIME_WAIT left behind. Thousands of client-side TIME_WAIT
    // sockets from one run would hold their (explicitly bound) ports for 60 s and exhaust the
    // ephemeral range for the next run, and for every `connect()` on the machine meanwhile.
    // Scenarios close politely first (WebSocket close handshake); this only cuts what is left.
    // (`set_zero_linger` would say the same but needs tokio 1.50, newer than the workspace's
    // declared minimum; a zero linger never blocks, which is what the deprecation is about.)
    #[allow(deprecated)]
    stream.set_linger(Some(Duration::ZERO)).context("SO_LINGER")?;
    let (ws, _response) = tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(ws_config()))
        .await
        .context("websocket handshake")?;
    Ok(ws)
}

/// Sends `connect` (id 1) and one `subscribe` per channel (ids 2, 3, ...), waiting for each reply.
pub async fn handshake(ws: &mut Ws, session: &Session) -> Result<ConnectInfo> {
    let connect = match &session.token {
        Some(t) => serde_json::json!({"id": 1, "connect": {"token": t}}),
        None => serde_json::json!({"id": 1, "connect": {}}),
    };
    ws.send(Message::text(connect.to_string())).await.context("sending connect")?;
    let reply = await_reply(ws, 1).await.context("connect")?;
    let result = reply.get("connect").ok_or_else(|| anyhow!("connect reply without `connect`: {reply}"))?;
    let info = ConnectInfo {
        client: result.get("client").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
        ping: result.get("ping").and_then(|v| v.as_u64()),
        pong: result.get("pong").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    for (i, channel) in session.channels.iter().enumerate() {
        let id = i as u64 + 2;
        let sub = serde_json::json!({"id": id, "subscribe": {"channel": channel}});
        ws.send(Message::text(sub.to_string())).await.context("sending subscribe")?;
        let reply = await_reply(ws, id).await.with_context(|| format!("subscribe {channel}"))?;
        if reply.get("subscribe").is_none() {
            bail!("subscribe reply without `subscribe`: {reply}");
        }
    }
    Ok(info)
}

/// Reads until the reply with `id` arrives, answering pings meanwhile; an `error` reply is an error.
async fn await_reply(ws: &mut Ws, id: u64) -> Result<serde_json::Value> {
    loop {
        let msg = ws.next().await.ok_or_else(|| anyhow!("connection closed while waiting for reply {id}"))??;
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => bail!("binary frame: server speaks protobuf? (JSON expected)"),
            Message::Close(frame) => bail!("server closed: {}", describe_close(frame.as_ref())),
            _ => continue,
        };
        for line in text.as_str().split('\n') {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line == "{}" {
                ws.send(pong()).await.context("sending pong")?;
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line).with_context(|| format!("bad JSON `{line}`"))?;
            if value.get("id").and_then(|v| v.as_u64()) != Some(id) {
                continue;
            }
            if let Some(err) = value.get("error") {
                bail!("server error {err}");
            }
            return Ok(value);
        }
    }
}

fn describe_close(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("code {} `{}`", u16::from(f.code), f.reason),
        None => "no close frame".into(),
    }
}

/// Dials, upgrades and runs the protocol handshake under one deadline.
pub async fn dial(target: &Target, source: Option<IpAddr>, session: &Session, timeout: Duration) -> Result<Ws> {
    let fut = async {
        let mut ws = open(target, source).await?;
        handshake(&mut ws, session).await?;
        Ok::<_, anyhow::Error>(ws)
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| anyhow!("handshake timed out after {timeout:?}"))?
}

/// What [`scan_frame`] found in one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameScan {
    /// `{}` pings (each needs a `{}` pong).
    pub pings: u32,
    /// Publication pushes (`"pub":` occurrences).
    pub pubs: u32,
}

const PUB_KEY: &[u8] = b"\"pub\":";
const T_KEY: &[u8] = b"\"t\":";

/// Scans a text frame without parsing it: counts pings and publications and calls `on_t` with
/// the `"t":` integer found inside each publication (if any).
pub fn scan_frame(frame: &[u8], mut on_t: impl FnMut(u64)) -> FrameScan {
    let mut scan = FrameScan::default();
    for line in frame.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line == b"{}" {
            scan.pings += 1;
            continue;
        }
        let mut pos = 0;
        while let Some(p) = find(line, PUB_KEY, pos) {
            scan.pubs += 1;
            let body = p + PUB_KEY.len();
            let next_pub = find(line, PUB_KEY, body).unwrap_or(line.len());
            if let Some(q) = find(&line[..next_pub], T_KEY, body)
                && let Some(t) = parse_uint(&line[q + T_KEY.len()..])
            {
                on_t(t);
            }
            pos = next_pub;
        }
    }
    scan
}

/// Position of `needle` in `hay` at or after `from`.
#[inline]
pub fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        let off = hay[i..=hay.len() - needle.len()].iter().position(|&b| b == first)?;
        i += off;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Leading unsigned decimal integer (after optional spaces).
#[inline]
fn parse_uint(s: &[u8]) -> Option<u64> {
    let s = s.trim_ascii_start();
    let mut v: u64 = 0;
    let mut n = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        n += 1;
    }
    (n > 0).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_pushes_and_pings() {
        let frame = br#"{"push":{"channel":"bench","pub":{"data":{"t":123,"pad":"xx"},"offset":1}}}
{}
{"push":{"channel":"bench","pub":{"data":{"t": 456},"offset":2}}}
{"push":{"channel":"bench","pub":{"data":{"x":1},"offset":3}}}"#;
        let mut ts = vec![];
        let scan = scan_frame(frame, |t| ts.push(t));
        assert_eq!(scan, FrameScan { pings: 1, pubs: 3 });
        assert_eq!(ts, vec![123, 456]);
    }

    #[test]
    fn t_of_next_pub_is_not_borrowed() {
        // Two pubs on one line (no newline); the first has no "t".
        let frame = br#"{"pub":{"data":{}}}{"pub":{"data":{"t":7}}}"#;
        let mut ts = vec![];
        assert_eq!(scan_frame(frame, |t| ts.push(t)).pubs, 2);
        assert_eq!(ts, vec![7]);
    }

    #[test]
    fn ping_only() {
        assert_eq!(scan_frame(b"{}", |_| {}), FrameScan { pings: 1, pubs: 0 });
        assert_eq!(scan_frame(b"{}\n{}\n", |_| {}), FrameScan { pings: 2, pubs: 0 });
        assert_eq!(scan_frame(br#"{"id":2,"subscribe":{}}"#, |_| {}), FrameScan::default());
    }

    #[test]
    fn finder() {
        assert_eq!(find(b"abcabc", b"bc", 0), Some(1));
        assert_eq!(find(b"abcabc", b"bc", 2), Some(4));
        assert_eq!(find(b"abcabc", b"bd", 0), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"", b"a", 0), None);
        assert_eq!(find(b"a", b"a", 5), None);
    }

    #[test]
    fn uints() {
        assert_eq!(parse_uint(b"1234,"), Some(1234));
        assert_eq!(parse_uint(b" 9}"), Some(9));
        assert_eq!(parse_uint(b"x"), None);
        assert_eq!(parse_uint(b"99999999999999999999999"), None);
    }

    #[test]
    fn sources() {
        assert_eq!(loopback_source(0).to_string(), "127.0.0.2");
        assert_eq!(loopback_source(254).to_string(), "127.0.1.0");
    }
}
