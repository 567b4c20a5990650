//! Publishing side of every target: one pre-rendered HTTP/1.1 request per publication.
//!
//! - Herald: `POST /api/publish` `{"channel":..,"data":<body>}` with `X-API-Key`;
//! - `raw-ws` and `socketio` peers: POST the raw body to `publish_url` (`{channel}` substituted);
//! - `nchan`: POST the raw body to `/pub/<channel>` (the `publish_url` template);
//! - `pusher`: the signed events API, `POST /apps/<id>/events?auth_key=..&auth_signature=..`.

use anyhow::{Result, anyhow};
use hmac::{Hmac, Mac};
use md5::Digest;
use sha2::Sha256;

use crate::http::{ApiBase, Response};
use crate::proto::Kind;

/// Where and how to publish.
#[derive(Clone, Debug)]
pub struct PubTarget {
    pub kind: Kind,
    pub base: ApiBase,
    /// Path template (with `{channel}`) for raw/nchan; unused for Herald and Pusher.
    pub path: String,
    pub api_key: String,
    pub app_id: String,
    pub app_key: String,
    pub app_secret: String,
}

/// Extra fields merged into Herald's publish request (e.g. `"webhook":{..}`), already JSON.
pub type Extra = Option<String>;

impl PubTarget {
    /// Herald's server API.
    pub fn herald(base: ApiBase, api_key: &str) -> Self {
        Self {
            kind: Kind::Herald,
            base,
            path: "/api/publish".into(),
            api_key: api_key.into(),
            app_id: String::new(),
            app_key: String::new(),
            app_secret: String::new(),
        }
    }

    /// A peer's publish endpoint from its `publish_url` (`http://host:port/path`, `{channel}` allowed).
    pub async fn peer(kind: Kind, publish_url: &str, app_id: &str, app_key: &str, app_secret: &str) -> Result<Self> {
        let rest = publish_url.strip_prefix("http://").ok_or_else(|| anyhow!("publish_url must be http://"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let base = ApiBase::resolve(&format!("http://{hostport}")).await?;
        Ok(Self {
            kind,
            base,
            path: path.to_string(),
            api_key: String::new(),
            app_id: app_id.into(),
            app_key: app_key.into(),
            app_secret: app_secret.into(),
        })
    }

    /// Whether the publish request names the channel (so one target serves many channels).
    pub fn per_channel(&self) -> bool {
        matches!(self.kind, Kind::Herald | Kind::Pusher) || self.path.contains("{channel}")
    }

    /// Renders the whole request publishing `body` (a JSON object) to `channel`.
    pub fn render(&self, channel: &str, body: &[u8], extra: &Extra, out: &mut Vec<u8>) {
        out.clear();
        let host = &self.base.host;
        match self.kind {
            Kind::Herald => {
                let mut json = Vec::with_capacity(body.len() + channel.len() + 32);
                json.extend_from_slice(b"{\"channel\":");
                json.extend_from_slice(json_string(channel).as_bytes());
                json.extend_from_slice(b",\"data\":");
                json.extend_from_slice(body);
                if let Some(e) = extra {
                    json.push(b',');
                    json.extend_from_slice(e.as_bytes());
                }
                json.push(b'}');
                let head = format!(
                    "POST {}/api/publish HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    self.base.prefix,
                    self.api_key,
                    json.len()
                );
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(&json);
            }
            Kind::Pusher => {
                let data = json_string(std::str::from_utf8(body).unwrap_or_default());
                let json = format!("{{\"name\":\"bench\",\"channel\":{},\"data\":{data}}}", json_string(channel));
                let path = format!("/apps/{}/events", self.app_id);
                let query =
                    pusher_query(&self.app_key, &self.app_secret, &path, json.as_bytes(), crate::util::unix_secs());
                let head = format!(
                    "POST {path}?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    json.len()
                );
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(json.as_bytes());
            }
            Kind::RawWs | Kind::Socketio | Kind::Nchan => {
                let path = self.path.replace("{channel}", channel);
                let head = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(body);
            }
        }
    }

    /// Whether a response means the publication was accepted.
    pub fn accepted(&self, r: &Response) -> bool {
        match self.kind {
            Kind::Herald => r.is_api_success(),
            _ => (200..300).contains(&r.status),
        }
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// The signed query string of a Pusher HTTP API request.
pub fn pusher_query(key: &str, secret: &str, path: &str, body: &[u8], timestamp: u64) -> String {
    let md5 = hex(&md5::Md5::digest(body));
    let query = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={md5}");
    let to_sign = format!("POST\n{path}\n{query}");
    let sig = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(to_sign.as_bytes());
            hex(&mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    format!("{query}&auth_signature={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_signature_matches_reference() {
        // Example from the Pusher HTTP API reference ("Authentication" section).
        let q = pusher_query(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "/apps/3/events",
            br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#,
            1353088179,
        );
        assert!(q.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"), "{q}");
        assert!(q.ends_with("auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"), "{q}");
    }

    #[tokio::test]
    async fn renders_requests() {
        let base = ApiBase::resolve("http://127.0.0.1:9").await.expect("base");
        let t = PubTarget::herald(base.clone(), "k");
        let mut out = Vec::new();
        t.render("ch", br#"{"t":1}"#, &Some(r#""webhook":{"app":"a","event_type":"x"}"#.into()), &mut out);
        let s = String::from_utf8(out.clone()).expect("utf8");
        assert!(s.ends_with(r#"{"channel":"ch","data":{"t":1},"webhook":{"app":"a","event_type":"x"}}"#), "{s}");
        let n = PubTarget::peer(Kind::Nchan, "http://127.0.0.1:9/pub/{channel}", "", "", "").await.expect("peer");
        n.render("c1", b"{}", &None, &mut out);
        assert!(String::from_utf8_lossy(&out).starts_with("POST /pub/c1 HTTP/1.1"));
        assert!(n.per_channel());
    }
}
