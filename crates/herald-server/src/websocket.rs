//! Server-side WebSocket framing (RFC 6455) that holds no buffer while a connection is idle.
//!
//! Most of a realtime server's connections are idle most of the time, so what an idle one
//! costs decides how many fit. A general-purpose WebSocket library keeps a read buffer and a
//! write buffer per connection for its whole life. Here:
//!
//! - reads go into one buffer per worker thread (`client.read_buffer_bytes`); only the bytes of
//!   an incomplete frame are copied into the connection, and that copy is freed once the frame
//!   is complete;
//! - writes go straight from the caller's frame buffer to the socket: the caller builds its
//!   payload after [`HEADER_ROOM`] spare bytes and the header is written into them, so a frame
//!   leaves in one write without copying.
//!
//! The handshake is [`upgrade_response`]; the connection is [`WebSocket`]. Client frames must
//! be masked, no extension is negotiated (reserved bits must be zero), control frames are
//! answered by the caller ([`Received::Ping`], [`Received::Close`]), text messages must be UTF-8,
//! and frame and message sizes are bounded by [`Limits`].

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Poll, ready};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Spare bytes callers leave at the front of an outgoing frame buffer (the largest server
/// frame header: 2 bytes plus a 64-bit length).
pub const HEADER_ROOM: usize = 10;

/// A new outgoing frame buffer: [`HEADER_ROOM`] spare bytes, payload to be appended.
pub fn frame_buffer(payload_capacity: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_ROOM + payload_capacity);
    frame.resize(HEADER_ROOM, 0);
    frame
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0,
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

impl Opcode {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::Continuation,
            1 => Self::Text,
            2 => Self::Binary,
            8 => Self::Close,
            9 => Self::Ping,
            10 => Self::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) >= 8
    }
}

/// Why a connection's input cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("WebSocket read failed: {0}")]
    Io(#[from] io::Error),
    #[error("WebSocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("WebSocket frame or message too long")]
    TooLong,
    #[error("WebSocket text message is not valid UTF-8")]
    InvalidUtf8,
}

impl WsError {
    /// The close code RFC 6455 gives this failure.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Io(_) => 1006,
            WsError::Protocol(_) => 1002,
            WsError::TooLong => 1009,
            WsError::InvalidUtf8 => 1007,
        }
    }
}

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single frame payload.
    pub max_frame: usize,
    /// Largest message, all fragments together.
    pub max_message: usize,
    /// Bytes read from a socket at once (the per-worker buffer's size).
    pub read_chunk: usize,
}

/// What [`WebSocket::recv`] found. Message bytes are at [`WebSocket::message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Text,
    Binary,
    /// The caller answers with a pong carrying [`WebSocket::message`].
    Ping,
    Pong,
    /// The peer is closing (with its code, if it gave one); the caller answers with a close.
    Close(Option<u16>),
    /// The peer closed the TCP connection.
    Eof,
}

thread_local! {
    /// The read buffer every connection polled on this thread shares.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A server-side WebSocket over an upgraded connection.
pub struct WebSocket<S> {
    io: S,
    limits: Limits,
    /// Received bytes not yet consumed; empty and unallocated between messages.
    input: Vec<u8>,
    /// Bytes at the front of `input` that belong to the message last returned; dropped by the
    /// next `recv`.
    consumed: usize,
    /// Where the message last returned lies: in `input`, or in `fragments`.
    message: Option<MessageAt>,
    /// A fragmented data message being assembled: its opcode and bytes so far.
    fragments: Option<(Opcode, Vec<u8>)>,
    /// The rest of a frame whose write was cancelled part-way; written before anything else so
    /// the stream stays well-formed. Empty and unallocated otherwise.
    unsent: Vec<u8>,
}

#[derive(Debug, Clone)]
enum MessageAt {
    Input(Range<usize>),
    Fragments,
}

/// A parsed frame header; `header_len` includes the masking key.
struct FrameHeader {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub fn new(io: S, limits: Limits) -> Self {
        Self { io, limits, input: Vec::new(), consumed: 0, message: None, fragments: None, unsent: Vec::new() }
    }

    /// The payload of the message (or control frame) the last `recv` returned.
    pub fn message(&self) -> &[u8] {
        match &self.message {
            Some(MessageAt::Input(range)) => &self.input[range.clone()],
            Some(MessageAt::Fragments) => self.fragments.as_ref().map(|(_, bytes)| &bytes[..]).unwrap_or(&[]),
            None => &[],
        }
    }

    /// The next message or control frame. Cancel-safe: bytes read are kept for the next call.
    pub async fn recv(&mut self) -> Result<Received, WsError> {
        self.release_message();
        loop {
            if let Some(received) = self.parse_next()? {
                return Ok(received);
            }
            if self.consumed > 0 {
                // Only an incomplete frame is left: move it to the front before reading on
                // (once per read, not once per frame of a pipelined burst).
                self.input.drain(..self.consumed);
                self.consumed = 0;
            }
            let read = poll_fn(|cx| self.poll_fill(cx)).await?;
            if read == 0 {
                return if self.input.is_empty() && self.fragments.is_none() {
                    Ok(Received::Eof)
                } else {
                    Err(WsError::Io(io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
    }

    /// Forget the message handed out last; free the input buffer once all of it is consumed.
    fn release_message(&mut self) {
        if matches!(self.message.take(), Some(MessageAt::Fragments)) {
            self.fragments = None;
        }
        if self.consumed > 0 && self.consumed == self.input.len() {
            // Idle again: give the memory back.
            self.input = Vec::new();
            self.consumed = 0;
        }
    }

    /// Read what the socket has into the thread's buffer and append it to `input`.
    fn poll_fill(&mut self, cx: &mut std::task::Context<'_>) -> Poll<io::Result<usize>> {
        let chunk = self.limits.read_chunk.max(512);
        READ_BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            if buffer.len() < chunk {
                buffer.resize(chunk, 0);
            }
            let mut read_buf = ReadBuf::new(&mut buffer[..chunk]);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut read_buf))?;
            let filled = read_buf.filled();
            self.input.extend_from_slice(filled);
            Poll::Ready(Ok(filled.len()))
        })
    }

    /// Take one complete frame off `input`, if there is one; `Some` when it completes a message
    /// or is a control frame.
    fn parse_next(&mut self) -> Result<Option<Received>, WsError> {
        loop {
            let available = &self.input[self.consumed..];
            let Some(header) = parse_header(available, &self.limits)? else {
                return Ok(None);
            };
            let frame_len = header.header_len + header.payload_len;
            if available.len() < frame_len {
                // Reserve the whole frame once rather than growing read by read.
                self.input.reserve(frame_len - available.len());
                return Ok(None);
            }
            let start = self.consumed + header.header_len;
            let payload = start..start + header.payload_len;
            unmask(&mut self.input[payload.clone()], header.mask);
            self.consumed += frame_len;
            match header.opcode {
                Opcode::Ping => return Ok(Some(self.hand_out(payload, Received::Ping))),
                Opcode::Pong => return Ok(Some(self.hand_out(payload, Received::Pong))),
                Opcode::Close => return self.close_frame(payload).map(Some),
                Opcode::Text | Opcode::Binary => {
                    if self.fragments.is_some() {
                        return Err(WsError::Protocol("new message before the fragmented one ended"));
                    }
                    if header.fin {
                        let kind = data_kind(header.opcode);
                        if kind == Received::Text && std::str::from_utf8(&self.input[payload.clone()]).is_err() {
                            return Err(WsError::InvalidUtf8);
                        }
                        return Ok(Some(self.hand_out(payload, kind)));
                    }
                    self.fragments = Some((header.opcode, self.input[payload].to_vec()));
                }
                Opcode::Continuation => {
                    let Some((opcode, bytes)) = self.fragments.as_mut() else {
                        return Err(WsError::Protocol("continuation frame without a message"));
                    };
                    if bytes.len() + payload.len() > self.limits.max_message {
                        return Err(WsError::TooLong);
                    }
                    bytes.extend_from_slice(&self.input[payload]);
                    if header.fin {
                        let kind = data_kind(*opcode);
                        if kind == Received::Text && std::str::from_utf8(bytes).is_err() {
                            return Err(WsError::InvalidUtf8);
                        }
                        self.message = Some(MessageAt::Fragments);
                        return Ok(Some(kind));
                    }
                }
            }
        }
    }

    fn hand_out(&mut self, payload: Range<usize>, received: Received) -> Received {
        self.message = Some(MessageAt::Input(payload));
        received
    }

    fn close_frame(&mut self, payload: Range<usize>) -> Result<Received, WsError> {
        let body = &self.input[payload.clone()];
        let code = match body.len() {
            0 => None,
            1 => return Err(WsError::Protocol("close frame with a one-byte body")),
            _ => {
                let code = u16::from_be_bytes([body[0], body[1]]);
                if !valid_close_code(code) {
                    return Err(WsError::Protocol("invalid close code"));
                }
                if std::str::from_utf8(&body[2..]).is_err() {
                    return Err(WsError::InvalidUtf8);
                }
                Some(code)
            }
        };
        self.message = Some(MessageAt::Input(payload));
        Ok(Received::Close(code))
    }

    /// Write one frame: `frame` holds [`HEADER_ROOM`] spare bytes, then the payload. The
    /// header goes into the spare bytes, so the frame leaves in one write.
    pub async fn send(&mut self, opcode: Opcode, frame: &mut [u8]) -> io::Result<()> {
        assert!(frame.len() >= HEADER_ROOM, "frame buffer lacks header room");
        let payload_len = frame.len() - HEADER_ROOM;
        let mut header = [0u8; HEADER_ROOM];
        let header_len = encode_header(opcode, payload_len, &mut header);
        let start = HEADER_ROOM - header_len;
        frame[start..HEADER_ROOM].copy_from_slice(&header[..header_len]);
        self.write_unsent().await?;
        let mut write = PartialWrite { ws: self, bytes: &frame[start..], written: 0 };
        while write.written < write.bytes.len() {
            let n = poll_fn(|cx| Pin::new(&mut write.ws.io).poll_write(cx, &write.bytes[write.written..])).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            write.written += n;
        }
        drop(write);
        self.io.flush().await
    }

    /// Finish a frame a cancelled `send` left half-written.
    async fn write_unsent(&mut self) -> io::Result<()> {
        while !self.unsent.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut self.io).poll_write(cx, &self.unsent)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.unsent.drain(..n);
        }
        self.unsent = Vec::new();
        Ok(())
    }

    /// Write a control frame (ping, pong or close) with a payload of at most 125 bytes.
    pub async fn send_control(&mut self, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        let payload = &payload[..payload.len().min(125)];
        let mut frame = [0u8; HEADER_ROOM + 125];
        frame[HEADER_ROOM..HEADER_ROOM + payload.len()].copy_from_slice(payload);
        self.send(opcode, &mut frame[..HEADER_ROOM + payload.len()]).await
    }

    /// Write a close frame with `code` and as much of `reason` as fits (whole characters).
    pub async fn send_close(&mut self, code: Option<u16>, reason: &str) -> io::Result<()> {
        let mut payload = Vec::with_capacity(125);
        if let Some(code) = code {
            payload.extend_from_slice(&code.to_be_bytes());
            let mut end = reason.len().min(123);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            payload.extend_from_slice(&reason.as_bytes()[..end]);
        }
        self.send_control(Opcode::Close, &payload).await
    }
}

/// A frame being written; if the write is cancelled after part of the frame went out, the
/// rest is kept in `unsent` (a peer must never see half a frame followed by another).
struct PartialWrite<'a, S> {
    ws: &'a mut WebSocket<S>,
    bytes: &'a [u8],
    written: usize,
}

impl<S> Drop for PartialWrite<'_, S> {
    fn drop(&mut self) {
        if self.written > 0 && self.written < self.bytes.len() {
            self.ws.unsent.extend_from_slice(&self.bytes[self.written..]);
        }
    }
}

fn data_kind(opcode: Opcode) -> Received {
    if opcode == Opcode::Text { Received::Text } else { Received::Binary }
}

/// Codes a peer may send in a close frame (RFC 6455 section 7.4).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Parse a client frame header; `None` until enough bytes arrived.
fn parse_header(bytes: &[u8], limits: &Limits) -> Result<Option<FrameHeader>, WsError> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (bytes[0], bytes[1]);
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(WsError::Protocol("unknown opcode"))?;
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("client frame not masked"));
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if bytes.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4)
        }
        127 => {
            if bytes.len() < 10 {
                return Ok(None);
            }
            let len = u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(WsError::Protocol("frame length has its top bit set"));
            }
            (len, 10)
        }
        len => (u64::from(len), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(WsError::Protocol("fragmented or oversized control frame"));
    }
    let limit = limits.max_frame.min(limits.max_message) as u64;
    if len > limit {
        return Err(WsError::TooLong);
    }
    if bytes.len() < at + 4 {
        return Ok(None);
    }
    let mask = bytes[at..at + 4].try_into().expect("4 bytes");
    at += 4;
    Ok(Some(FrameHeader { fin, opcode, mask, header_len: at, payload_len: len as usize }))
}

/// Encode an unmasked server frame header into `out`; returns its length.
fn encode_header(opcode: Opcode, payload_len: usize, out: &mut [u8; HEADER_ROOM]) -> usize {
    out[0] = 0x80 | opcode as u8;
    if payload_len < 126 {
        out[1] = payload_len as u8;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in chunks.by_ref() {
        let value = u32::from_ne_bytes(chunk.try_into().expect("4 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// Why an upgrade request was refused.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("WebSocket upgrade needs GET")]
    Method,
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    #[error("unsupported Sec-WebSocket-Version (13 is supported)")]
    Version,
    #[error("missing Sec-WebSocket-Key")]
    Key,
}

impl HandshakeError {
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::Method => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::Version => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::NotUpgrade | HandshakeError::Key => StatusCode::BAD_REQUEST,
        }
    }
}

/// Check an HTTP/1.1 upgrade request and build the 101 response's headers (without the
/// subprotocol, which the caller picks).
pub fn upgrade_response(method: &Method, headers: &HeaderMap) -> Result<HeaderMap, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::Method);
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .any(|value| value.to_str().is_ok_and(|v| v.split(',').any(|part| part.trim().eq_ignore_ascii_case(token))))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(HandshakeError::Version);
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(HandshakeError::Key)?;
    let accept = accept_key(key.as_bytes());
    let mut response = HeaderMap::new();
    response.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    response.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    Ok(response)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = sha1::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, duplex};

    const LIMITS: Limits = Limits { max_frame: 1024, max_message: 4096, read_chunk: 512 };

    /// A masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn server_with(bytes: Vec<u8>) -> WebSocket<tokio::io::DuplexStream> {
        let (mut client, server) = duplex(64 * 1024);
        client.write_all(&bytes).await.unwrap();
        drop(client);
        WebSocket::new(server, LIMITS)
    }

    #[tokio::test]
    async fn reads_masked_frames_of_every_length_encoding() {
        let long = vec![b'x'; 300];
        let mut bytes = client_frame(true, 1, b"{\"id\":1}");
        bytes.extend(client_frame(true, 2, &long));
        let mut ws = server_with(bytes).await;
        assert_eq!(ws.recv().await.unwrap(), Received::Text);
        assert_eq!(ws.message(), b"{\"id\":1}");
        assert_eq!(ws.recv().await.unwrap(), Received::Binary);
        assert_eq!(ws.message(), &long[..]);
        assert_eq!(ws.recv().await.unwrap(), Received::Eof);
        assert!(ws.input.capacity() == 0, "an idle connection holds no input buffer");
    }

    #[tokio::test]
    async fn a_pipelined_burst_comes_out_frame_by_frame() {
        let mut bytes = Vec::new();
        for i in 0..200 {
            bytes.extend(client_frame(true, 1, format!("{{\"id\":{i}}}").as_bytes()));
        }
        let mut ws = server_with(bytes).await;
        for i in 0..200 {
            assert_eq!(ws.recv().await.unwrap(), Received::Text);
            assert_eq!(ws.message(), format!("{{\"id\":{i}}}").as_bytes());
        }
        assert_eq!(ws.recv().await.unwrap(), Received::Eof);
        assert_eq!(ws.input.capacity(), 0);
    }

    #[tokio::test]
    async fn assembles_fragments_around_control_frames() {
        let mut bytes = client_frame(false, 1, b"hel");
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 0, b"lo"));
        let mut ws = server_with(bytes).await;
        assert_eq!(ws.recv().await.unwrap(), Received::Ping);
        assert_eq!(ws.message(), b"p");
        assert_eq!(ws.recv().await.unwrap(), Received::Text);
        assert_eq!(ws.message(), b"hello");
    }

    #[tokio::test]
    async fn frames_split_across_reads_are_joined() {
        let frame = client_frame(true, 1, &[b'a'; 200]);
        let (mut client, server) = duplex(64 * 1024);
        let mut ws = WebSocket::new(server, LIMITS);
        let writer = tokio::spawn(async move {
            for piece in frame.chunks(7) {
                client.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        assert_eq!(ws.recv().await.unwrap(), Received::Text);
        assert_eq!(ws.message(), &[b'a'; 200][..]);
        drop(writer.await.unwrap());
    }

    #[tokio::test]
    async fn rejects_protocol_violations() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (
                {
                    let mut f = client_frame(true, 1, b"x");
                    f[1] &= 0x7F;
                    f.drain(2..6);
                    f
                },
                1002,
            ), // unmasked
            (
                {
                    let mut f = client_frame(true, 1, b"x");
                    f[0] |= 0x40;
                    f
                },
                1002,
            ), // RSV1
            (client_frame(true, 3, b"x"), 1002),                   // reserved opcode
            (client_frame(false, 9, b"x"), 1002),                  // fragmented ping
            (client_frame(true, 0, b"x"), 1002),                   // continuation without a message
            (client_frame(true, 1, &[0xff, 0xfe]), 1007),          // invalid UTF-8
            (client_frame(true, 2, &[0u8; 2000]), 1009),           // over max_frame
            (client_frame(true, 8, &[0x03]), 1002),                // one-byte close body
            (client_frame(true, 8, &1005u16.to_be_bytes()), 1002), // reserved close code
        ];
        for (bytes, code) in cases {
            let mut ws = server_with(bytes.clone()).await;
            let error = ws.recv().await.expect_err("must be refused");
            assert_eq!(error.close_code(), code, "{bytes:02x?}: {error}");
        }
    }

    #[tokio::test]
    async fn message_limit_covers_all_fragments() {
        let mut bytes = client_frame(false, 2, &[0u8; 1000]);
        for _ in 0..4 {
            bytes.extend(client_frame(false, 0, &[0u8; 1000]));
        }
        bytes.extend(client_frame(true, 0, &[0u8; 1000]));
        let mut ws = server_with(bytes).await;
        assert!(matches!(ws.recv().await, Err(WsError::TooLong)));
    }

    #[tokio::test]
    async fn close_frame_reports_its_code() {
        let mut body = 1000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye");
        let mut ws = server_with(client_frame(true, 8, &body)).await;
        assert_eq!(ws.recv().await.unwrap(), Received::Close(Some(1000)));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error_not_eof() {
        let mut frame = client_frame(true, 1, b"hello");
        frame.truncate(frame.len() - 2);
        let mut ws = server_with(frame).await;
        assert!(matches!(ws.recv().await, Err(WsError::Io(_))));
    }

    #[tokio::test]
    async fn writes_unmasked_frames_with_the_shortest_length() {
        for (len, header_len) in [(5usize, 2usize), (200, 4), (70_000, 10)] {
            let (mut client, server) = duplex(256 * 1024);
            let mut ws = WebSocket::new(server, LIMITS);
            let mut frame = frame_buffer(len);
            frame.extend(std::iter::repeat_n(b'z', len));
            ws.send(Opcode::Binary, &mut frame).await.unwrap();
            drop(ws);
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            assert_eq!(out.len(), header_len + len);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0, "server frames are not masked");
            assert!(out[header_len..].iter().all(|&b| b == b'z'));
        }
    }

    #[tokio::test]
    async fn a_cancelled_write_is_finished_before_the_next_frame() {
        let (mut client, server) = duplex(1000);
        let mut ws = WebSocket::new(server, LIMITS);
        let mut big = frame_buffer(5000);
        big.extend(std::iter::repeat_n(b'a', 5000));
        // The peer reads nothing yet: the write stalls after the pipe's 1000 bytes and is cancelled.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), ws.send(Opcode::Binary, &mut big)).await;
        assert!(cancelled.is_err(), "the write should have stalled");
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            out
        });
        ws.send_close(Some(1000), "").await.unwrap();
        drop(ws);
        let out = reader.await.unwrap();
        // The whole first frame (4-byte header + 5000), then the close frame.
        assert_eq!(out.len(), 4 + 5000 + 4);
        assert_eq!(&out[..2], &[0x82, 126]);
        assert!(out[4..5004].iter().all(|&b| b == b'a'));
        assert_eq!(&out[5004..], &[0x88, 2, 0x03, 0xe8]);
    }

    #[tokio::test]
    async fn close_reason_is_cut_at_a_character_boundary() {
        let (mut client, server) = duplex(1024);
        let mut ws = WebSocket::new(server, LIMITS);
        ws.send_close(Some(3001), &"é".repeat(100)).await.unwrap();
        drop(ws);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(out[0], 0x88);
        let body = &out[2..];
        assert!(body.len() <= 125);
        assert_eq!(u16::from_be_bytes([body[0], body[1]]), 3001);
        assert!(std::str::from_utf8(&body[2..]).is_ok());
    }

    #[test]
    fn handshake_checks_the_request_and_derives_the_accept_key() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="));
        let response = upgrade_response(&Method::GET, &headers).unwrap();
        // The example from RFC 6455 section 1.3.
        assert_eq!(response[header::SEC_WEBSOCKET_ACCEPT], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(matches!(upgrade_response(&Method::POST, &headers), Err(HandshakeError::Method)));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(upgrade_response(&Method::GET, &headers).unwrap_err().status(), StatusCode::UPGRADE_REQUIRED);
        headers.remove(header::UPGRADE);
        assert!(matches!(upgrade_response(&Method::GET, &headers), Err(HandshakeError::NotUpgrade)));
    }
}
