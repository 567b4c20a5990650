//! A tiny keep-alive HTTP/1.1 client for the server API.
//!
//! One [`ApiClient`] = one TCP connection, requests strictly one at a time (no pipelining).
//! Hand-rolled so that a publisher costs the 2-core bench machine as little as possible; it
//! understands `Content-Length`, `Transfer-Encoding: chunked` and close-delimited bodies.

use std::net::SocketAddr;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed `http://host:port[/prefix]` base URL.
#[derive(Clone, Debug)]
pub struct ApiBase {
    pub host: String,
    pub addr: SocketAddr,
    pub prefix: String,
}

impl ApiBase {
    pub async fn resolve(url: &str) -> Result<Self> {
        let rest =
            url.strip_prefix("http://").ok_or_else(|| anyhow!("only http:// API URLs are supported (got `{url}`)"))?;
        let (host, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let hostport = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
        let addr = tokio::net::lookup_host(&hostport)
            .await
            .with_context(|| format!("resolving {hostport}"))?
            .next()
            .ok_or_else(|| anyhow!("{hostport} resolved to nothing"))?;
        Ok(Self { host: host.to_string(), addr, prefix: prefix.to_string() })
    }
}

/// A response: status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// 2xx and no top-level `"error"` member (Centrifugo-style API replies `{"error":{...}}`).
    pub fn is_api_success(&self) -> bool {
        (200..300).contains(&self.status) && !self.body.trim_ascii_start().starts_with(b"{\"error\"")
    }
}

/// One keep-alive connection to the API.
pub struct ApiClient {
    base: ApiBase,
    api_key: String,
    stream: Option<TcpStream>,
    req: Vec<u8>,
    rbuf: Vec<u8>,
    /// Connections opened so far (1 on a healthy run).
    pub connects: u64,
}

impl ApiClient {
    pub fn new(base: ApiBase, api_key: &str) -> Self {
        Self {
            base,
            api_key: api_key.to_string(),
            stream: None,
            req: Vec::with_capacity(1024),
            rbuf: Vec::with_capacity(4096),
            connects: 0,
        }
    }

    /// `POST <prefix><path>` with a JSON body. Retries once when a reused connection turns out to
    /// have been closed by the server before it answered.
    pub async fn post_json(&mut self, path: &str, body: &[u8]) -> Result<Response> {
        self.req.clear();
        let head = format!(
            "POST {}{} HTTP/1.1\r\nHost: {}\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.base.prefix,
            path,
            self.base.host,
            self.api_key,
            body.len()
        );
        self.req.extend_from_slice(head.as_bytes());
        self.req.extend_from_slice(body);
        self.exchange().await
    }

    /// Sends a complete, pre-rendered HTTP/1.1 request (head and body) and reads the response.
    pub async fn send_raw(&mut self, request: &[u8]) -> Result<Response> {
        self.req.clear();
        self.req.extend_from_slice(request);
        self.exchange().await
    }

    /// Host header value of this client's base URL.
    pub fn host(&self) -> &str {
        &self.base.host
    }

    async fn exchange(&mut self) -> Result<Response> {
        let reused = self.stream.is_some();
        match self.round_trip().await {
            Ok(r) => Ok(r),
            Err(RtError::ClosedBeforeResponse) if reused => {
                self.stream = None;
                self.round_trip().await.map_err(RtError::into_anyhow)
            }
            Err(e) => {
                self.stream = None;
                Err(e.into_anyhow())
            }
        }
    }

    async fn round_trip(&mut self) -> Result<Response, RtError> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.base.addr)
                .await
                .map_err(|e| RtError::Other(anyhow!("connect {}: {e}", self.base.addr)))?;
            s.set_nodelay(true).map_err(|e| RtError::Other(e.into()))?;
            self.stream = Some(s);
            self.connects += 1;
        }
        let Some(stream) = self.stream.as_mut() else { return Err(RtError::Other(anyhow!("no connection"))) };
        if let Err(e) = stream.write_all(&self.req).await {
            return Err(if is_reset(&e) { RtError::ClosedBeforeResponse } else { RtError::Other(e.into()) });
        }
        self.rbuf.clear();
        let mut parser = ResponseParser::default();
        loop {
            if let Some(resp) = parser.feed(&self.rbuf).map_err(RtError::Other)? {
                if parser.close_after {
                    self.stream = None;
                }
                return Ok(resp);
            }
            self.rbuf.reserve(4096);
            let n = match stream.read_buf(&mut self.rbuf).await {
                Ok(n) => n,
                Err(e) if is_reset(&e) && self.rbuf.is_empty() => return Err(RtError::ClosedBeforeResponse),
                Err(e) => return Err(RtError::Other(e.into())),
            };
            if n == 0 {
                if self.rbuf.is_empty() {
                    return Err(RtError::ClosedBeforeResponse);
                }
                // Close-delimited body?
                if let Some(resp) = parser.finish_on_eof(&self.rbuf) {
                    self.stream = None;
                    return Ok(resp);
                }
                return Err(RtError::Other(anyhow!("connection closed mid-response")));
            }
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof)
}

enum RtError {
    ClosedBeforeResponse,
    Other(anyhow::Error),
}

impl RtError {
    fn into_anyhow(self) -> anyhow::Error {
        match self {
            Self::ClosedBeforeResponse => anyhow!("server closed the connection before responding"),
            Self::Other(e) => e,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum BodyKind {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Incremental response parser over a growing buffer (re-scans from the start; responses are tiny).
#[derive(Default, Debug)]
pub struct ResponseParser {
    head: Option<(u16, usize, BodyKind)>,
    close_after: bool,
}

impl ResponseParser {
    /// Returns the response once `buf` holds all of it.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Option<Response>> {
        if self.head.is_none() {
            let Some(end) = crate::centrifugo::find(buf, b"\r\n\r\n", 0) else {
                if buf.len() > 64 * 1024 {
                    bail!("response head too large");
                }
                return Ok(None);
            };
            let head = std::str::from_utf8(&buf[..end]).context("non-UTF-8 response head")?;
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            let mut parts = status_line.split_whitespace();
            let version = parts.next().unwrap_or_default();
            if !version.starts_with("HTTP/1.") {
                bail!("bad status line `{status_line}`");
            }
            let status: u16 =
                parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line `{status_line}`"))?;
            let mut kind = BodyKind::UntilClose;
            self.close_after = version == "HTTP/1.0";
            for line in lines {
                let Some((name, value)) = line.split_once(':') else { continue };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    kind = BodyKind::Length(value.parse().context("bad content-length")?);
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    kind = BodyKind::Chunked;
                } else if name.eq_ignore_ascii_case("connection") {
                    self.close_after = value.eq_ignore_ascii_case("close");
                }
            }
            if status == 204 || status == 304 || (100..200).contains(&status) {
                kind = BodyKind::Length(0);
            }
            if matches!(kind, BodyKind::UntilClose) {
                self.close_after = true;
            }
            self.head = Some((status, end + 4, kind));
        }
        let Some((status, body_start, kind)) = self.head else { return Ok(None) };
        let rest = &buf[body_start..];
        match kind {
            BodyKind::Length(n) => Ok((rest.len() >= n).then(|| Response { status, body: rest[..n].to_vec() })),
            BodyKind::Chunked => Ok(decode_chunked(rest)?.map(|body| Response { status, body })),
            BodyKind::UntilClose => Ok(None),
        }
    }

    fn finish_on_eof(&self, buf: &[u8]) -> Option<Response> {
        match self.head {
            Some((status, start, BodyKind::UntilClose)) => Some(Response { status, body: buf[start..].to_vec() }),
            _ => None,
        }
    }
}

/// Decodes a complete chunked body, or `None` if more bytes are needed.
fn decode_chunked(mut rest: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = crate::centrifugo::find(rest, b"\r\n", 0) else { return Ok(None) };
        let size_str = std::str::from_utf8(&rest[..eol]).context("bad chunk size")?;
        let size_str = size_str.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_str, 16).with_context(|| format!("bad chunk size `{size_str}`"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            // Trailers end with an empty line.
            return Ok(crate::centrifugo::find(rest, b"\r\n", 0).map(|_| body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            bail!("chunk not terminated by CRLF");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Option<Response> {
        // Feed byte by byte to exercise the incremental path.
        let mut p = ResponseParser::default();
        for i in 0..=bytes.len() {
            if let Some(r) = p.feed(&bytes[..i]).expect("valid") {
                assert_eq!(i, bytes.len(), "complete before the end");
                return Some(r);
            }
        }
        None
    }

    #[test]
    fn content_length() {
        let r = parse_all(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"result\":{}}").expect("complete");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{\"result\":{}}");
        assert!(r.is_api_success());
    }

    #[test]
    fn chunked() {
        let r = parse_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"er\r\n8\r\nror\":{}}\r\n0\r\n\r\n",
        )
        .expect("complete");
        assert_eq!(r.body, b"{\"error\":{}}");
        assert!(!r.is_api_success());
    }

    #[test]
    fn errors_status() {
        let r = parse_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n").expect("complete");
        assert_eq!(r.status, 401);
        assert!(!r.is_api_success());
    }

    #[test]
    fn until_close() {
        let mut p = ResponseParser::default();
        let buf = b"HTTP/1.1 200 OK\r\n\r\nhello";
        assert!(p.feed(buf).expect("ok").is_none());
        assert_eq!(p.finish_on_eof(buf).expect("body").body, b"hello");
    }

    #[tokio::test]
    async fn talks_to_a_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut have = Vec::new();
            for _ in 0..2 {
                loop {
                    if let Some(end) = crate::centrifugo::find(&have, b"\r\n\r\n", 0) {
                        let head = String::from_utf8_lossy(&have[..end]).to_string();
                        assert!(head.contains("X-API-Key: k"));
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .expect("length");
                        if have.len() >= end + 4 + len {
                            have.drain(..end + 4 + len);
                            break;
                        }
                    }
                    let n = s.read(&mut buf).await.expect("read");
                    have.extend_from_slice(&buf[..n]);
                }
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"result\":{}}").await.expect("write");
            }
        });
        let base = ApiBase::resolve(&format!("http://{addr}")).await.expect("base");
        let mut c = ApiClient::new(base, "k");
        for _ in 0..2 {
            let r = c.post_json("/api/publish", b"{\"channel\":\"x\",\"data\":{}}").await.expect("post");
            assert!(r.is_api_success());
        }
        assert_eq!(c.connects, 1, "keep-alive reused the connection");
    }
}
