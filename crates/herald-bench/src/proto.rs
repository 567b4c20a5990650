//! The client protocols this tool speaks: Herald's (Centrifugo v2, JSON or Protobuf) and the
//! peers' (`raw-ws`, `socketio`, `pusher`, `nchan`; see `bench/peers/peers.json`).
//!
//! A [`Proto`] knows how to open a subscriber connection (URL, WebSocket subprotocol, handshake,
//! subscriptions), how to find publications and pings in a received frame without parsing it
//! ([`Proto::scan`]), and what a pong looks like. Every peer is driven with the same published
//! body, `{"t":<unix nanos>,"pad":"..."}`, so the latency is read the same way everywhere: the
//! integer after the first `"t":` (or `\"t\":` where the body arrives as a JSON string).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::centrifugo::{self, FrameScan, Session, Target, Ws};

/// Which server family a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Herald (Centrifugo client protocol v2; server API `POST /api/publish`).
    Herald,
    /// Every text frame is a published body; publish = POST the raw body.
    RawWs,
    /// Engine.IO v4 / Socket.IO over WebSocket.
    Socketio,
    /// Pusher protocol 7 (Sockudo, Soketi); signed HTTP events API.
    Pusher,
    /// nginx + nchan: `/sub/<channel>` frames are bodies; publish POST `/pub/<channel>`.
    Nchan,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Herald => "herald",
            Kind::RawWs => "raw-ws",
            Kind::Socketio => "socketio",
            Kind::Pusher => "pusher",
            Kind::Nchan => "nchan",
        }
    }

    /// Whether one connection can subscribe to several channels.
    pub fn multi_channel(self) -> bool {
        matches!(self, Kind::Herald | Kind::Socketio | Kind::Pusher)
    }
}

/// Herald's wire codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Json,
    Protobuf,
}

/// A subscriber-side protocol.
#[derive(Clone, Debug)]
pub struct Proto {
    pub kind: Kind,
    pub codec: Codec,
    /// Pusher application key (the `/app/<key>` path is part of the ws URL template already).
    pub app_key: String,
}

impl Proto {
    pub fn herald(codec: Codec) -> Self {
        Self { kind: Kind::Herald, codec, app_key: String::new() }
    }

    pub fn is_binary(&self) -> bool {
        self.kind == Kind::Herald && self.codec == Codec::Protobuf
    }

    /// The frame that answers one ping.
    pub fn pong(&self) -> Message {
        match (self.kind, self.codec) {
            (Kind::Herald, Codec::Json) => centrifugo::pong(),
            (Kind::Herald, Codec::Protobuf) => Message::Binary(Bytes::from_static(&[0])),
            (Kind::Socketio, _) => Message::Text(Utf8Bytes::from_static("3")),
            (Kind::Pusher, _) => Message::Text(Utf8Bytes::from_static(r#"{"event":"pusher:pong","data":{}}"#)),
            _ => Message::Text(Utf8Bytes::from_static("")),
        }
    }

    /// The connection URL for a session: `{channel}` in the template becomes its first channel.
    pub fn url_for(&self, template: &str, session: &Session) -> String {
        let first = session.channels.first().map(String::as_str).unwrap_or("none");
        template.replace("{channel}", first)
    }

    /// Counts publications and pings in a frame; calls `on_t` with each publication's timestamp.
    #[inline]
    pub fn scan(&self, frame: &[u8], binary: bool, mut on_t: impl FnMut(u64)) -> FrameScan {
        match self.kind {
            Kind::Herald if binary => scan_protobuf(frame, on_t),
            Kind::Herald => centrifugo::scan_frame(frame, on_t),
            _ => {
                let mut scan = FrameScan::default();
                match self.kind {
                    Kind::Socketio if frame == b"2" => {
                        scan.pings = 1;
                        return scan;
                    }
                    Kind::Pusher if centrifugo::find(frame, b"pusher:ping", 0).is_some() => {
                        scan.pings = 1;
                        return scan;
                    }
                    _ => {}
                }
                if let Some(t) = find_t(frame) {
                    scan.pubs = 1;
                    on_t(t);
                } else if self.kind == Kind::RawWs || self.kind == Kind::Nchan {
                    // Every frame is a publication there, even one without a timestamp.
                    scan.pubs = u32::from(!frame.is_empty());
                }
                scan
            }
        }
    }

    /// Dials, upgrades and runs the protocol handshake (connect + subscriptions) under one deadline.
    pub async fn dial(
        &self,
        target: &Target,
        source: Option<IpAddr>,
        session: &Session,
        timeout: Duration,
    ) -> Result<Ws> {
        let fut = async {
            let url = self.url_for(&target.url, session);
            let mut ws = self.open(target, &url, source).await?;
            self.handshake(&mut ws, session).await?;
            Ok::<_, anyhow::Error>(ws)
        };
        tokio::time::timeout(timeout, fut).await.map_err(|_| anyhow!("handshake timed out after {timeout:?}"))?
    }

    async fn open(&self, target: &Target, url: &str, source: Option<IpAddr>) -> Result<Ws> {
        if self.kind == Kind::Herald && self.codec == Codec::Json {
            // Same path as before (kept byte-identical for Herald JSON).
            return centrifugo::open(&Target { url: url.to_string(), addr: target.addr }, source).await;
        }
        let socket = if target.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.context("socket")?;
        if let Some(ip) = source {
            socket.bind(std::net::SocketAddr::new(ip, 0)).with_context(|| format!("bind {ip}"))?;
        }
        let stream = socket.connect(target.addr).await.with_context(|| format!("tcp connect {}", target.addr))?;
        stream.set_nodelay(true).context("nodelay")?;
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO)).context("SO_LINGER")?;
        let mut request = url.into_client_request().context("bad ws url")?;
        if self.is_binary() {
            request.headers_mut().insert("Sec-WebSocket-Protocol", http_value("centrifuge-protobuf"));
        }
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(centrifugo::ws_config()))
            .await
            .context("websocket handshake")?;
        Ok(ws)
    }

    async fn handshake(&self, ws: &mut Ws, session: &Session) -> Result<()> {
        match self.kind {
            Kind::Herald if self.codec == Codec::Json => centrifugo::handshake(ws, session).await.map(|_| ()),
            Kind::Herald => protobuf_handshake(ws, session).await,
            Kind::RawWs | Kind::Nchan => {
                if session.channels.len() > 1 {
                    bail!("{} takes one channel per connection", self.kind.name());
                }
                Ok(())
            }
            Kind::Socketio => {
                let open = next_text(ws).await.context("engine.io open")?;
                if !open.starts_with('0') {
                    bail!("expected engine.io open packet, got `{}`", clip(&open));
                }
                ws.send(Message::text("40")).await?;
                loop {
                    let t = next_text(ws).await.context("socket.io connect")?;
                    if t == "2" {
                        ws.send(Message::text("3")).await?;
                    } else if t.starts_with("40") {
                        break;
                    } else if t.starts_with("44") {
                        bail!("socket.io connect refused: {}", clip(&t));
                    }
                }
                for ch in &session.channels {
                    let frame = format!("42[\"subscribe\",{}]", serde_json::Value::String(ch.clone()));
                    ws.send(Message::text(frame)).await?;
                }
                Ok(())
            }
            Kind::Pusher => {
                loop {
                    let t = next_text(ws).await.context("pusher connect")?;
                    if t.contains("pusher:connection_established") {
                        break;
                    }
                    if t.contains("pusher:error") {
                        bail!("pusher error: {}", clip(&t));
                    }
                }
                for ch in &session.channels {
                    let frame = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": ch}});
                    ws.send(Message::text(frame.to_string())).await?;
                    loop {
                        let t = next_text(ws).await.context("pusher subscribe")?;
                        if t.contains("subscription_succeeded") {
                            break;
                        }
                        if t.contains("pusher:ping") {
                            ws.send(self.pong()).await?;
                        } else if t.contains("pusher:error") || t.contains("subscription_error") {
                            bail!("pusher subscribe error: {}", clip(&t));
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn http_value(v: &'static str) -> tokio_tungstenite::tungstenite::http::HeaderValue {
    tokio_tungstenite::tungstenite::http::HeaderValue::from_static(v)
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await.ok_or_else(|| anyhow!("connection closed during handshake"))?? {
            Message::Text(t) => return Ok(t.as_str().to_string()),
            Message::Close(f) => bail!("server closed: {f:?}"),
            _ => {}
        }
    }
}

/// The integer after the first `"t":` (or `\"t\":`) in a frame.
#[inline]
pub fn find_t(frame: &[u8]) -> Option<u64> {
    let pos = centrifugo::find(frame, b"\"t\":", 0)
        .map(|p| p + 4)
        .or_else(|| centrifugo::find(frame, b"\\\"t\\\":", 0).map(|p| p + 6))?;
    parse_uint(&frame[pos..])
}

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

/// Reads one varint at `pos`; returns (value, next position).
fn varint(buf: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(pos)?;
        pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((v, pos));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Scans a Protobuf frame (varint-delimited `Reply` messages): an empty message is a ping; a
/// message containing the publisher's `"t":` is a publication (the JSON data travels verbatim).
pub fn scan_protobuf(frame: &[u8], mut on_t: impl FnMut(u64)) -> FrameScan {
    let mut scan = FrameScan::default();
    let mut pos = 0;
    while pos < frame.len() {
        let Some((len, start)) = varint(frame, pos) else { break };
        let end = (start + len as usize).min(frame.len());
        if len == 0 {
            scan.pings += 1;
        } else if let Some(t) = find_t(&frame[start..end]) {
            scan.pubs += 1;
            on_t(t);
        }
        pos = end;
    }
    scan
}

fn encode_delimited(cmd: &herald_protocol::Command) -> Message {
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail.
    let _ = cmd.encode_length_delimited(&mut out);
    Message::Binary(out.into())
}

async fn protobuf_handshake(ws: &mut Ws, session: &Session) -> Result<()> {
    let connect = herald_protocol::Command {
        id: 1,
        connect: Some(herald_protocol::ConnectRequest {
            token: session.token.clone().unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    };
    ws.send(encode_delimited(&connect)).await.context("sending connect")?;
    protobuf_reply(ws, 1).await.context("connect")?;
    for (i, channel) in session.channels.iter().enumerate() {
        let id = i as u32 + 2;
        let sub = herald_protocol::Command {
            id,
            subscribe: Some(herald_protocol::SubscribeRequest { channel: channel.clone(), ..Default::default() }),
            ..Default::default()
        };
        ws.send(encode_delimited(&sub)).await.context("sending subscribe")?;
        protobuf_reply(ws, id).await.with_context(|| format!("subscribe {channel}"))?;
    }
    Ok(())
}

async fn protobuf_reply(ws: &mut Ws, id: u32) -> Result<()> {
    loop {
        let msg = ws.next().await.ok_or_else(|| anyhow!("connection closed while waiting for reply {id}"))??;
        let data = match msg {
            Message::Binary(b) => b,
            Message::Text(_) => bail!("text frame: server speaks JSON? (protobuf expected)"),
            Message::Close(f) => bail!("server closed: {f:?}"),
            _ => continue,
        };
        let mut buf = &data[..];
        while !buf.is_empty() {
            let reply = herald_protocol::Reply::decode_length_delimited(&mut buf).context("bad protobuf reply")?;
            if reply == herald_protocol::Reply::default() {
                ws.send(Message::Binary(Bytes::from_static(&[0]))).await?;
                continue;
            }
            if reply.id != id {
                continue;
            }
            if let Some(e) = reply.error {
                bail!("server error {} {}", e.code, e.message);
            }
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_timestamps() {
        assert_eq!(find_t(br#"{"t":12,"pad":"x"}"#), Some(12));
        assert_eq!(find_t(br#"{"event":"bench","data":"{\"t\":34,\"pad\":\"x\"}"}"#), Some(34));
        assert_eq!(find_t(br#"42["message",{"t":56}]"#), Some(56));
        assert_eq!(find_t(b"hello"), None);
    }

    #[test]
    fn scans_peer_frames() {
        let sio = Proto { kind: Kind::Socketio, codec: Codec::Json, app_key: String::new() };
        assert_eq!(sio.scan(b"2", false, |_| {}), FrameScan { pings: 1, pubs: 0 });
        let mut ts = vec![];
        assert_eq!(sio.scan(br#"42["message",{"t":7}]"#, false, |t| ts.push(t)).pubs, 1);
        let pusher = Proto { kind: Kind::Pusher, codec: Codec::Json, app_key: "k".into() };
        assert_eq!(pusher.scan(br#"{"event":"pusher:ping","data":{}}"#, false, |_| {}).pings, 1);
        assert_eq!(
            pusher.scan(br#"{"event":"bench","channel":"c","data":"{\"t\":9}"}"#, false, |t| ts.push(t)).pubs,
            1
        );
        assert_eq!(pusher.scan(br#"{"event":"pusher_internal:subscription_succeeded"}"#, false, |_| {}).pubs, 0);
        assert_eq!(ts, vec![7, 9]);
    }

    #[test]
    fn scans_protobuf() {
        use herald_protocol::{Publication, Push, Reply};
        let mut frame = vec![0u8]; // ping
        let push = Reply::from_push(Push {
            channel: "bench".into(),
            publication: Some(Publication { data: Bytes::from_static(br#"{"t":42,"pad":""}"#), ..Default::default() }),
            ..Default::default()
        });
        push.encode_length_delimited(&mut frame).expect("encode");
        push.encode_length_delimited(&mut frame).expect("encode");
        let mut ts = vec![];
        assert_eq!(scan_protobuf(&frame, |t| ts.push(t)), FrameScan { pings: 1, pubs: 2 });
        assert_eq!(ts, vec![42, 42]);
    }
}
