//! Where a deal's transfer may reach: public addresses only (invariant 2 and the DMZ). A
//! stranger's proposal names the URL; without this guard it could make the markets process
//! fetch from loopback, the private network behind it, link-local metadata services or
//! multicast, and learn what answers there from the deal's fate.
//!
//! Every address is checked where the connection is made: literal IPs in the URL and in every
//! redirect, and names after DNS resolution (so a name that resolves, or later re-resolves, to
//! a private address gets nowhere). Proxies from the environment are not used (a proxy would
//! connect on our behalf, past the check). Refusals never describe anything the process saw
//! inside: nothing inside is ever contacted.
//!
//! `[deals] transfer_allow` lets an operator open private ranges on purpose: networks
//! (`10.0.0.0/8`, `127.0.0.1`) allow those addresses however they are named; entries with a
//! port (`127.0.0.1:8080`) allow only URLs and redirects that name that address literally.
//! `nelumbo devnet` allows loopback, where its client serves deal data.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 3;

/// Private ranges an operator allows transfers to reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<(IpAddr, u8)>,
    sockets: Vec<SocketAddr>,
}

impl AllowList {
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in entries {
            let entry = entry.trim();
            if let Ok(socket) = SocketAddr::from_str(entry) {
                list.sockets.push(socket);
                continue;
            }
            let (ip, prefix) = match entry.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (entry, None),
            };
            let ip = IpAddr::from_str(ip).map_err(|_| {
                format!(
                    "[deals] transfer_allow: {entry:?} is not an address, a network (10.0.0.0/8) or an address with a port"
                )
            })?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    format!("[deals] transfer_allow: {entry:?} has a bad prefix length")
                })?,
            };
            list.networks.push((ip, prefix));
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.sockets.is_empty()
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|(net, prefix)| in_network(ip, *net, *prefix))
    }

    fn allows_socket(&self, socket: SocketAddr) -> bool {
        self.allows_ip(socket.ip()) || self.sockets.contains(&socket)
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Whether `ip` is a public unicast address: not unspecified, loopback, private, shared
/// (carrier NAT), link-local, multicast, broadcast, documentation, benchmarking or reserved,
/// for IPv4 and IPv6 alike (IPv6 forms that carry an IPv4 address are judged by it).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0; 4] {
        let [.., hi, lo] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    if segments[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x0100 && segments[1..4] == [0; 3]) // discard
        || segments[..6] == [0; 6]) // IPv4-compatible and other ::/96 forms
}

/// What transfers may reach, and the answer when they may not.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Arc<AllowList>,
}

/// The refusal for an address a transfer may not reach. It names only what the client gave.
fn refusal(what: &str) -> String {
    format!(
        "{what} is not a public address: this provider fetches deal data only from public addresses"
    )
}

impl Guard {
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
        }
    }

    /// Whether a connection to `socket` is allowed.
    pub fn allows(&self, socket: SocketAddr) -> bool {
        is_public(socket.ip()) || self.allow.allows_socket(socket)
    }

    /// Checks a URL before anything is sent: http(s), and a literal IP host must be allowed
    /// (names are checked when they are resolved).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| format!("the transfer URL {url:?} is not a URL: {e}"))?;
        self.check_parsed(&parsed)
    }

    fn check_parsed(&self, url: &reqwest::Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the transfer URL's scheme {:?} is not http or https",
                url.scheme()
            ));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("the transfer URL has no host".to_string()),
        };
        if self.allows(SocketAddr::new(ip, port)) {
            Ok(())
        } else {
            Err(refusal(&format!("the transfer URL's host {ip}")))
        }
    }

    /// An HTTP client whose every connection passes the guard: resolved names are filtered,
    /// literal hosts of redirects are checked, and no proxy is used.
    pub fn http_client(&self) -> reqwest::Result<reqwest::Client> {
        let for_redirects = self.clone();
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(15))
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow: self.allow.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                match for_redirects.check_parsed(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(why) => attempt.error(format!("a redirect was refused: {why}")),
                }
            }))
            .build()
    }
}

/// Resolves names and keeps only the addresses the guard allows.
#[derive(Debug)]
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // The port here is a placeholder (the URL's replaces it): only whole networks of
            // the allow list apply to names.
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| is_public(a.ip()) || allow.allows_ip(a.ip()))
                .collect();
            if kept.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    refusal(&format!("the transfer URL's host {host}")).into();
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "ff05::1:3",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "2001:db8::1",
            "100::1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(is_public(ip(public)), "{public} counted as private");
        }
    }

    #[test]
    fn the_allow_list_opens_networks_or_single_sockets() {
        let list = AllowList::parse(&["10.0.0.0/8".into(), "::1".into(), "127.0.0.1:8080".into()])
            .expect("parse");
        let guard = Guard::new(list);
        assert!(guard.allows("10.9.8.7:443".parse().expect("socket")));
        assert!(guard.allows("[::1]:1".parse().expect("socket")));
        assert!(guard.allows("127.0.0.1:8080".parse().expect("socket")));
        assert!(!guard.allows("127.0.0.1:8081".parse().expect("socket")));
        assert!(!guard.allows("192.168.0.1:80".parse().expect("socket")));
        assert!(guard.allows("93.184.216.34:80".parse().expect("socket")));
        for bad in ["10.0.0.0/33", "not an address", "::1/129"] {
            assert!(AllowList::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_with_literal_private_hosts_are_refused_before_any_request() {
        let guard = Guard::new(AllowList::default());
        for url in [
            "http://127.0.0.1:9/data",
            "http://[::1]:9/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "https://10.0.0.1/x",
        ] {
            let error = guard.check_url(url).expect_err(url);
            assert!(error.contains("not a public address"), "{url}: {error}");
        }
        assert!(guard.check_url("ftp://example.com/x").is_err());
        assert!(guard.check_url("http://example.com/data.car").is_ok());
        assert!(guard.check_url("http://93.184.216.34/data.car").is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_get_nowhere() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver {
            allow: Arc::new(AllowList::default()),
        };
        let name = reqwest::dns::Name::from_str("localhost").expect("name");
        let error = match resolver.resolve(name).await {
            Ok(addrs) => panic!("localhost resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("not a public address"), "{error}");
        let allowing = GuardedResolver {
            allow: Arc::new(AllowList::parse(&["127.0.0.0/8".into()]).expect("parse")),
        };
        let name = reqwest::dns::Name::from_str("localhost").expect("name");
        let found: Vec<SocketAddr> = allowing.resolve(name).await.expect("allowed").collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()), "{found:?}");
    }
}
