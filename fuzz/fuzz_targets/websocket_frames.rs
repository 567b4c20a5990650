//! The server-side WebSocket (`herald_server::websocket`) fed a client's byte stream.
//!
//! Input: `mode`, then 7 bytes of limits and I/O pacing, then the body.
//!
//! - mode % 3 == 0, raw: the body is the client's stream as is. `recv` must never panic or
//!   hang; what it returns must respect the limits (text is UTF-8, control payloads are at most
//!   125 bytes, messages at most `max_message`); every message is echoed back and the server's
//!   frames are parsed again.
//! - mode % 3 == 1, well-formed: the body describes a sequence of valid client frames
//!   (fragmented messages with interleaved pings, big frames, a closing close frame), which are
//!   encoded, masked and fed in pieces; `recv` must return exactly those messages, then `Eof`.
//! - mode % 3 == 2, handshake: the body is a method line and header lines for
//!   `upgrade_response`; a 101 must only be given to a valid request and carry the right
//!   `Sec-WebSocket-Accept`.
//!
//! The frame parser (`parse_header`) is private; the public `WebSocket::new` + `recv` over an
//! in-memory stream reaches it. That stream is always ready, so each future is polled once with
//! a no-op waker (no runtime); a `Pending` there would be a hang and fails the run.

#![no_main]

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use herald_server::websocket::{HandshakeError, Limits, Opcode, Received, WebSocket, frame_buffer, upgrade_response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use libfuzzer_sys::fuzz_target;
use sha1::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.byte();
    let max_frame = usize::from(input.u16()) << (input.byte() % 3);
    let max_message = usize::from(input.u16()) << (input.byte() % 3);
    let read_chunk = usize::from(input.u16());
    let limits = Limits { max_frame, max_message, read_chunk };
    match mode % 3 {
        0 => raw(limits, &mut input),
        1 => well_formed(limits, &mut input),
        _ => handshake(input.rest()),
    }
});

/// Bytes taken off the front of the fuzzer's input; zeros once it is exhausted.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client's side of the connection, in memory: reads hand out `incoming` in pieces of the
/// fuzzer's sizes; writes take at most `write_max` bytes at a time into `outgoing`.
struct Peer {
    incoming: Vec<u8>,
    at: usize,
    read_sizes: Vec<usize>,
    reads: usize,
    outgoing: Rc<RefCell<Vec<u8>>>,
    write_max: usize,
}

impl Peer {
    fn new(incoming: Vec<u8>, pacing: &[u8], write_max: usize) -> (Peer, Rc<RefCell<Vec<u8>>>) {
        // A pacing byte of 0 means "whatever fits".
        let mut read_sizes: Vec<usize> =
            pacing.iter().map(|&b| if b == 0 { usize::MAX } else { usize::from(b) }).collect();
        if read_sizes.is_empty() {
            read_sizes.push(usize::MAX);
        }
        let outgoing = Rc::new(RefCell::new(Vec::new()));
        let peer =
            Peer { incoming, at: 0, read_sizes, reads: 0, outgoing: outgoing.clone(), write_max: write_max.max(1) };
        (peer, outgoing)
    }
}

impl AsyncRead for Peer {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let step = this.read_sizes[this.reads % this.read_sizes.len()];
        this.reads += 1;
        let left = &this.incoming[this.at..];
        let n = left.len().min(step).min(buf.remaining());
        buf.put_slice(&left[..n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.write_max);
        self.outgoing.borrow_mut().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Most bytes one write takes: 1 (every frame written in many pieces) to about 24 KiB.
fn write_size(byte: u8) -> usize {
    1 + usize::from(byte) * 97
}

/// Poll a future once. Over a [`Peer`] nothing ever waits, so `Pending` would be a hang.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a WebSocket future is pending on a stream that is always ready"),
    }
}

/// What a server frame should carry: opcode and payload.
type ServerFrame = (u8, Vec<u8>);

/// Answer a received message the way the connection task does: pong a ping, close a close,
/// and (to test the write path too) echo data messages. Returns the frame written.
fn answer(ws: &mut WebSocket<Peer>, received: &Received) -> Option<ServerFrame> {
    let message = ws.message().to_vec();
    match received {
        Received::Ping => {
            run(ws.send_control(Opcode::Pong, &message)).expect("in-memory write");
            Some((Opcode::Pong as u8, message))
        }
        Received::Close(code) => {
            let reason = "going away, fuzzed";
            run(ws.send_close(*code, reason)).expect("in-memory write");
            let mut body = Vec::new();
            if let Some(code) = code {
                body.extend_from_slice(&code.to_be_bytes());
                body.extend_from_slice(reason.as_bytes());
            }
            Some((Opcode::Close as u8, body))
        }
        Received::Text | Received::Binary => {
            let opcode = if *received == Received::Text { Opcode::Text } else { Opcode::Binary };
            let mut frame = frame_buffer(message.len());
            frame.extend_from_slice(&message);
            run(ws.send(opcode, &mut frame)).expect("in-memory write");
            Some((opcode as u8, message))
        }
        Received::Pong | Received::Eof => None,
    }
}

/// Parse what the server wrote: unmasked, final, shortest length encoding.
fn server_frames(mut bytes: &[u8]) -> Vec<ServerFrame> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "half a server frame header: {bytes:02x?}");
        assert_eq!(bytes[0] & 0xF0, 0x80, "server frame must be final with no reserved bits");
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match bytes[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().expect("8"))).expect("usize"), 10),
            len => (usize::from(len), 2),
        };
        let shortest = if len < 126 {
            2
        } else if len <= 0xFFFF {
            4
        } else {
            10
        };
        assert_eq!(at, shortest, "length of {len} not in its shortest encoding");
        assert!(bytes.len() >= at + len, "server frame cut short");
        frames.push((bytes[0] & 0x0F, bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    frames
}

fn check_message(received: &Received, message: &[u8], limits: &Limits) {
    match received {
        Received::Text => {
            assert!(std::str::from_utf8(message).is_ok(), "text message is not UTF-8");
        }
        Received::Ping | Received::Pong => assert!(message.len() <= 125, "control payload over 125 bytes"),
        Received::Close(code) => {
            assert!(message.len() <= 125, "close payload over 125 bytes");
            assert_eq!(code.is_some(), !message.is_empty());
            if let Some(code) = code {
                assert_eq!(&code.to_be_bytes()[..], &message[..2]);
                assert!(std::str::from_utf8(&message[2..]).is_ok(), "close reason is not UTF-8");
            }
        }
        Received::Binary | Received::Eof => {}
    }
    assert!(message.len() <= limits.max_message, "message over max_message");
}

fn raw(limits: Limits, input: &mut Input<'_>) {
    let pacing = input.take(4);
    let write_max = write_size(input.byte());
    let stream = input.rest();
    let (peer, outgoing) = Peer::new(stream.to_vec(), pacing, write_max);
    let mut ws = WebSocket::new(peer, limits);
    let mut sent = Vec::new();
    // Every frame takes at least 6 bytes (header and mask), so this many calls must end it.
    for _ in 0..stream.len() / 6 + 2 {
        match run(ws.recv()) {
            Ok(Received::Eof) => {
                assert!(ws.message().is_empty());
                break;
            }
            Ok(received) => {
                check_message(&received, ws.message(), &limits);
                sent.extend(answer(&mut ws, &received));
                if matches!(received, Received::Close(_)) {
                    break;
                }
            }
            Err(error) => {
                assert!(matches!(error.close_code(), 1002 | 1006 | 1007 | 1009));
                let _ = error.to_string();
                break;
            }
        }
    }
    drop(ws);
    assert_eq!(server_frames(&outgoing.borrow()), sent);
}

/// A client frame, before masking.
struct ClientFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

fn encode_client_frame(frame: &ClientFrame, mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(if frame.fin { 0x80 } else { 0 } | frame.opcode);
    let len = frame.payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(frame.payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// The longest prefix of `bytes` that is valid UTF-8.
fn utf8_prefix(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes,
        Err(error) => &bytes[..error.valid_up_to()],
    }
}

/// A control frame's payload of at most `max` bytes.
fn control_payload(input: &mut Input<'_>, max: usize) -> Vec<u8> {
    let len = usize::from(input.byte()) % 126;
    input.take(len.min(max)).to_vec()
}

fn well_formed(limits: Limits, input: &mut Input<'_>) {
    let pacing = input.take(4).to_vec();
    let write_max = write_size(input.byte());
    // Largest frame payload; a message may be fragmented into frames up to this size.
    let frame_limit = limits.max_frame.min(limits.max_message);
    let control_limit = frame_limit.min(125);
    let mut frames: Vec<ClientFrame> = Vec::new();
    let mut expected: Vec<(Received, Vec<u8>)> = Vec::new();
    let mut closed = false;
    while !input.is_empty() && frames.len() < 256 && !closed {
        match input.byte() % 6 {
            kind @ (0 | 1) => {
                // A data message: literal bytes, or a long run of one byte (to reach the 16-
                // and 64-bit length encodings), cut at max_message and into fragments.
                let text = kind == 0;
                let mut payload = if input.byte() & 1 == 0 {
                    let len = usize::from(input.byte());
                    input.take(len).to_vec()
                } else {
                    let len = usize::from(input.u16()) << (input.byte() % 3);
                    vec![input.byte() & 0x7F; len]
                };
                payload.truncate(limits.max_message.min(frame_limit.saturating_mul(16)));
                if text {
                    let valid = utf8_prefix(&payload).len();
                    payload.truncate(valid);
                }
                let mut pieces: Vec<&[u8]> = Vec::new();
                let mut rest = &payload[..];
                let cuts = input.byte() % 4;
                for _ in 0..cuts {
                    let cut = usize::from(input.u16()).min(rest.len()).min(frame_limit);
                    let (piece, tail) = rest.split_at(cut);
                    pieces.push(piece);
                    rest = tail;
                }
                while rest.len() > frame_limit {
                    let (piece, tail) = rest.split_at(frame_limit);
                    pieces.push(piece);
                    rest = tail;
                }
                pieces.push(rest);
                let last = pieces.len() - 1;
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i > 0 {
                        0
                    } else if text {
                        1
                    } else {
                        2
                    };
                    frames.push(ClientFrame { fin: i == last, opcode, payload: piece.to_vec() });
                    // A ping between fragments is answered before the message is complete.
                    if i < last && input.byte() & 1 == 1 {
                        let ping = control_payload(input, control_limit);
                        expected.push((Received::Ping, ping.clone()));
                        frames.push(ClientFrame { fin: true, opcode: 9, payload: ping });
                    }
                }
                expected.push((if text { Received::Text } else { Received::Binary }, payload));
            }
            kind @ (2 | 3) => {
                let payload = control_payload(input, control_limit);
                let (received, opcode) = if kind == 2 { (Received::Ping, 9) } else { (Received::Pong, 10) };
                expected.push((received, payload.clone()));
                frames.push(ClientFrame { fin: true, opcode, payload });
            }
            4 => {
                let mut payload = Vec::new();
                let mut code = None;
                if control_limit >= 2 && input.byte() & 1 == 1 {
                    const CODES: [u16; 12] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014];
                    let pick = input.u16();
                    let value =
                        if pick & 0x8000 == 0 { CODES[usize::from(pick) % CODES.len()] } else { 3000 + pick % 2000 };
                    code = Some(value);
                    payload.extend_from_slice(&value.to_be_bytes());
                    let reason = control_payload(input, control_limit - 2);
                    payload.extend_from_slice(utf8_prefix(&reason));
                }
                expected.push((Received::Close(code), payload.clone()));
                frames.push(ClientFrame { fin: true, opcode: 8, payload });
                closed = true;
            }
            _ => {
                // An empty pong: the smallest frame there is.
                expected.push((Received::Pong, Vec::new()));
                frames.push(ClientFrame { fin: true, opcode: 10, payload: Vec::new() });
            }
        }
    }
    let mut stream = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let mask = [pacing.first().copied().unwrap_or(0x37), i as u8, 0xA5, write_max as u8];
        encode_client_frame(frame, mask, &mut stream);
    }

    let (peer, outgoing) = Peer::new(stream, &pacing, write_max);
    let mut ws = WebSocket::new(peer, limits);
    let mut sent = Vec::new();
    for (kind, payload) in &expected {
        let received = run(ws.recv()).unwrap_or_else(|error| panic!("valid input refused: {error}"));
        assert_eq!(&received, kind);
        assert!(ws.message() == &payload[..], "{kind:?}: payload differs");
        sent.extend(answer(&mut ws, &received));
    }
    if !closed {
        assert_eq!(run(ws.recv()).expect("clean end"), Received::Eof);
    }
    drop(ws);
    assert_eq!(server_frames(&outgoing.borrow()), sent);
}

fn handshake(body: &[u8]) {
    // The first line is the method; each further line a header, `name:value`, or a byte below 5
    // naming one of the headers the handshake reads, then the value.
    const KNOWN: [HeaderName; 5] = [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_PROTOCOL,
    ];
    let mut lines = body.split(|&b| b == b'\n');
    let Ok(method) = Method::from_bytes(lines.next().unwrap_or_default()) else { return };
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = match line.first() {
            Some(&b) if usize::from(b) < KNOWN.len() => (KNOWN[usize::from(b)].clone(), &line[1..]),
            _ => {
                let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
                let Ok(name) = HeaderName::from_bytes(&line[..colon]) else { continue };
                (name, line[colon + 1..].trim_ascii())
            }
        };
        let Ok(value) = HeaderValue::from_bytes(value) else { continue };
        headers.append(name, value);
    }
    match upgrade_response(&method, &headers) {
        Ok(response) => {
            assert_eq!(method, Method::GET);
            assert_eq!(headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()), Some(&b"13"[..]));
            let key = headers.get(header::SEC_WEBSOCKET_KEY).expect("accepted without a key");
            let mut sha1 = sha1::Sha1::new();
            sha1.update(key.as_bytes());
            sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
            assert_eq!(response[header::SEC_WEBSOCKET_ACCEPT], accept.as_str());
            assert!(response[header::UPGRADE].as_bytes().eq_ignore_ascii_case(b"websocket"));
            assert!(response[header::CONNECTION].as_bytes().eq_ignore_ascii_case(b"upgrade"));
        }
        Err(error) => {
            assert!(error.status().is_client_error());
            assert_eq!(matches!(error, HandshakeError::Method), method != Method::GET);
            let _ = error.to_string();
        }
    }
}
