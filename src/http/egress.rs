//! Egress policy: which addresses haul may connect to, checked on the resolved address.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// Which addresses haul may connect to.
///
/// The check runs in the resolver, on every address a host name resolves to and on every
/// redirect hop, so neither DNS rebinding nor a redirect to `http://169.254.169.254/` gets
/// around it. Under `PublicOnly` haul also ignores proxy settings from the environment
/// (`HTTP_PROXY` and friends): the check must see the target, not the proxy.
///
/// ```
/// let config = haul::HttpConfig::default().egress(haul::EgressPolicy::PublicOnly);
/// assert_eq!(config.egress, haul::EgressPolicy::PublicOnly);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EgressPolicy {
    /// Any address (the library's default).
    #[default]
    Any,
    /// Only public unicast addresses: refuses loopback, private (RFC 1918, IPv6 ULA),
    /// link-local, CGNAT (100.64/10), cloud metadata (169.254.169.254, fd00:ec2::254),
    /// unspecified, multicast, broadcast, documentation and reserved ranges, and the same
    /// addresses mapped or embedded in IPv6.
    PublicOnly,
}

/// The error (inside an `io::Error` of kind `PermissionDenied`) a refused connection gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress policy refuses {host}: {address} is {class}")]
pub struct EgressRefused {
    /// The host as the URL named it.
    pub host: String,
    /// The first refused address it resolved to.
    pub address: IpAddr,
    /// Why that address is refused ("loopback", "private", ...).
    pub class: &'static str,
}

/// Why `ip` is not public, or `None` when it is.
pub(crate) fn non_public_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        (127, _, _) => "loopback",
        (10, _, _) | (192, 168, _) => "private",
        (172, b, _) if (16..32).contains(&b) => "private",
        (169, 254, _) => "link-local",
        (100, b, _) if (64..128).contains(&b) => "shared (CGNAT)",
        (0, _, _) => "unspecified",
        (192, 0, 0) => "reserved",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18 | 19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_class(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
    }
    if s[0] == 0x2002 {
        return v4_class(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])));
    }
    Some(match s[0] {
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => "cloud metadata",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        x if x & 0xfe00 == 0xfc00 => "private",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        // The rest of ::/8 (IPv4-compatible, discard-only and other reserved forms).
        x if x < 0x0100 => "reserved",
        _ => return None,
    })
}

/// ureq's default resolver, with the policy applied to what it returns.
pub(crate) struct PolicyResolver {
    inner: DefaultResolver,
    policy: EgressPolicy,
    /// Addresses given for some `host:port`s ([`HttpConfig::resolve`](crate::HttpConfig)).
    overrides: Vec<(String, u16, std::net::IpAddr)>,
}

impl PolicyResolver {
    pub(crate) fn new(
        policy: EgressPolicy,
        overrides: Vec<(String, u16, std::net::IpAddr)>,
    ) -> PolicyResolver {
        PolicyResolver {
            inner: DefaultResolver::default(),
            policy,
            overrides,
        }
    }

    /// The address given for `uri`'s host and port, if any.
    fn overridden(&self, uri: &ureq::http::Uri) -> Option<std::net::SocketAddr> {
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        })?;
        self.overrides
            .iter()
            .find(|(h, p, _)| *h == host && *p == port)
            .map(|(_, _, ip)| std::net::SocketAddr::new(*ip, port))
    }
}

impl fmt::Debug for PolicyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyResolver")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Resolver for PolicyResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = match self.overridden(uri) {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                addrs
            }
            None => self.inner.resolve(uri, config, timeout)?,
        };
        if self.policy == EgressPolicy::Any {
            return Ok(addrs);
        }
        // Refuse the whole host when any address is not public: connecting to the public
        // ones only would let a name that mixes both reach inside on a retry or a failover.
        for addr in addrs.iter() {
            if let Some(class) = non_public_class(addr.ip()) {
                let refused = EgressRefused {
                    host: uri.host().unwrap_or_default().to_owned(),
                    address: addr.ip(),
                    class,
                };
                log::warn!("{refused}");
                return Err(ureq::Error::Io(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    refused,
                )));
            }
        }
        Ok(addrs)
    }
}

/// The refusal inside `error`, if the egress policy caused it.
pub(crate) fn refusal(error: &ureq::Error) -> Option<&EgressRefused> {
    match error {
        ureq::Error::Io(io) => io.get_ref()?.downcast_ref::<EgressRefused>(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_addresses() {
        let class = |s: &str| non_public_class(s.parse().unwrap());
        for (addr, want) in [
            ("127.0.0.1", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("cloud metadata")),
            ("169.254.1.1", Some("link-local")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("100.127.255.255", Some("shared (CGNAT)")),
            ("0.0.0.0", Some("unspecified")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("reserved")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fd00:ec2::254", Some("cloud metadata")),
            ("fc00::1", Some("private")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private")),
            ("64:ff9b::a9fe:a9fe", Some("cloud metadata")),
            ("2002:c0a8:0101::", Some("private")),
            ("2001:db8::1", Some("documentation")),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("2606:4700:4700::1111", None),
            ("::ffff:8.8.8.8", None),
        ] {
            assert_eq!(class(addr), want, "{addr}");
        }
    }
}
