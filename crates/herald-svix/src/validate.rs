//! Field rules of the Svix API, with Svix's limits and messages: names and uids, channels,
//! metadata, endpoint secrets, extra headers and URLs.
//!
//! Each check returns the problems it found as [`ValidationItem`]s at the field's location, so
//! a handler reports every bad field of a body in one 422.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::ValidationItem;

/// Longest name or uid (event types, uids, event ids).
const MAX_NAME_LEN: usize = 256;
/// Longest channel name.
const MAX_CHANNEL_LEN: usize = 128;
/// Serialized metadata at most this many bytes.
const MAX_METADATA_BYTES: usize = 4096;
/// Longest extra header value.
const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Longest endpoint URL.
const MAX_URL_LEN: usize = 65_536;
/// Decoded HMAC secret size bounds, as in Svix.
const SECRET_MIN_BYTES: usize = 24;
const SECRET_MAX_BYTES: usize = 75;
/// Prefix of an HMAC endpoint secret.
pub(crate) const SECRET_PREFIX: &str = "whsec_";

/// Headers a user may not set on deliveries (Svix's list).
const FORBIDDEN_HEADERS: [&str; 19] = [
    "user-agent",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "age",
    "cache-control",
    "clear-site-data",
    "expires",
    "pragma",
    "warning",
    "content-length",
    "content-type",
    "content-encoding",
    "content-language",
    "content-location",
];
/// Header prefixes a user may not set. `webhook-` is Herald's addition: the Standard Webhooks
/// signature headers are ours to write.
const FORBIDDEN_HEADER_PREFIXES: [&str; 10] =
    ["x-amz-", "x-amzn-", "x-google", "x-goog-", "x-gfe", "x-azure-", "x-fd-", "x-svix-", "svix-", "webhook-"];
/// Headers returned in `sensitive` rather than in clear by `GET .../headers`.
const SENSITIVE_HEADERS: [&str; 6] =
    ["x-auth-token", "x-api-key", "www-authenticate", "authorization", "proxy-authenticate", "proxy-authorization"];

fn loc(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| (*s).to_owned()).collect()
}

fn item(path: &[&str], msg: &str) -> ValidationItem {
    ValidationItem { loc: loc(path), msg: msg.to_owned(), ty: "value_error".to_owned() }
}

/// Svix's "limited string": 1 to `max` characters of `[a-zA-Z0-9-_.]` (plus `extra`).
fn limited_str(value: &str, max: usize, extra: &[u8], path: &[&str], out: &mut Vec<ValidationItem>) {
    if value.is_empty() {
        out.push(item(path, "String must be at least one character"));
    } else if value.len() > max {
        out.push(item(path, "String too long"));
    } else if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || extra.contains(&b)) {
        let msg = if extra.is_empty() {
            "String must match the following pattern: [a-zA-Z0-9\\-_.].".to_owned()
        } else {
            format!("String must match the following pattern: [a-zA-Z0-9\\-_.{}].", String::from_utf8_lossy(extra))
        };
        out.push(ValidationItem { loc: loc(path), msg, ty: "value_error".to_owned() });
    }
}

/// An event type name (`user.signup`).
pub(crate) fn event_type_name(value: &str, path: &[&str], out: &mut Vec<ValidationItem>) {
    limited_str(value, MAX_NAME_LEN, b"", path, out);
}

/// A uid (application, endpoint, message `eventId`): a limited string that must not look like
/// an id of its kind (`id_prefix` is `app`, `ep` or `msg`).
pub(crate) fn uid(value: &str, id_prefix: &str, path: &[&str], out: &mut Vec<ValidationItem>) {
    limited_str(value, MAX_NAME_LEN, b"", path, out);
    if value.strip_prefix(id_prefix).is_some_and(|rest| rest.starts_with('_')) {
        out.push(item(path, "Uids are not allowed to have the same prefix as the ID. Prefix with _?"));
    }
}

/// A channel name. Svix's hosted API allows `:` and `+` besides the limited-string characters,
/// which also fits Herald's `namespace:channel` names.
pub(crate) fn channel(value: &str, path: &[&str], out: &mut Vec<ValidationItem>) {
    limited_str(value, MAX_CHANNEL_LEN, b":+", path, out);
}

/// A list of names: every item checked with `check`, duplicates dropped (Svix keeps sets),
/// first-seen order kept. `min`/`max` bound the number of distinct items.
pub(crate) fn name_set(
    values: Vec<String>,
    min: usize,
    max: usize,
    count_msg: &str,
    path: &[&str],
    out: &mut Vec<ValidationItem>,
    check: impl Fn(&str, &[&str], &mut Vec<ValidationItem>),
) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if !distinct.contains(&value) {
            distinct.push(value);
        }
    }
    if distinct.len() < min || distinct.len() > max {
        out.push(item(path, count_msg));
    }
    for value in &distinct {
        check(value, path, out);
    }
    distinct
}

/// Endpoint channels: 1 to 10 distinct channel names.
pub(crate) fn endpoint_channels(values: Vec<String>, path: &[&str], out: &mut Vec<ValidationItem>) -> Vec<String> {
    name_set(
        values,
        1,
        10,
        "Channels must have at least 1 and at most 10 items, or be set to null.",
        path,
        out,
        channel,
    )
}

/// Endpoint event type filter: at least one distinct event type name.
pub(crate) fn endpoint_event_types(values: Vec<String>, path: &[&str], out: &mut Vec<ValidationItem>) -> Vec<String> {
    name_set(
        values,
        1,
        usize::MAX,
        "eventTypes can't be empty, it must have at least one item.",
        path,
        out,
        event_type_name,
    )
}

/// Message channels: 1 to 10 distinct channel names (the hosted API's limit).
pub(crate) fn message_channels(values: Vec<String>, path: &[&str], out: &mut Vec<ValidationItem>) -> Vec<String> {
    name_set(
        values,
        1,
        10,
        "Channels must have at least 1 and at most 10 items, or be set to null.",
        path,
        out,
        channel,
    )
}

/// Free-text descriptions and names: control characters 0x00 to 0x08 are refused, as in Svix.
pub(crate) fn no_control_characters(value: &str, path: &[&str], out: &mut Vec<ValidationItem>) {
    if value.chars().any(|c| ('\u{0}'..='\u{8}').contains(&c)) {
        out.push(ValidationItem {
            loc: loc(path),
            msg: "Control characters 0x00-0x08 not allowed.".to_owned(),
            ty: "value_error".to_owned(),
        });
    }
}

/// Metadata: string values, at most 4 KiB serialized.
pub(crate) fn metadata(value: &BTreeMap<String, String>, path: &[&str], out: &mut Vec<ValidationItem>) {
    let size = serde_json::to_string(value).map(|s| s.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        out.push(item(path, &format!("metadata must be less than or equal to {MAX_METADATA_BYTES} bytes")));
    }
}

/// A rate (`throttleRate`, `rateLimit`): at least 1, at most 65535.
pub(crate) fn rate(value: u64, what: &str, path: &[&str], out: &mut Vec<ValidationItem>) -> Option<u32> {
    if value == 0 || value > u64::from(u16::MAX) {
        out.push(item(path, &format!("{what} must be at least 1 if set")));
        return None;
    }
    u32::try_from(value).ok()
}

/// An endpoint secret as a client sends it: `whsec_` (optional) then base64 of 24 to 75 bytes,
/// 32 to 100 characters (`^(whsec_)?[a-zA-Z0-9+/=]{32,100}$`). Returns it normalised to
/// `whsec_<base64>`.
pub(crate) fn secret(value: &str, path: &[&str], out: &mut Vec<ValidationItem>) -> Option<String> {
    // Herald extension: an ed25519 signing key (`whsk_` + base64 of the 32-byte seed or the
    // 64-byte key pair) makes deliveries carry `v1a` signatures instead of `v1`.
    if let Some(key) = value.strip_prefix("whsk_") {
        return match STANDARD.decode(key) {
            Ok(bytes) if bytes.len() == 32 || bytes.len() == 64 => Some(value.to_owned()),
            _ => {
                out.push(item(path, "A whsk_ secret must be base64 of a 32- or 64-byte ed25519 key"));
                None
            }
        };
    }
    let encoded = value.strip_prefix(SECRET_PREFIX).unwrap_or(value);
    let pattern_ok = (32..=100).contains(&encoded.len())
        && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    if !pattern_ok {
        out.push(item(path, "Secret must match the pattern ^(whsec_)?[a-zA-Z0-9+/=]{32,100}$"));
        return None;
    }
    match STANDARD.decode(encoded) {
        Ok(bytes) if (SECRET_MIN_BYTES..=SECRET_MAX_BYTES).contains(&bytes.len()) => {
            Some(format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes)))
        }
        Ok(_) => {
            out.push(item(path, "secret length invalid"));
            None
        }
        Err(_) => {
            out.push(item(path, "Secret must be valid base64"));
            None
        }
    }
}

/// A fresh HMAC secret: `whsec_` + base64 of 32 random bytes.
pub(crate) fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// One extra header name: a valid HTTP header name, not one Herald or the transport owns.
pub(crate) fn header_name(name: &str, path: &[&str], out: &mut Vec<ValidationItem>) {
    let lower = name.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        out.push(item(path, "Invalid Header Name."));
    }
    if FORBIDDEN_HEADERS.contains(&lower.as_str()) {
        out.push(item(path, "Header uses a forbidden key."));
    }
    if FORBIDDEN_HEADER_PREFIXES.iter().any(|prefix| lower.starts_with(prefix)) {
        out.push(item(path, "Header starts with a forbidden prefix."));
    }
}

/// One extra header value.
pub(crate) fn header_value(value: &str, path: &[&str], out: &mut Vec<ValidationItem>) {
    if http::HeaderValue::from_str(value).is_err() {
        out.push(item(path, "Invalid Header Value."));
    }
    if value.len() > MAX_HEADER_VALUE_LEN {
        out.push(item(path, "Maximum header length is 4096 bytes"));
    }
}

/// A full set of extra headers.
pub(crate) fn headers(value: &BTreeMap<String, String>, path: &[&str], out: &mut Vec<ValidationItem>) {
    for (name, header) in value {
        let mut field_path = path.to_vec();
        field_path.push(name);
        header_name(name, &field_path, out);
        header_value(header, &field_path, out);
    }
}

/// Split stored headers into the clear ones and the names of the sensitive ones.
pub(crate) fn split_sensitive(headers: &BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut clear = BTreeMap::new();
    let mut sensitive = Vec::new();
    for (name, value) in headers {
        if SENSITIVE_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            sensitive.push(name.clone());
        } else {
            clear.insert(name.clone(), value.clone());
        }
    }
    (clear, sensitive)
}

/// An endpoint URL: absolute, `http` or `https`. Returns it normalised as Svix stores it
/// (`https://example.com` becomes `https://example.com/`).
pub(crate) fn endpoint_url(value: &str, path: &[&str], out: &mut Vec<ValidationItem>) -> Option<String> {
    if value.is_empty() || value.len() > MAX_URL_LEN {
        out.push(item(path, "URL length must be between 1 and 65536 characters"));
        return None;
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url.to_string()),
        Ok(url) if matches!(url.scheme(), "http" | "https") => {
            out.push(item(path, "Endpoint URL must have a host"));
            None
        }
        Ok(_) => {
            out.push(item(path, "Endpoint URL schemes must be http or https"));
            None
        }
        Err(error) => {
            out.push(ValidationItem { loc: loc(path), msg: error.to_string(), ty: "value_error.url".to_owned() });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(check: impl FnOnce(&mut Vec<ValidationItem>)) -> Vec<ValidationItem> {
        let mut out = Vec::new();
        check(&mut out);
        out
    }

    #[test]
    fn names_and_uids() {
        assert!(errors(|o| event_type_name("user.signup-v2_x", &["body", "eventType"], o)).is_empty());
        assert_eq!(errors(|o| event_type_name("$$bad", &["body", "eventType"], o)).len(), 1);
        assert_eq!(errors(|o| event_type_name("", &["body", "eventType"], o)).len(), 1);
        assert_eq!(errors(|o| event_type_name(&"a".repeat(257), &["b"], o)).len(), 1);
        assert!(errors(|o| uid("my-app", "app", &["body", "uid"], o)).is_empty());
        assert!(errors(|o| uid("application", "app", &["body", "uid"], o)).is_empty());
        assert_eq!(errors(|o| uid("app_123", "app", &["body", "uid"], o)).len(), 1);
        assert!(errors(|o| channel("chat:room+1", &["c"], o)).is_empty());
        assert_eq!(errors(|o| channel("chat room", &["c"], o)).len(), 1);
    }

    #[test]
    fn channel_sets_dedupe_and_count() {
        let mut out = Vec::new();
        let set = endpoint_channels(vec!["a".into(), "b".into(), "a".into()], &["body", "channels"], &mut out);
        assert_eq!(set, vec!["a".to_owned(), "b".to_owned()]);
        assert!(out.is_empty());
        let many = (0..11).map(|i| format!("c{i}")).collect();
        endpoint_channels(many, &["body", "channels"], &mut out);
        assert_eq!(out.len(), 1);
        out.clear();
        endpoint_event_types(Vec::new(), &["body", "eventTypes"], &mut out);
        assert_eq!(out[0].msg, "eventTypes can't be empty, it must have at least one item.");
    }

    #[test]
    fn secrets() {
        let mut out = Vec::new();
        let generated = generate_secret();
        assert_eq!(secret(&generated, &["s"], &mut out), Some(generated.clone()));
        let bare = generated.strip_prefix(SECRET_PREFIX).expect("prefix").to_owned();
        assert_eq!(secret(&bare, &["s"], &mut out), Some(generated));
        assert!(out.is_empty());
        assert_eq!(secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", &["s"], &mut out).map(|s| s.len()), Some(38));
        assert!(secret("whsec_short", &["s"], &mut out).is_none());
        assert!(secret("whsec_!!!!BQIhrscChlQIMV+b5sSYspob7oD", &["s"], &mut out).is_none());
        // 32 valid characters that are not base64 of 24 bytes.
        assert!(secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7o=", &["s"], &mut out).is_none());
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn header_rules() {
        let mut ok = BTreeMap::new();
        ok.insert("X-Example".to_owned(), "123".to_owned());
        assert!(errors(|o| headers(&ok, &["body", "headers"], o)).is_empty());
        for bad in ["content-type", "svix-id", "webhook-signature", "x-amz-date", "bad header"] {
            let mut map = BTreeMap::new();
            map.insert(bad.to_owned(), "v".to_owned());
            assert!(!errors(|o| headers(&map, &["body", "headers"], o)).is_empty(), "{bad}");
        }
        let mut map = BTreeMap::new();
        map.insert("x-ok".to_owned(), "line\nbreak".to_owned());
        assert!(!errors(|o| headers(&map, &["body", "headers"], o)).is_empty());
        let mut mixed = BTreeMap::new();
        mixed.insert("Authorization".to_owned(), "secret".to_owned());
        mixed.insert("x-foo".to_owned(), "1".to_owned());
        let (clear, sensitive) = split_sensitive(&mixed);
        assert_eq!(clear.keys().collect::<Vec<_>>(), vec!["x-foo"]);
        assert_eq!(sensitive, vec!["Authorization".to_owned()]);
    }

    #[test]
    fn urls() {
        let mut out = Vec::new();
        assert_eq!(endpoint_url("https://example.com", &["u"], &mut out).as_deref(), Some("https://example.com/"));
        assert!(endpoint_url("ftp://example.com/", &["u"], &mut out).is_none());
        assert!(endpoint_url("not a url", &["u"], &mut out).is_none());
        assert!(endpoint_url("", &["u"], &mut out).is_none());
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn control_characters_and_metadata() {
        assert_eq!(errors(|o| no_control_characters("a\u{0}b", &["d"], o)).len(), 1);
        assert!(errors(|o| no_control_characters("tab\tok", &["d"], o)).is_empty());
        let mut big = BTreeMap::new();
        big.insert("k".to_owned(), "v".repeat(5000));
        assert_eq!(errors(|o| metadata(&big, &["m"], o)).len(), 1);
    }
}
