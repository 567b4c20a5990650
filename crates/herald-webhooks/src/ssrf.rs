//! Server-side request forgery guard: which addresses a webhook endpoint may reach.
//!
//! # Design
//!
//! Endpoint URLs are chosen by users, so without a guard Herald could be made to POST to its own
//! loopback, the cloud metadata service (169.254.169.254) or any private network it sits in.
//! Everything that is not a public unicast address is refused unless an operator lists its
//! network in `webhooks.allow_networks`.
//!
//! The check runs twice:
//! 1. When an endpoint is created or updated ([`Guard::check_url`]): IP-literal hosts are checked
//!    directly, host names are resolved and every address must be allowed. This gives users an
//!    early, clear error.
//! 2. At connect time, through [`GuardedResolver`], the DNS resolver installed in the HTTP
//!    client: it drops refused addresses and fails when none is left. DNS answers change (DNS
//!    rebinding), so the create-time check alone proves nothing. Resolvers are not consulted for
//!    IP-literal URLs, so the sender checks those itself with [`Guard::check_ip`] before
//!    sending.
//!
//! The client follows no redirects and uses no proxy, so the connected address is always one that
//! passed the resolver or the literal check.
//!
//! IPv6 forms that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) are judged by the embedded address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a URL or address was refused.
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    #[error("unsupported URL scheme `{0}` (only http and https)")]
    UnsupportedScheme(String),
    #[error("the URL has no host")]
    MissingHost,
    #[error("{host} resolves to {ip}, a {class} address, which endpoints may not reach")]
    Blocked { host: String, ip: IpAddr, class: IpClass },
    #[error("{0} is a local host name, which endpoints may not reach")]
    LocalName(String),
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("{0} resolves to no address")]
    NoAddresses(String),
    #[error("`{0}` is not a network in CIDR form like 127.0.0.0/8")]
    InvalidNetwork(String),
}

/// What kind of address an IP is. Only [`IpClass::Public`] is reachable by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpClass {
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10 (carrier-grade NAT).
    SharedCgnat,
    /// fc00::/7.
    UniqueLocal,
    /// 0.0.0.0, ::.
    Unspecified,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18/15, 2001:2::/48.
    Benchmark,
    /// Anything else set aside: 0/8, 192.0.0/24, 240/4, deprecated or special IPv6 ranges.
    Reserved,
}

impl IpClass {
    pub fn is_public(self) -> bool {
        self == IpClass::Public
    }
}

impl std::fmt::Display for IpClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpClass::Public => "public",
            IpClass::Loopback => "loopback",
            IpClass::Private => "private",
            IpClass::LinkLocal => "link-local",
            IpClass::SharedCgnat => "shared (CGNAT)",
            IpClass::UniqueLocal => "unique local",
            IpClass::Unspecified => "unspecified",
            IpClass::Multicast => "multicast",
            IpClass::Broadcast => "broadcast",
            IpClass::Documentation => "documentation",
            IpClass::Benchmark => "benchmarking",
            IpClass::Reserved => "reserved",
        })
    }
}

/// Classify an address; IPv6 addresses that embed an IPv4 address are classified by it.
pub fn classify(ip: IpAddr) -> IpClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> IpClass {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() {
        IpClass::Unspecified
    } else if ip.is_broadcast() {
        IpClass::Broadcast
    } else if a == 0 {
        IpClass::Reserved
    } else if a == 127 {
        IpClass::Loopback
    } else if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        IpClass::Private
    } else if a == 169 && b == 254 {
        IpClass::LinkLocal
    } else if a == 100 && (64..128).contains(&b) {
        IpClass::SharedCgnat
    } else if (a == 192 && b == 0 && c == 2) || (a == 198 && b == 51 && c == 100) || (a == 203 && b == 0 && c == 113) {
        IpClass::Documentation
    } else if a == 198 && (b == 18 || b == 19) {
        IpClass::Benchmark
    } else if (224..240).contains(&a) {
        IpClass::Multicast
    } else if a >= 240 || (a == 192 && b == 0 && c == 0) || (a == 192 && b == 88 && c == 99) {
        // 240/4 (future use), 192.0.0/24 (IETF protocol assignments), 192.88.99/24 (6to4 relays).
        IpClass::Reserved
    } else {
        IpClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    if ip.is_unspecified() {
        IpClass::Unspecified
    } else if ip.is_loopback() {
        IpClass::Loopback
    } else if first & 0xff00 == 0xff00 {
        IpClass::Multicast
    } else if first & 0xfe00 == 0xfc00 {
        IpClass::UniqueLocal
    } else if first & 0xffc0 == 0xfe80 {
        IpClass::LinkLocal
    } else if (first == 0x2001 && segments[1] == 0x0db8) || (first == 0x3fff && segments[1] < 0x1000) {
        IpClass::Documentation
    } else if first == 0x2001 && segments[1] == 0x0002 && segments[2] == 0 {
        IpClass::Benchmark
    } else if first & 0xe000 != 0x2000 || (first == 0x2001 && segments[1] < 0x0200) {
        // Outside global unicast 2000::/3 (the deprecated IPv4-compatible ::/96, 100::/64
        // discard-only, fec0::/10 site-local, ...), or in 2001::/23, the IETF protocol
        // assignments (Teredo, ORCHID, ...).
        IpClass::Reserved
    } else {
        IpClass::Public
    }
}

/// The IPv4 address inside an IPv4-mapped, NAT64 (well-known prefix) or 6to4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[..5] == [0, 0, 0, 0, 0] && s[5] == 0xffff {
        return Some(low(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

/// A network in CIDR form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix_len: u8,
}

impl Network {
    /// Parse `addr/len`.
    pub fn parse(text: &str) -> Result<Network, SsrfError> {
        let invalid = || SsrfError::InvalidNetwork(text.to_owned());
        let (addr, len) = text.split_once('/').ok_or_else(invalid)?;
        let addr: IpAddr = addr.trim().parse().map_err(|_| invalid())?;
        let prefix_len: u8 = len.trim().parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(invalid());
        }
        Ok(Network { addr, prefix_len })
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address is also tested as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(net.to_bits().into(), ip.to_bits().into(), self.prefix_len, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_matches(net.to_bits(), ip.to_bits(), self.prefix_len, 128),
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

fn prefix_matches(net: u128, ip: u128, prefix_len: u8, width: u32) -> bool {
    let host_bits = width - u32::from(prefix_len);
    if host_bits >= width {
        return true;
    }
    (net >> host_bits) == (ip >> host_bits)
}

/// The address policy: public addresses, plus the operator's allowed networks.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    allow: Vec<Network>,
}

impl Guard {
    /// A guard that also lets through the given CIDR networks (`webhooks.allow_networks`).
    pub fn new(allow_networks: &[String]) -> Result<Guard, SsrfError> {
        let allow = allow_networks.iter().map(|net| Network::parse(net)).collect::<Result<Vec<_>, _>>()?;
        Ok(Guard { allow })
    }

    /// Whether an endpoint may connect to `ip`.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        classify(ip).is_public() || self.allow.iter().any(|net| net.contains(ip))
    }

    /// `Ok` when `ip` is allowed; `host` names it in the error.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), SsrfError> {
        if self.is_allowed(ip) {
            Ok(())
        } else {
            Err(SsrfError::Blocked { host: host.to_owned(), ip, class: classify(ip) })
        }
    }

    /// Check an endpoint URL when it is created or changed: http or https, a host, and a host
    /// that is not non-public by its form. IP literals are judged by their address; host names
    /// are not resolved (a name that does not resolve today may tomorrow, and Svix accepts
    /// them), only names reserved for local use are judged here ([`NameClass`]). Every address
    /// a name resolves to is checked when a delivery connects, by [`GuardedResolver`].
    pub fn check_url(&self, url: &str) -> Result<(), SsrfError> {
        let url = Url::parse(url).map_err(|error| SsrfError::InvalidUrl(error.to_string()))?;
        match literal_host(&url)? {
            Host::Ip(ip) => self.check_ip(&ip.to_string(), ip),
            Host::Name(name) => match NameClass::of(&name) {
                NameClass::Public => Ok(()),
                // A loopback name reaches whatever the loopback addresses allow.
                NameClass::Loopback => {
                    let (v4, v6) = (IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST));
                    if self.is_allowed(v4) || self.is_allowed(v6) {
                        Ok(())
                    } else {
                        Err(SsrfError::Blocked { host: name, ip: v4, class: IpClass::Loopback })
                    }
                }
                // Where a local name leads is only known when it resolves: an operator who
                // allowed a private network (not just loopback) may mean it.
                NameClass::Local => {
                    let private = |net: &Network| !matches!(classify(net.addr), IpClass::Public | IpClass::Loopback);
                    if self.allow.iter().any(private) { Ok(()) } else { Err(SsrfError::LocalName(name)) }
                }
            },
        }
    }

    /// A DNS resolver for the HTTP client that drops addresses this guard refuses.
    pub fn resolver(self: &Arc<Self>) -> GuardedResolver {
        GuardedResolver { guard: Arc::clone(self) }
    }
}

/// What a host name is by its form alone, without resolving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameClass {
    /// A name that resolves through public DNS, as far as its form tells.
    Public,
    /// `localhost` and `*.localhost` (RFC 6761): always the loopback addresses.
    Loopback,
    /// A name that only a local resolver answers: a single label (completed by the resolver's
    /// search domains) or a name under a suffix set aside for local use: `.local` (mDNS,
    /// RFC 6762), `.home.arpa` (RFC 8375), `.internal` (reserved by ICANN for private use,
    /// e.g. `metadata.google.internal`), and the customary `.localdomain`, `.lan`, `.intranet`,
    /// `.corp` and `.private`.
    Local,
}

impl NameClass {
    const LOCAL_SUFFIXES: [&'static str; 8] =
        ["local", "home.arpa", "internal", "localdomain", "lan", "intranet", "corp", "private"];

    /// Classify a host name (without a trailing dot).
    pub fn of(name: &str) -> NameClass {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let under = |suffix: &str| name == suffix || name.ends_with(&format!(".{suffix}"));
        if under("localhost") {
            NameClass::Loopback
        } else if !name.contains('.') || Self::LOCAL_SUFFIXES.iter().any(|suffix| under(suffix)) {
            NameClass::Local
        } else {
            NameClass::Public
        }
    }
}

/// The host of a URL: an IP literal or a name to resolve.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

/// The URL's host, after checking the scheme is http or https.
pub(crate) fn literal_host(url: &Url) -> Result<Host, SsrfError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SsrfError::UnsupportedScheme(url.scheme().to_owned()));
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(Host::Ip(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(Host::Ip(IpAddr::V6(ip))),
        Some(url::Host::Domain(name)) if !name.is_empty() => {
            Ok(Host::Name(name.trim_end_matches('.').to_owned()).normalize())
        }
        _ => Err(SsrfError::MissingHost),
    }
}

impl Host {
    /// A domain that is really an IP literal (the URL parser leaves some forms as names).
    fn normalize(self) -> Host {
        match self {
            Host::Name(name) => match name.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => Host::Name(name),
            },
            ip => ip,
        }
    }
}

/// The resolver installed in the webhook HTTP client; see the module comment.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    guard: Arc<Guard>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| SsrfError::Resolve { host: host.clone(), source })?
                .collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check_ip(&host, addr.ip()) {
                    Ok(()) => true,
                    Err(error) => {
                        refused.get_or_insert(error);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let error = refused.unwrap_or(SsrfError::NoAddresses(host));
                return Err(error.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    #[test]
    fn classifies_ipv4() {
        let table = [
            ("8.8.8.8", IpClass::Public),
            ("1.1.1.1", IpClass::Public),
            ("93.184.216.34", IpClass::Public),
            ("0.0.0.0", IpClass::Unspecified),
            ("0.1.2.3", IpClass::Reserved),
            ("127.0.0.1", IpClass::Loopback),
            ("127.255.255.254", IpClass::Loopback),
            ("10.0.0.1", IpClass::Private),
            ("10.255.255.255", IpClass::Private),
            ("172.15.255.255", IpClass::Public),
            ("172.16.0.1", IpClass::Private),
            ("172.31.255.255", IpClass::Private),
            ("172.32.0.0", IpClass::Public),
            ("192.168.1.1", IpClass::Private),
            ("169.254.169.254", IpClass::LinkLocal),
            ("100.63.255.255", IpClass::Public),
            ("100.64.0.1", IpClass::SharedCgnat),
            ("100.127.255.255", IpClass::SharedCgnat),
            ("100.128.0.0", IpClass::Public),
            ("192.0.0.8", IpClass::Reserved),
            ("192.0.2.1", IpClass::Documentation),
            ("198.51.100.7", IpClass::Documentation),
            ("203.0.113.9", IpClass::Documentation),
            ("198.18.0.1", IpClass::Benchmark),
            ("198.19.255.255", IpClass::Benchmark),
            ("198.20.0.0", IpClass::Public),
            ("224.0.0.1", IpClass::Multicast),
            ("239.255.255.255", IpClass::Multicast),
            ("240.0.0.1", IpClass::Reserved),
            ("255.255.255.255", IpClass::Broadcast),
        ];
        for (text, class) in table {
            assert_eq!(classify(ip(text)), class, "{text}");
        }
    }

    #[test]
    fn classifies_ipv6() {
        let table = [
            ("2606:4700:4700::1111", IpClass::Public),
            ("2a00:1450:4001:82b::200e", IpClass::Public),
            ("::", IpClass::Unspecified),
            ("::1", IpClass::Loopback),
            ("fe80::1", IpClass::LinkLocal),
            ("febf::1", IpClass::LinkLocal),
            ("fc00::1", IpClass::UniqueLocal),
            ("fd12:3456::1", IpClass::UniqueLocal),
            ("ff02::1", IpClass::Multicast),
            ("2001:db8::1", IpClass::Documentation),
            ("3fff::1", IpClass::Documentation),
            ("2001:2::1", IpClass::Benchmark),
            ("2001::1", IpClass::Reserved),
            ("100::1", IpClass::Reserved),
            ("fec0::1", IpClass::Reserved),
            ("::7f00:1", IpClass::Reserved),
            // IPv4-mapped, NAT64 and 6to4 forms take the class of the IPv4 address inside.
            ("::ffff:127.0.0.1", IpClass::Loopback),
            ("::ffff:10.1.2.3", IpClass::Private),
            ("::ffff:169.254.169.254", IpClass::LinkLocal),
            ("::ffff:8.8.8.8", IpClass::Public),
            ("64:ff9b::a9fe:a9fe", IpClass::LinkLocal),
            ("64:ff9b::808:808", IpClass::Public),
            ("2002:7f00:1::1", IpClass::Loopback),
            ("2002:808:808::1", IpClass::Public),
        ];
        for (text, class) in table {
            assert_eq!(classify(ip(text)), class, "{text}");
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let loopback = Network::parse("127.0.0.0/8").expect("valid");
        assert!(loopback.contains(ip("127.1.2.3")));
        assert!(loopback.contains(ip("::ffff:127.0.0.1")));
        assert!(!loopback.contains(ip("128.0.0.1")));
        assert!(!loopback.contains(ip("::1")));
        let everything = Network::parse("0.0.0.0/0").expect("valid");
        assert!(everything.contains(ip("10.0.0.1")));
        let host = Network::parse("10.0.0.5/32").expect("valid");
        assert!(host.contains(ip("10.0.0.5")));
        assert!(!host.contains(ip("10.0.0.6")));
        let ula = Network::parse("fd00::/8").expect("valid");
        assert!(ula.contains(ip("fd12::1")));
        assert!(!ula.contains(ip("fc00::1")));
        assert!(Network::parse("::/0").expect("valid").contains(ip("::1")));
        for bad in ["127.0.0.1", "127.0.0.0/33", "::/129", "nope/8", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn guard_refuses_non_public_unless_allowed() {
        let strict = Guard::new(&[]).expect("valid");
        assert!(strict.is_allowed(ip("8.8.8.8")));
        assert!(!strict.is_allowed(ip("127.0.0.1")));
        assert!(!strict.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(!strict.is_allowed(ip("10.0.0.1")));

        let lenient = Guard::new(&["127.0.0.0/8".to_owned(), "10.1.0.0/16".to_owned()]).expect("valid");
        assert!(lenient.is_allowed(ip("127.0.0.1")));
        assert!(lenient.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(lenient.is_allowed(ip("10.1.200.3")));
        assert!(!lenient.is_allowed(ip("10.2.0.1")));
        assert!(!lenient.is_allowed(ip("::1")));
        assert!(!lenient.is_allowed(ip("169.254.169.254")));

        assert!(matches!(Guard::new(&["10.0.0.0".to_owned()]), Err(SsrfError::InvalidNetwork(_))));
    }

    #[test]
    fn check_url_checks_scheme_host_and_literal_addresses() {
        let strict = Guard::new(&[]).expect("valid");
        strict.check_url("https://8.8.8.8/hook").expect("public literal");
        strict.check_url("http://[2606:4700:4700::1111]:8080/").expect("public v6 literal");
        for blocked in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:169.254.169.254]/latest/meta-data",
            "http://169.254.169.254/",
            "http://10.0.0.1:8080/",
            "http://0.0.0.0/",
            "http://localhost:3000/",
            "http://api.localhost/",
            "http://LOCALHOST./",
        ] {
            let error = strict.check_url(blocked).expect_err(blocked);
            assert!(matches!(error, SsrfError::Blocked { .. }), "{blocked}: {error}");
        }
        assert!(matches!(strict.check_url("ftp://8.8.8.8/"), Err(SsrfError::UnsupportedScheme(_))));
        assert!(matches!(strict.check_url("not a url"), Err(SsrfError::InvalidUrl(_))));
        assert!(matches!(strict.check_url("file:///etc/passwd"), Err(SsrfError::UnsupportedScheme(_))));

        let lenient = Guard::new(&["127.0.0.0/8".to_owned()]).expect("valid");
        lenient.check_url("http://127.0.0.1:9/").expect("allowed network");
        // `localhost` may also resolve to ::1; the resolver drops that address at delivery.
        lenient.check_url("http://localhost/").expect("loopback allowed");
    }

    #[test]
    fn host_names_are_judged_by_form_not_resolved() {
        let strict = Guard::new(&[]).expect("valid");
        // Svix accepts names that do not resolve (its SDK tests create this one); the
        // addresses are checked when a delivery connects.
        strict.check_url("https://example.svix.com/").expect("public name");
        strict.check_url("https://no-such-host.invalid-herald-test.com/x").expect("unresolved public name");
        for local in [
            "http://printer.local/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://router.home.arpa/",
            "http://intranet/",
            "http://db.corp:5432/",
            "http://box.localdomain/",
        ] {
            let error = strict.check_url(local).expect_err(local);
            assert!(matches!(error, SsrfError::LocalName(_)), "{local}: {error}");
        }
        // Allowing loopback does not open local names; allowing a private network does.
        let loopback = Guard::new(&["127.0.0.0/8".to_owned()]).expect("valid");
        assert!(matches!(loopback.check_url("http://billing.internal/"), Err(SsrfError::LocalName(_))));
        let private = Guard::new(&["10.0.0.0/8".to_owned()]).expect("valid");
        private.check_url("http://billing.internal/").expect("allowed private network");
        assert!(private.check_url("http://localhost/").is_err(), "loopback stays refused");
        assert_eq!(NameClass::of("example.com"), NameClass::Public);
        assert_eq!(NameClass::of("localhost.example.com"), NameClass::Public);
        assert_eq!(NameClass::of("a.b.localhost."), NameClass::Loopback);
        assert_eq!(NameClass::of("Foo.Internal"), NameClass::Local);
    }

    #[tokio::test]
    async fn resolver_drops_refused_addresses() {
        let strict = Arc::new(Guard::new(&[]).expect("valid"));
        let name: Name = "localhost".parse().expect("a name");
        let error = match strict.resolver().resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(error) => error,
        };
        assert!(error.downcast_ref::<SsrfError>().is_some(), "{error}");

        let lenient = Arc::new(Guard::new(&["127.0.0.0/8".to_owned()]).expect("valid"));
        let name: Name = "localhost".parse().expect("a name");
        let addrs: Vec<SocketAddr> = match lenient.resolver().resolve(name).await {
            Ok(addrs) => addrs.collect(),
            Err(error) => panic!("localhost resolves: {error}"),
        };
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|addr| addr.ip().is_ipv4() && addr.ip().is_loopback()), "{addrs:?}");
    }
}
