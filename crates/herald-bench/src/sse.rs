//! A minimal client for Herald's uni-directional Server-Sent Events transport
//! (`GET /connection/uni_sse?cf_connect=<connect request>`), cheap enough to hold ~20k of.
//!
//! No HTTP library: the request is one hand-written HTTP/1.1 `GET` line plus headers, the
//! response head is parsed once, and the body (chunked, as hyper streams it) goes through a small
//! incremental decoder ([`Decoder`]: de-chunking, then SSE line parsing) that hands every event's
//! `data` to the caller. A connection at rest holds its socket and the decoder's (empty) state;
//! reads go through one buffer per worker thread ([`SseConn::read_events`]).
//!
//! Subscriptions on this transport are server-side: they come from the connection token's
//! `channels` claim. [`mint_token`] signs such a token (HS256, the server's
//! `client.token.hmac_secret`), one per connection, carrying the session's channels.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::centrifugo::{Session, Target};

/// Base64url without padding (RFC 4648 §5), as JWTs use it.
pub fn base64url(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 JWT with header `{"alg":"HS256","typ":"JWT"}` over `claims` (JSON text).
pub fn sign_hs256(secret: &[u8], claims: &str) -> String {
    let mut token = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    token.push('.');
    token.push_str(&base64url(claims.as_bytes()));
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(token.as_bytes());
    let sig = mac.finalize().into_bytes();
    token.push('.');
    token.push_str(&base64url(&sig));
    token
}

/// A connection token for user `user` whose `channels` claim subscribes it server-side.
pub fn mint_token(secret: &str, user: &str, channels: &[String]) -> String {
    let claims = serde_json::json!({"sub": user, "channels": channels});
    sign_hs256(secret.as_bytes(), &claims.to_string())
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
pub fn encode_query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `http://host:port/path` → (`host:port`, `/path`).
pub fn split_url(url: &str) -> Result<(&str, &str)> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("uni-sse needs an http:// URL (got `{url}`)"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// The `GET` request that opens a uni SSE stream with `connect_request` (JSON) as `cf_connect`.
pub fn request(url: &str, connect_request: &str) -> Result<Vec<u8>> {
    let (host, path) = split_url(url)?;
    let sep = if path.contains('?') { '&' } else { '?' };
    Ok(format!(
        "GET {path}{sep}cf_connect={} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        encode_query_value(connect_request)
    )
    .into_bytes())
}

/// What matters of a response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_type: String,
    pub content_length: Option<usize>,
}

/// Parses a response head (status line and headers, without the blank line).
pub fn parse_head(head: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: `{status_line}`");
    }
    let status = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line `{status_line}`"))?;
    let mut out = Head { status, chunked: false, content_type: String::new(), content_length: None };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            out.chunked = value.to_ascii_lowercase().split(',').any(|v| v.trim() == "chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            out.content_type = value.to_string();
        } else if name.eq_ignore_ascii_case("content-length") {
            out.content_length = value.parse().ok();
        }
    }
    Ok(out)
}

/// Chunked transfer decoding state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size line (value so far, whether an extension `;...` started).
    Size { size: u64, ext: bool, digits: bool },
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: the CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailer { empty_line: bool },
    /// The body is over.
    Done,
    /// Not chunked: every byte is body.
    Identity,
}

/// Incremental decoder of an SSE response body: de-chunks, splits lines (`\n`, `\r\n` or `\r`),
/// collects `data:` fields and hands each complete event's data to the caller.
#[derive(Debug)]
pub struct Decoder {
    chunk: Chunk,
    /// An incomplete line carried over from the previous read (empty at rest).
    line: Vec<u8>,
    /// The current event's data (several `data:` lines are joined by `\n`).
    data: Vec<u8>,
    has_data: bool,
    /// The previous byte was a `\r` that ended a line (a following `\n` belongs to it).
    after_cr: bool,
}

impl Decoder {
    pub fn new(chunked: bool) -> Self {
        Self {
            chunk: if chunked { Chunk::Size { size: 0, ext: false, digits: false } } else { Chunk::Identity },
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
        }
    }

    /// Whether the (chunked) body has ended.
    pub fn is_done(&self) -> bool {
        self.chunk == Chunk::Done
    }

    /// Feeds received bytes; calls `on_event` with the data of every event they complete.
    pub fn feed(&mut self, mut input: &[u8], on_event: &mut impl FnMut(&[u8])) -> Result<()> {
        while !input.is_empty() {
            match self.chunk {
                Chunk::Identity => {
                    self.body(input, on_event);
                    return Ok(());
                }
                Chunk::Data(left) => {
                    let n = (left as usize).min(input.len());
                    self.body(&input[..n], on_event);
                    input = &input[n..];
                    self.chunk = if n as u64 == left { Chunk::DataEnd } else { Chunk::Data(left - n as u64) };
                }
                Chunk::DataEnd => {
                    // CRLF (a bare LF is tolerated).
                    match input[0] {
                        b'\r' => {}
                        b'\n' => self.chunk = Chunk::Size { size: 0, ext: false, digits: false },
                        b => bail!("chunked body: expected CRLF after chunk data, got byte {b:#04x}"),
                    }
                    input = &input[1..];
                }
                Chunk::Size { size, ext, digits } => {
                    let b = input[0];
                    input = &input[1..];
                    self.chunk = match b {
                        b'\n' if !digits => bail!("chunked body: empty chunk size line"),
                        b'\n' if size == 0 => Chunk::Trailer { empty_line: true },
                        b'\n' => Chunk::Data(size),
                        b'\r' => Chunk::Size { size, ext, digits },
                        _ if ext => Chunk::Size { size, ext, digits },
                        b';' | b' ' | b'\t' => Chunk::Size { size, ext: true, digits },
                        _ => {
                            let d = (b as char)
                                .to_digit(16)
                                .ok_or_else(|| anyhow!("chunked body: bad chunk size byte {b:#04x}"))?;
                            let size = size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(u64::from(d)))
                                .filter(|s| *s < 1 << 40)
                                .ok_or_else(|| anyhow!("chunked body: chunk size too large"))?;
                            Chunk::Size { size, ext, digits: true }
                        }
                    };
                }
                Chunk::Trailer { empty_line } => {
                    let b = input[0];
                    input = &input[1..];
                    self.chunk = match b {
                        b'\n' if empty_line => Chunk::Done,
                        b'\n' => Chunk::Trailer { empty_line: true },
                        b'\r' => Chunk::Trailer { empty_line },
                        _ => Chunk::Trailer { empty_line: false },
                    };
                }
                Chunk::Done => return Ok(()),
            }
        }
        Ok(())
    }

    /// Body bytes: split into lines, the complete ones are parsed.
    fn body(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if bytes[0] == b'\n' {
                bytes = &bytes[1..];
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            if bytes[end] == b'\r' {
                if end + 1 < bytes.len() {
                    if bytes[end + 1] == b'\n' {
                        self.complete_line(&bytes[..end], on_event);
                        bytes = &bytes[end + 2..];
                        continue;
                    }
                } else {
                    self.after_cr = true;
                }
            }
            self.complete_line(&bytes[..end], on_event);
            bytes = &bytes[end + 1..];
        }
        self.line.extend_from_slice(bytes);
    }

    fn complete_line(&mut self, tail: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if self.line.is_empty() {
            self.line_done(tail, on_event);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.line_done(&line, on_event);
            line.clear();
            self.line = line;
        }
    }

    /// One line of the event stream (https://html.spec.whatwg.org/multipage/server-sent-events.html).
    fn line_done(&mut self, line: &[u8], on_event: &mut impl FnMut(&[u8])) {
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return; // comment
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        // `id`, `event`, `retry`: not needed here.
    }

    /// Frees the buffers of a decoder at rest (nothing half-read).
    pub fn shrink(&mut self) {
        if self.line.is_empty() && self.line.capacity() > 0 {
            self.line = Vec::new();
        }
        if !self.has_data && self.data.capacity() > 256 {
            self.data = Vec::new();
        }
    }
}

/// One open uni SSE stream.
pub struct SseConn {
    pub stream: TcpStream,
    pub decoder: Decoder,
}

/// Where to connect and how to authenticate.
#[derive(Clone, Debug)]
pub struct SseClient {
    pub target: Target,
    /// HS256 secret to mint a per-connection token with the session's channels; without it the
    /// session's own token is sent as it is (its `channels` claim must name the channels).
    pub hmac_secret: Option<String>,
}

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes were read (possibly no complete event yet).
    Data,
    /// Nothing to read after all (spurious readiness).
    WouldBlock,
    /// The server ended the stream.
    Eof,
}

thread_local! {
    /// One read buffer per worker thread, so that an idle connection holds none.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

impl SseConn {
    /// Reads what is available (call after `stream.readable()`) and hands each complete event's
    /// data to `on_event`.
    pub fn read_events(&mut self, on_event: &mut impl FnMut(&[u8])) -> Result<ReadOutcome> {
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match self.stream.try_read(&mut buf[..]) {
                Ok(0) => Ok(ReadOutcome::Eof),
                Ok(n) => {
                    self.decoder.feed(&buf[..n], on_event)?;
                    if self.decoder.is_done() {
                        return Ok(ReadOutcome::Eof);
                    }
                    self.decoder.shrink();
                    Ok(ReadOutcome::Data)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
                Err(e) => Err(anyhow::Error::from(e).context("read")),
            }
        })
    }
}

impl SseClient {
    /// Connects (from `source`), sends the GET, checks the response and waits for the connect
    /// push, which must list every channel of the session as subscribed; all under `timeout`.
    pub async fn dial(
        &self,
        source: Option<IpAddr>,
        session: &Session,
        user: &str,
        timeout: Duration,
    ) -> Result<SseConn> {
        tokio::time::timeout(timeout, self.open(source, session, user))
            .await
            .map_err(|_| anyhow!("handshake timed out after {timeout:?}"))?
    }

    async fn open(&self, source: Option<IpAddr>, session: &Session, user: &str) -> Result<SseConn> {
        let token = match &self.hmac_secret {
            Some(secret) => Some(mint_token(secret, user, &session.channels)),
            None => session.token.clone(),
        };
        let connect = match &token {
            Some(t) => serde_json::json!({ "token": t }).to_string(),
            None => "{}".to_string(),
        };
        let req = request(&self.target.url, &connect)?;
        let addr = self.target.addr;
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.context("socket")?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("bind {ip}"))?;
        }
        let mut stream = socket.connect(addr).await.with_context(|| format!("tcp connect {addr}"))?;
        stream.set_nodelay(true).context("nodelay")?;
        // Abortive close on drop, as for the WebSocket clients (no TIME_WAIT left behind).
        #[allow(deprecated)]
        stream.set_linger(Some(Duration::ZERO)).context("SO_LINGER")?;
        stream.write_all(&req).await.context("sending request")?;

        // Response head.
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            if let Some(p) = crate::centrifugo::find(&buf, b"\r\n\r\n", 0) {
                break p;
            }
            if buf.len() > 16 * 1024 {
                bail!("response head over 16 KiB");
            }
            let mut tmp = [0u8; 2048];
            let n = stream.read(&mut tmp).await.context("reading response head")?;
            if n == 0 {
                bail!("server closed before answering");
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head = parse_head(&buf[..head_end])?;
        let rest = buf[head_end + 4..].to_vec();
        if head.status != 200 {
            let mut body = rest;
            let want = head.content_length.unwrap_or(512).min(4096);
            while body.len() < want {
                let mut tmp = [0u8; 1024];
                match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut tmp)).await {
                    Ok(Ok(n)) if n > 0 => body.extend_from_slice(&tmp[..n]),
                    _ => break,
                }
            }
            let text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
            bail!("HTTP {}: {}", head.status, text.trim());
        }
        if !head.content_type.starts_with("text/event-stream") {
            bail!("expected text/event-stream, got `{}`", head.content_type);
        }
        let mut conn = SseConn { stream, decoder: Decoder::new(head.chunked) };

        // The connect push comes first.
        let mut first: Option<Vec<u8>> = None;
        conn.decoder.feed(&rest, &mut |data: &[u8]| {
            first.get_or_insert_with(|| data.to_vec());
        })?;
        let first = loop {
            if let Some(first) = first.take() {
                break first;
            }
            conn.stream.readable().await.context("waiting for the connect push")?;
            let outcome = conn.read_events(&mut |data: &[u8]| {
                first.get_or_insert_with(|| data.to_vec());
            })?;
            if outcome == ReadOutcome::Eof && first.is_none() {
                bail!("stream ended before the connect push");
            }
        };
        check_connect_push(&first, &session.channels)?;
        conn.decoder.shrink();
        Ok(conn)
    }
}

/// The first event must be `{"connect":{...}}` and name every channel among its subscriptions.
pub fn check_connect_push(data: &[u8], channels: &[String]) -> Result<()> {
    let clip = || String::from_utf8_lossy(&data[..data.len().min(300)]).to_string();
    if !data.starts_with(b"{\"connect\":") {
        bail!("expected the connect push first, got `{}`", clip());
    }
    let v: serde_json::Value =
        serde_json::from_slice(data).with_context(|| format!("bad connect push `{}`", clip()))?;
    let subs = v.pointer("/connect/subs");
    for ch in channels {
        if subs.and_then(|s| s.get(ch)).is_none() {
            bail!(
                "server did not subscribe the connection to `{ch}` (token channels claim; config hmac_secret?): `{}`",
                clip()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(dec: &mut Decoder, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        dec.feed(input, &mut |d| out.push(String::from_utf8_lossy(d).to_string())).expect("valid input");
        out
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        // RFC 4648 §10 vectors, without padding.
        let cases = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE")];
        for (i, o) in cases {
            assert_eq!(base64url(i.as_bytes()), o);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn hs256_matches_a_known_token() {
        // The example token of jwt.io (secret `your-256-bit-secret`).
        let claims = r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#;
        assert_eq!(
            sign_hs256(b"your-256-bit-secret", claims),
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
        );
    }

    #[test]
    fn minted_token_carries_the_channels() {
        let t = mint_token("s", "u1", &["a".into(), "b:c".into()]);
        let payload = t.split('.').nth(1).expect("three parts");
        // Decode by re-encoding the expected claims.
        assert_eq!(payload, base64url(br#"{"channels":["a","b:c"],"sub":"u1"}"#));
    }

    #[test]
    fn request_line_encodes_cf_connect() {
        let req = request("http://127.0.0.1:8000/connection/uni_sse", r#"{"token":"a.b-c_d"}"#).expect("url");
        let text = String::from_utf8(req).expect("ascii");
        assert!(
            text.starts_with("GET /connection/uni_sse?cf_connect=%7B%22token%22%3A%22a.b-c_d%22%7D HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"));
        assert!(request("ws://x/y", "{}").is_err());
    }

    #[test]
    fn parses_response_heads() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\ndate: x",
        )
        .expect("head");
        assert_eq!(
            h,
            Head {
                status: 200,
                chunked: true,
                content_type: "text/event-stream; charset=utf-8".into(),
                content_length: None
            }
        );
        let h = parse_head(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 57").expect("head");
        assert_eq!((h.status, h.chunked, h.content_length), (401, false, Some(57)));
        assert!(parse_head(b"SSH-2.0-OpenSSH").is_err());
    }

    /// What Herald sends: a `\r\n` preamble chunk, then one chunk per batch of events.
    const BODY: &[u8] = b"2\r\n\r\n\r\n\
2d\r\ndata: {\"connect\":{\"client\":\"c1\",\"subs\":{}}}\n\n\r\n\
57\r\nid: {\"ch\":[1,\"e\"]}\ndata: {\"channel\":\"ch\",\"pub\":{\"data\":{\"t\":5},\"offset\":1}}\n\ndata: {}\n\n\r\n\
0\r\n\r\n";

    #[test]
    fn decodes_chunked_sse_in_one_read() {
        let mut d = Decoder::new(true);
        let ev = events(&mut d, BODY);
        assert_eq!(
            ev,
            vec![
                r#"{"connect":{"client":"c1","subs":{}}}"#,
                r#"{"channel":"ch","pub":{"data":{"t":5},"offset":1}}"#,
                "{}"
            ]
        );
        assert!(d.is_done());
    }

    #[test]
    fn decodes_the_same_events_whatever_the_read_boundaries() {
        let mut whole = Decoder::new(true);
        let expected = events(&mut whole, BODY);
        for step in 1..BODY.len() {
            let mut d = Decoder::new(true);
            let mut got = Vec::new();
            for piece in BODY.chunks(step) {
                got.extend(events(&mut d, piece));
            }
            assert_eq!(got, expected, "read size {step}");
            assert!(d.is_done(), "read size {step}");
        }
    }

    #[test]
    fn line_endings_comments_and_multiline_data() {
        let mut d = Decoder::new(false);
        let input = b": comment\r\ndata: a\rdata:b\r\n\r\nevent: x\ndata\n\nid: 3\n\n";
        // Split right after a `\r` to check a CRLF across reads.
        let (x, y) = input.split_at(26);
        assert_eq!(x.last(), Some(&b'\r'));
        let mut ev = events(&mut d, x);
        ev.extend(events(&mut d, y));
        assert_eq!(ev, vec!["a\nb", ""]);
    }

    #[test]
    fn rejects_a_broken_chunk_stream() {
        let mut d = Decoder::new(true);
        assert!(d.feed(b"zz\r\n", &mut |_| {}).is_err());
        let mut d = Decoder::new(true);
        assert!(d.feed(b"3\r\nabcX", &mut |_| {}).is_err());
    }

    #[test]
    fn checks_the_connect_push() {
        let ok = br#"{"connect":{"client":"c","subs":{"idle-1":{"offset":0}}}}"#;
        assert!(check_connect_push(ok, &["idle-1".into()]).is_ok());
        assert!(check_connect_push(ok, &["idle-2".into()]).is_err());
        assert!(check_connect_push(br#"{"channel":"x","pub":{}}"#, &[]).is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query_value("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(split_url("http://h:1").expect("url"), ("h:1", "/"));
    }
}
