//! Egress policy for URLs that users supply and that something of ours (MindsDB, on our
//! behalf) will call: an agent model's `base_url`, for one (issue 13, "Egress").
//!
//! Only `http` and `https` are accepted, and a host that is an IP address the platform's own
//! network answers on is refused: loopback, link-local (the cloud metadata address among
//! them), private, shared (carrier-grade NAT), unspecified, broadcast and multicast, in IPv4
//! and IPv6 alike. The URL is parsed the WHATWG way, so an address in disguise comes out as
//! the address a client would reach: `http://2852039166/`, `http://0xa9fea9fe/` and
//! `http://0251.0376.0251.0376/` are all `169.254.169.254`, and an IPv6 host embedding an IPv4
//! one (`[::ffff:169.254.169.254]`, `[64:ff9b::a9fe:a9fe]`) is judged by the IPv4 address.
//!
//! Host names are not resolved: MindsDB resolves them when it calls, not us, so a name that
//! resolves to a private address passes here. That gap is closed by the network, not by this
//! check: the chart's egress NetworkPolicy for MindsDB (`mindsdb.egress` in the values). A
//! service that calls the URL itself resolves the name and checks every address it got with
//! [`EgressPolicy::check_resolved`] before connecting (the workflow's remote nodes).
//!
//! An allow-list (`app.egress.allow` of the service that validates) lets exact host names,
//! addresses and CIDR ranges through anyway; the development launcher and the test kit allow
//! loopback, where the local model listens.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Why a URL or an allow-list entry was refused; the text names the host and the reason, and
/// how to allow it when it can be allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// An allow-list entry that is neither a host name, an address nor a CIDR range.
    #[error("'{0}' is not a host name, an IP address or a CIDR range")]
    BadAllowEntry(String),
    /// A host that is an address (or a name) of a refused kind.
    #[error("{host} is {kind} address; allow it with app.egress.allow")]
    Refused {
        /// The host as written in the URL (normalised).
        host: String,
        /// The kind of address, with its article ("a link-local", "a loopback").
        kind: &'static str,
    },
    /// A URL that carries user info (`user:password@`), which clients parse differently.
    #[error("must not contain user info ('@' before the host)")]
    UserInfo,
    /// Not `http` or `https`.
    #[error("scheme '{0}' is not allowed: use http or https")]
    Scheme(String),
    /// Not a URL with a host.
    #[error("is not a valid http(s) url: {0}")]
    Unparsable(String),
}

/// The `egress` section of a service's `app` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Host names (exact, case-insensitive), IP addresses and CIDR ranges (`10.1.0.0/16`)
    /// that user-supplied URLs may name although they are loopback, private or link-local.
    pub allow: Vec<String>,
}

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allow {
    Host(String),
    Net(IpAddr, u8),
}

/// The compiled policy: which hosts a user-supplied URL may name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<Allow>,
}

impl EgressPolicy {
    /// Compiles `config`; the error names the first entry that is not a host, an address or
    /// a CIDR range.
    pub fn new(config: &EgressConfig) -> Result<Self, EgressError> {
        let mut allow = Vec::with_capacity(config.allow.len());
        for entry in &config.allow {
            allow.push(parse_allow(entry)?);
        }
        Ok(Self { allow })
    }

    /// Checks that `raw` is an `http(s)` URL whose host this policy lets MindsDB call.
    pub fn check_url(&self, raw: &str) -> Result<(), EgressError> {
        // Backslashes and spaces are read differently by different URL parsers (a WHATWG
        // parser takes `\` for `/`, Python's urllib does not): refused, not interpreted.
        if raw.contains(['\\', ' ', '\t', '\r', '\n']) || raw.chars().any(char::is_control) {
            return Err(EgressError::Unparsable("spaces, control characters and '\\' are not allowed".to_owned()));
        }
        let url = url::Url::parse(raw).map_err(|e| EgressError::Unparsable(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Scheme(url.scheme().chars().take(16).collect()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EgressError::UserInfo);
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => self.check_name(name),
            None => Err(EgressError::Unparsable("no host".to_owned())),
        }
    }

    fn check_name(&self, name: &str) -> Result<(), EgressError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if self.allow.iter().any(|a| matches!(a, Allow::Host(h) if *h == name)) {
            return Ok(());
        }
        // Names that are fixed aliases of refused addresses, whatever DNS says.
        let kind = if name == "localhost" || name.ends_with(".localhost") {
            Some("a loopback")
        } else if name == "metadata.google.internal" || name == "metadata" {
            Some("a link-local (cloud metadata)")
        } else {
            None
        };
        match kind {
            Some(kind) => Err(EgressError::Refused { host: name, kind }),
            None => Ok(()),
        }
    }

    /// Checks one address that the host name `host` resolved to, for a caller that resolves
    /// names itself (the workflow service's remote nodes, which connect from our own pods): a
    /// name on the allow-list passes whatever it resolves to; otherwise the address follows the
    /// rules of an address written in a URL.
    pub fn check_resolved(&self, host: &str, ip: IpAddr) -> Result<(), EgressError> {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if self.allow.iter().any(|a| matches!(a, Allow::Host(h) if *h == name)) {
            return Ok(());
        }
        self.check_ip(ip)
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), EgressError> {
        // An IPv6 address that carries an IPv4 one reaches that IPv4 address.
        let effective = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allows(ip) || self.allows(effective) {
            return Ok(());
        }
        match classify(effective) {
            Some(kind) => Err(EgressError::Refused { host: effective.to_string(), kind }),
            None => Ok(()),
        }
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|a| match a {
            Allow::Net(net, len) => in_net(ip, *net, *len),
            Allow::Host(h) => h.parse::<IpAddr>().is_ok_and(|x| x == ip),
        })
    }
}

/// The refused kind of `ip`, with its article, or `None` when it may be called.
fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback")
            } else if v4.is_link_local() {
                Some("a link-local")
            } else if v4.is_private() {
                Some("a private")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a shared (carrier-grade NAT)")
            } else if a == 0 {
                Some("an unspecified")
            } else if v4.is_multicast() {
                Some("a multicast")
            } else if v4.is_broadcast() || a >= 240 {
                Some("a reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback")
            } else if v6.is_unspecified() {
                Some("an unspecified")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a private (unique local)")
            } else if v6.is_multicast() {
                Some("a multicast")
            } else if first & 0xffc0 == 0xfec0 {
                Some("a site-local")
            } else {
                None
            }
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`)
/// or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let mapped = s[..5] == [0; 5] && s[5] == 0xffff;
    // `::` and `::1` are IPv6's own unspecified and loopback addresses, not compatible ones.
    let compatible = s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1);
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (mapped || compatible || nat64).then_some(tail)
}

fn parse_allow(entry: &str) -> Result<Allow, EgressError> {
    let bad = || EgressError::BadAllowEntry(entry.chars().take(64).collect());
    let e = entry.trim();
    if let Some((net, len)) = e.split_once('/') {
        let net: IpAddr = net.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        return if len <= max { Ok(Allow::Net(net, len)) } else { Err(bad()) };
    }
    if let Ok(ip) = e.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(Allow::Net(ip, len));
    }
    let host = e.trim_end_matches('.').to_ascii_lowercase();
    let label_ok =
        |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(Allow::Host(host))
    } else {
        Err(bad())
    }
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> EgressPolicy {
        EgressPolicy::new(&EgressConfig { allow: allow.iter().map(|s| (*s).to_owned()).collect() }).unwrap()
    }

    #[test]
    fn refuses_internal_addresses_in_every_disguise() {
        let p = policy(&[]);
        for (url, host, kind) in [
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254", "link-local"),
            ("http://2852039166/", "169.254.169.254", "link-local"),
            ("http://0xa9fea9fe/", "169.254.169.254", "link-local"),
            ("http://0251.0376.0251.0376/", "169.254.169.254", "link-local"),
            ("http://169.254.169.254./", "169.254.169.254", "link-local"),
            ("http://[::ffff:169.254.169.254]/", "169.254.169.254", "link-local"),
            ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254", "link-local"),
            ("http://[64:ff9b::a9fe:a9fe]/", "169.254.169.254", "link-local"),
            ("http://[fe80::1]/", "fe80::1", "link-local"),
            ("http://127.0.0.1:18080/v1", "127.0.0.1", "loopback"),
            ("http://127.1/", "127.0.0.1", "loopback"),
            ("http://[::1]:8080/", "::1", "loopback"),
            ("http://localhost:8080/", "localhost", "loopback"),
            ("http://LOCALHOST./", "localhost", "loopback"),
            ("http://api.localhost/", "api.localhost", "loopback"),
            ("http://metadata.google.internal/", "metadata.google.internal", "link-local"),
            ("https://10.0.0.5/", "10.0.0.5", "private"),
            ("https://172.16.3.4/", "172.16.3.4", "private"),
            ("https://192.168.1.1/", "192.168.1.1", "private"),
            ("https://[fd00::1]/", "fd00::1", "private"),
            ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
            ("http://0/", "0.0.0.0", "unspecified"),
            ("http://[::]/", "::", "unspecified"),
            ("http://224.0.0.1/", "224.0.0.1", "multicast"),
            ("http://[ff02::1]/", "ff02::1", "multicast"),
            ("http://100.100.100.200/", "100.100.100.200", "carrier-grade"),
        ] {
            match p.check_url(url) {
                Err(e @ EgressError::Refused { .. }) => {
                    let text = e.to_string();
                    assert!(text.starts_with(&format!("{host} is ")), "{url}: {text}");
                    assert!(text.contains(kind) && text.ends_with("allow it with app.egress.allow"), "{url}: {text}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(
            p.check_url("http://2852039166/").unwrap_err().to_string(),
            "169.254.169.254 is a link-local address; allow it with app.egress.allow"
        );
    }

    #[test]
    fn public_hosts_and_names_pass() {
        let p = policy(&[]);
        for ok in [
            "https://api.openai.com/v1",
            "http://8.8.8.8/",
            "https://[2606:4700::1111]/",
            "http://local-model:18080/v1",
            "http://172.32.0.1/",
        ] {
            p.check_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn only_http_without_user_info() {
        let p = policy(&[]);
        assert!(matches!(p.check_url("file:///etc/passwd"), Err(EgressError::Scheme(_))));
        assert!(matches!(p.check_url("gopher://x/"), Err(EgressError::Scheme(_))));
        assert!(matches!(p.check_url("http://a@8.8.8.8/"), Err(EgressError::UserInfo)));
        assert!(matches!(p.check_url("http://127.0.0.1\\@example.com/"), Err(EgressError::Unparsable(_))));
        assert!(matches!(p.check_url("not a url"), Err(EgressError::Unparsable(_))));
        assert!(matches!(p.check_url("http://"), Err(EgressError::Unparsable(_))));
    }

    #[test]
    fn allow_list_lets_named_hosts_and_ranges_through() {
        let p = policy(&["127.0.0.0/8", "::1", "localhost", "10.1.0.0/16", "[fd00::5]"]);
        for ok in [
            "http://127.0.0.1:18080/v1",
            "http://127.1/",
            "http://[::1]/",
            "http://localhost/",
            "http://10.1.2.3/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::5]/",
        ] {
            p.check_url(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(p.check_url("http://10.2.0.1/").is_err());
        // Resolved addresses follow the same rules as written ones, unless the name is allowed.
        assert!(p.check_resolved("a.example", "10.1.9.9".parse().unwrap()).is_ok());
        assert!(p.check_resolved("a.example", "169.254.169.254".parse().unwrap()).is_err());
        assert!(p.check_resolved("a.example", "::ffff:169.254.169.254".parse().unwrap()).is_err());
        assert!(p.check_resolved("LOCALHOST.", "10.9.9.9".parse().unwrap()).is_ok());
        assert!(policy(&[]).check_resolved("a.example", "8.8.8.8".parse().unwrap()).is_ok());
        assert!(policy(&[]).check_resolved("a.example", "127.0.0.1".parse().unwrap()).is_err());
        assert!(p.check_url("http://169.254.169.254/").is_err());
        assert!(p.check_url("http://api.localhost/").is_err());
        for bad in ["10.0.0.0/33", "not a host!", "", "fe80::/200", "a..b"] {
            assert!(
                EgressPolicy::new(&EgressConfig { allow: vec![bad.to_owned()] }).is_err(),
                "{bad} should not compile"
            );
        }
    }
}
