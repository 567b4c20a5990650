//! Fossil delta encoding (the `"fossil"` delta type of the client protocol).
//!
//! An independent Rust implementation of the algorithm described in Fossil's
//! `delta_encoder_algorithm` document and implemented in Fossil's `delta.c`
//! (also ported as `fossil-delta` for JS/Go, whose `applyDelta` the SDKs use).
//!
//! Delta format: `<target length>\n` followed by commands, all integers in
//! Fossil's base-64 digit alphabet:
//!
//! * `<count>@<offset>,` copy `count` bytes from the source at `offset`;
//! * `<count>:<bytes>` insert the next `count` literal bytes;
//! * `<checksum>;` end, with a 32-bit checksum of the target.
//!
//! [`delta`] produces exactly the reference encoder's output (same hash,
//! landmark table, 250-candidate limit and cost rule). [`delta_utf8`] is a
//! variant for JSON connections; see its docs.

use thiserror::Error;

/// Width of the rolling-hash window; must be a power of two.
const NHASH: usize = 16;

/// Fossil's base-64 digits.
const DIGITS: &[u8; 64] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";

/// Why a delta could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FossilError {
    #[error("fossil delta ended unexpectedly")]
    UnexpectedEnd,
    #[error("integer in fossil delta overflows")]
    IntegerOverflow,
    #[error("size integer not terminated by '\\n'")]
    SizeNotTerminated,
    #[error("copy command not terminated by ','")]
    CopyNotTerminated,
    #[error("copy exceeds output file size")]
    CopyExceedsOutput,
    #[error("copy extends past end of input")]
    CopyPastSource,
    #[error("insert command gives an output larger than predicted")]
    InsertExceedsOutput,
    #[error("insert count exceeds size of delta")]
    InsertPastDelta,
    #[error("bad checksum")]
    BadChecksum,
    #[error("generated size does not match predicted size")]
    SizeMismatch,
    #[error("unknown delta operator {0:#04x}")]
    UnknownOperator(u8),
    #[error("unterminated delta")]
    Unterminated,
}

/// Creates a delta that turns `source` into `target`, byte-identical to the
/// reference Fossil encoder.
pub fn delta(source: &[u8], target: &[u8]) -> Vec<u8> {
    create(source, target, false)
}

/// Like [`delta`], but every literal (insert) segment starts and ends on a
/// UTF-8 character boundary of `target`.
///
/// On JSON connections the SDKs receive the delta as a JSON *string* and
/// re-encode it with `TextEncoder` (JS) / `str.encode("utf-8")` (Python)
/// before applying it. That only round-trips if the delta is valid UTF-8. The
/// delta's framing is ASCII and copies refer to the source by offset, so the
/// delta is valid UTF-8 exactly when each literal is — which this variant
/// guarantees for a UTF-8 `target` by trimming copy ranges to character
/// boundaries (at most 3 bytes per side; the copy-cost rule is re-checked on
/// the trimmed range). For ASCII targets the output equals [`delta`]'s.
pub fn delta_utf8(source: &[u8], target: &[u8]) -> Vec<u8> {
    create(source, target, true)
}

/// Rolling hash over a [`NHASH`]-byte window (Adler-like, 16-bit halves).
struct RollingHash {
    a: u16,
    b: u16,
    i: usize,
    z: [u8; NHASH],
}

impl RollingHash {
    /// Initializes the hash with `window`, which must be `NHASH` bytes.
    fn new(window: &[u8]) -> Self {
        let mut h = RollingHash { a: 0, b: 0, i: 0, z: [0; NHASH] };
        for (i, &x) in window.iter().take(NHASH).enumerate() {
            h.a = h.a.wrapping_add(u16::from(x));
            // NHASH - i <= 16, so the cast is lossless.
            h.b = h.b.wrapping_add(((NHASH - i) as u16).wrapping_mul(u16::from(x)));
            h.z[i] = x;
        }
        h
    }

    /// Slides the window forward by one byte.
    fn next(&mut self, c: u8) {
        let old = u16::from(self.z[self.i]);
        self.z[self.i] = c;
        self.i = (self.i + 1) & (NHASH - 1);
        self.a = self.a.wrapping_sub(old).wrapping_add(u16::from(c));
        self.b = self.b.wrapping_sub((NHASH as u16).wrapping_mul(old)).wrapping_add(self.a);
    }

    fn value(&self) -> u32 {
        u32::from(self.a) | (u32::from(self.b) << 16)
    }
}

/// Appends `v` in Fossil base-64 (most significant digit first).
fn put_int(out: &mut Vec<u8>, mut v: usize) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    let mut buf = [0u8; 16];
    let mut n = 0;
    while v > 0 {
        buf[n] = DIGITS[v & 0x3f];
        v >>= 6;
        n += 1;
    }
    out.extend(buf[..n].iter().rev());
}

/// Number of base-64 digits needed for `v`.
fn digit_count(v: usize) -> usize {
    let mut i = 1;
    let mut x: u128 = 64;
    while (v as u128) >= x {
        i += 1;
        x <<= 6;
    }
    i
}

/// Fossil's 32-bit checksum of `data`.
pub(crate) fn checksum(data: &[u8]) -> u32 {
    let (mut s0, mut s1, mut s2, mut s3) = (0u32, 0u32, 0u32, 0u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        s0 = s0.wrapping_add(u32::from(c[0]));
        s1 = s1.wrapping_add(u32::from(c[1]));
        s2 = s2.wrapping_add(u32::from(c[2]));
        s3 = s3.wrapping_add(u32::from(c[3]));
    }
    s3 = s3.wrapping_add(s2 << 8).wrapping_add(s1 << 16).wrapping_add(s0 << 24);
    let tail = chunks.remainder();
    // Same as the reference's fall-through switch on the 0..=3 tail bytes.
    if tail.len() == 3 {
        s3 = s3.wrapping_add(u32::from(tail[2]) << 8);
    }
    if tail.len() >= 2 {
        s3 = s3.wrapping_add(u32::from(tail[1]) << 16);
    }
    if let Some(&first) = tail.first() {
        s3 = s3.wrapping_add(u32::from(first) << 24);
    }
    s3
}

/// Whether `pos` is a UTF-8 character boundary in `s` (end included).
#[inline]
fn is_boundary(s: &[u8], pos: usize) -> bool {
    s.get(pos).is_none_or(|&b| (b & 0xC0) != 0x80)
}

fn put_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    put_int(out, bytes.len());
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn create(src: &[u8], target: &[u8], utf8: bool) -> Vec<u8> {
    let len_out = target.len();
    let len_src = src.len();
    let mut out = Vec::with_capacity(64 + len_out / 4);
    put_int(&mut out, len_out);
    out.push(b'\n');

    // With a source this small no copy can ever pay off.
    if len_src <= NHASH {
        put_literal(&mut out, target);
        put_int(&mut out, checksum(target) as usize);
        out.push(b';');
        return out;
    }

    // Hash table of the source's NHASH-byte blocks at multiples of NHASH.
    // `landmark[h]` is the last block with hash h, `collide[b]` the previous
    // block with the same hash as block b (usize::MAX terminates a chain).
    const NONE: usize = usize::MAX;
    let n_hash = len_src / NHASH;
    let mut collide = vec![NONE; n_hash];
    let mut landmark = vec![NONE; n_hash];
    let mut i = 0;
    while i < len_src - NHASH {
        let hv = RollingHash::new(&src[i..i + NHASH]).value() as usize % n_hash;
        collide[i / NHASH] = landmark[hv];
        landmark[hv] = i / NHASH;
        i += NHASH;
    }

    // Everything before target[base] has been emitted.
    let mut base = 0;
    while base + NHASH < len_out {
        let mut h = RollingHash::new(&target[base..base + NHASH]);
        // Trying to match a landmark against target[base + i].
        let mut i = 0;
        let (mut best_cnt, mut best_ofst, mut best_litsz) = (0, 0, 0);
        loop {
            let mut limit = 250;
            let mut block = landmark[h.value() as usize % n_hash];
            while block != NONE && limit > 0 {
                limit -= 1;
                let i_src = block * NHASH;
                // Forward match from src[i_src] / target[base + i].
                let fwd = src[i_src..].iter().zip(&target[base + i..]).take_while(|(a, b)| a == b).count();
                // Backward match, never reaching src[0] (reference quirk:
                // k < iSrc) nor before target[base].
                let max_back = i_src.saturating_sub(1).min(i);
                let back = (1..=max_back).take_while(|&k| src[i_src - k] == target[base + i - k]).count();

                let mut ofst = i_src - back;
                let mut cnt = fwd + back;
                let mut litsz = i - back;
                if utf8 && cnt > 0 {
                    // Trim the copy so target[base + litsz ..][..cnt] starts and
                    // ends on character boundaries; base is always a boundary.
                    let (mut ts, mut te) = (base + litsz, base + litsz + cnt);
                    while ts < te && !is_boundary(target, ts) {
                        ts += 1;
                        ofst += 1;
                    }
                    while te > ts && !is_boundary(target, te) {
                        te -= 1;
                    }
                    litsz = ts - base;
                    cnt = te - ts;
                }
                // Bytes to encode the insert + copy commands (excluding the
                // literal text); only copy when that does not grow the delta.
                let sz = digit_count(litsz) + digit_count(cnt) + digit_count(ofst) + 3;
                if cnt >= sz && cnt > best_cnt {
                    best_cnt = cnt;
                    best_ofst = ofst;
                    best_litsz = litsz;
                }
                block = collide[block];
            }

            if best_cnt > 0 {
                if best_litsz > 0 {
                    put_literal(&mut out, &target[base..base + best_litsz]);
                    base += best_litsz;
                }
                base += best_cnt;
                put_int(&mut out, best_cnt);
                out.push(b'@');
                put_int(&mut out, best_ofst);
                out.push(b',');
                break;
            }

            // No match so far: if the window reached the end, insert the rest.
            if base + i + NHASH >= len_out {
                put_literal(&mut out, &target[base..]);
                base = len_out;
                break;
            }

            h.next(target[base + i + NHASH]);
            i += 1;
        }
    }
    if base < len_out {
        put_literal(&mut out, &target[base..]);
    }
    put_int(&mut out, checksum(target) as usize);
    out.push(b';');
    out
}

/// Value of a base-64 digit, or `None` for a non-digit. Mirrors the
/// reference decoder, which looks up `byte & 0x7f`.
fn digit_value(b: u8) -> Option<u32> {
    let c = b & 0x7f;
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'_' => Some(36),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 37),
        b'~' => Some(63),
        _ => None,
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn have_bytes(&self) -> bool {
        self.pos < self.data.len()
    }

    fn get_byte(&mut self) -> Result<u8, FossilError> {
        let b = *self.data.get(self.pos).ok_or(FossilError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    fn get_int(&mut self) -> Result<usize, FossilError> {
        let mut v: u32 = 0;
        while let Some(d) = self.data.get(self.pos).copied().and_then(digit_value) {
            v = v.checked_mul(64).and_then(|v| v.checked_add(d)).ok_or(FossilError::IntegerOverflow)?;
            self.pos += 1;
        }
        Ok(v as usize)
    }
}

/// Applies `delta` to `source` and returns the target, verifying the
/// declared size and checksum (same checks as the SDKs' `applyDelta`).
pub fn apply(source: &[u8], delta: &[u8]) -> Result<Vec<u8>, FossilError> {
    let mut r = Reader { data: delta, pos: 0 };
    let limit = r.get_int()?;
    if r.get_byte()? != b'\n' {
        return Err(FossilError::SizeNotTerminated);
    }
    // Do not trust `limit` for the allocation; it is attacker-controlled.
    let mut out = Vec::with_capacity(limit.min(source.len().saturating_add(delta.len())));
    let mut total: usize = 0;
    while r.have_bytes() {
        let cnt = r.get_int()?;
        match r.get_byte()? {
            b'@' => {
                let ofst = r.get_int()?;
                if r.have_bytes() && r.get_byte()? != b',' {
                    return Err(FossilError::CopyNotTerminated);
                }
                total = total.saturating_add(cnt);
                if total > limit {
                    return Err(FossilError::CopyExceedsOutput);
                }
                let end = ofst.checked_add(cnt).filter(|&e| e <= source.len()).ok_or(FossilError::CopyPastSource)?;
                out.extend_from_slice(&source[ofst..end]);
            }
            b':' => {
                total = total.saturating_add(cnt);
                if total > limit {
                    return Err(FossilError::InsertExceedsOutput);
                }
                let end = r.pos.checked_add(cnt).filter(|&e| e <= delta.len()).ok_or(FossilError::InsertPastDelta)?;
                out.extend_from_slice(&delta[r.pos..end]);
                r.pos = end;
            }
            b';' => {
                if cnt != checksum(&out) as usize {
                    return Err(FossilError::BadChecksum);
                }
                if total != limit {
                    return Err(FossilError::SizeMismatch);
                }
                return Ok(out);
            }
            op => return Err(FossilError::UnknownOperator(op)),
        }
    }
    Err(FossilError::Unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_ints() {
        let mut v = Vec::new();
        for n in [0usize, 1, 63, 64, 4095, 4096, 1 << 30, u32::MAX as usize] {
            v.clear();
            put_int(&mut v, n);
            v.push(b'\n');
            let mut r = Reader { data: &v, pos: 0 };
            assert_eq!(r.get_int(), Ok(n));
            assert_eq!(digit_count(n), v.len() - 1);
        }
    }

    #[test]
    fn checksum_tail_handling() {
        // Single byte lands in the top byte; 3-byte tail fills bytes 3..1.
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(&[1]), 1 << 24);
        assert_eq!(checksum(&[1, 2, 3]), (1 << 24) + (2 << 16) + (3 << 8));
        assert_eq!(checksum(&[1, 2, 3, 4]), (1 << 24) + (2 << 16) + (3 << 8) + 4);
    }

    #[test]
    fn small_source_is_single_literal() {
        assert_eq!(delta(b"abc", b"abcd"), b"4\n4:abcd1XObD_;".to_vec());
    }

    #[test]
    fn apply_rejects_garbage() {
        assert_eq!(apply(b"", b""), Err(FossilError::UnexpectedEnd));
        assert_eq!(apply(b"", b"1!"), Err(FossilError::SizeNotTerminated));
        assert_eq!(apply(b"", b"1\n1:a"), Err(FossilError::Unterminated));
        assert_eq!(apply(b"", b"1\n5:a"), Err(FossilError::InsertExceedsOutput));
        assert_eq!(apply(b"", b"5\n5:a"), Err(FossilError::InsertPastDelta));
        assert_eq!(apply(b"ab", b"3\n3@0,"), Err(FossilError::CopyPastSource));
        assert_eq!(apply(b"ab", b"1\n2@0,"), Err(FossilError::CopyExceedsOutput));
        assert_eq!(apply(b"ab", b"1\n1!"), Err(FossilError::UnknownOperator(b'!')));
        assert_eq!(apply(b"", b"~~~~~~\n"), Err(FossilError::IntegerOverflow));
        assert_eq!(apply(b"", b"0\n1;"), Err(FossilError::BadChecksum));
        assert_eq!(apply(b"", b"1\n0;"), Err(FossilError::SizeMismatch));
        assert_eq!(apply(b"", b"0\n0;"), Ok(Vec::new()));
    }
}
