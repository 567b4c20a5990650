//! Ids with Svix prefixes (`app_`, `ep_`, `msg_`, `atmpt_`): a prefix, then 27 base62
//! characters that sort by creation time (a KSUID-like layout: 32-bit seconds since 2014-05-13,
//! then 128 bits). Sorting by id is sorting by creation, which keeps pagination iterators
//! simple: "after this id".
//!
//! The 128 bits after the seconds are not all random: the first 16 hold the millisecond within
//! the second and the next 24 a counter, so ids made by one process sort in the order they were
//! made, even within one millisecond (the SQLite store makes every id on its writer thread, so
//! id order is commit order there). The remaining 88 bits are random.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// KSUID epoch (2014-05-13T16:53:20Z) in Unix seconds.
const EPOCH: u64 = 1_400_000_000;
const ENCODED_LEN: usize = 27;

pub const APP: &str = "app";
pub const ENDPOINT: &str = "ep";
pub const MESSAGE: &str = "msg";
pub const ATTEMPT: &str = "atmpt";

/// A new id `<prefix>_<27 base62 chars>`.
pub fn new_id(prefix: &str) -> String {
    let (millis, counter) = next_tick();
    let seconds = (millis / 1000).saturating_sub(EPOCH) as u32;
    let mut raw = [0u8; 20];
    raw[..4].copy_from_slice(&seconds.to_be_bytes());
    raw[4..6].copy_from_slice(&((millis % 1000) as u16).to_be_bytes());
    raw[6..9].copy_from_slice(&counter.to_be_bytes()[1..]);
    let random: [u8; 11] = rand::random();
    raw[9..].copy_from_slice(&random);
    format!("{prefix}_{}", encode(raw))
}

/// Whether `id` has the given prefix and a well-formed body.
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == ENCODED_LEN && body.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Largest value of the 24-bit counter.
const COUNTER_MAX: u32 = (1 << 24) - 1;

/// The millisecond and the counter of the next id: never smaller than the last pair handed out,
/// even when the clock steps back (the last millisecond is reused and the counter goes on).
fn next_tick() -> (u64, u32) {
    static LAST: std::sync::Mutex<(u64, u32)> = std::sync::Mutex::new((0, 0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(EPOCH * 1000);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let next = if now > last.0 {
        (now, 0)
    } else if last.1 < COUNTER_MAX {
        (last.0, last.1 + 1)
    } else {
        // 16 million ids in one millisecond: borrow the next millisecond.
        (last.0 + 1, 0)
    };
    *last = next;
    next
}

fn encode(raw: [u8; 20]) -> String {
    // Base62 of a 160-bit big-endian number, left-padded to 27 characters.
    let mut digits = raw.to_vec();
    let mut out = [b'0'; ENCODED_LEN];
    let mut pos = ENCODED_LEN;
    while digits.iter().any(|&d| d != 0) && pos > 0 {
        let mut remainder: u32 = 0;
        for digit in digits.iter_mut() {
            let acc = (remainder << 8) | u32::from(*digit);
            *digit = (acc / 62) as u8;
            remainder = acc % 62;
        }
        pos -= 1;
        out[pos] = ALPHABET[remainder as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_sort_by_time() {
        let a = new_id(MESSAGE);
        assert!(has_prefix(&a, MESSAGE), "{a}");
        assert!(!has_prefix(&a, APP));
        assert_eq!(a.len(), "msg_".len() + 27);
        let zero = encode([0u8; 20]);
        let later = {
            let mut raw = [0u8; 20];
            raw[3] = 1;
            encode(raw)
        };
        assert!(zero < later);
        assert_eq!(encode([255u8; 20]), "aWgEPTl1tmebfsQzFP4bxwgy80V");
    }

    #[test]
    fn ids_made_in_a_row_are_strictly_increasing() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id(ATTEMPT)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
    }
}
