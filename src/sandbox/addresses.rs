//! Which addresses the guest's HTTP may reach when private ones are not
//! allowed: none in the IANA IPv4 and IPv6 special-purpose registries that
//! is not globally reachable (loopback, private, shared, link-local,
//! documentation, benchmarking, reserved, discard, ...), no multicast, no
//! cloud metadata address, and none of this machine's own interfaces (a
//! service bound to 0.0.0.0 answers on them, whatever range they are in).
//! IPv6 forms that carry an IPv4 address (mapped, compatible, translated,
//! NAT64, 6to4, Teredo) are judged by the IPv4 address they carry.
//!
//! Hand-written: std's `is_global` is unstable, the crates that copy it do
//! not look inside 6to4 or Teredo, and none says *why* an address is
//! refused, which the error message needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

const METADATA: &str = "a cloud metadata address";

/// Most specific first: the first match gives the reason.
const V4_REFUSED: &[(Ipv4Net, &str)] = &[
    (v4(169, 254, 169, 254, 32), METADATA),
    (v4(100, 100, 100, 200, 32), METADATA),
    (v4(0, 0, 0, 0, 8), "a \"this network\" address"),
    (v4(10, 0, 0, 0, 8), "a private address"),
    (
        v4(100, 64, 0, 0, 10),
        "a shared (carrier-grade NAT) address",
    ),
    (v4(127, 0, 0, 0, 8), "a loopback address"),
    (v4(169, 254, 0, 0, 16), "a link-local address"),
    (v4(172, 16, 0, 0, 12), "a private address"),
    (v4(192, 0, 0, 0, 24), "an IETF protocol assignment"),
    (v4(192, 0, 2, 0, 24), "a documentation address"),
    (v4(192, 88, 99, 0, 24), "a 6to4 relay anycast address"),
    (v4(192, 168, 0, 0, 16), "a private address"),
    (v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4(198, 51, 100, 0, 24), "a documentation address"),
    (v4(203, 0, 113, 0, 24), "a documentation address"),
    (v4(224, 0, 0, 0, 4), "a multicast address"),
    (v4(240, 0, 0, 0, 4), "a reserved address"),
];

const V6_REFUSED: &[(Ipv6Net, &str)] = &[
    (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), METADATA),
    (v6([0; 8], 128), "the unspecified address"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "a loopback address"),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "a local-use NAT64 address",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "a discard-only address",
    ),
    (
        v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64),
        "a dummy-prefix address",
    ),
    (
        v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),
        "a benchmarking address",
    ),
    (
        v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),
        "a deprecated ORCHID address",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "a documentation address",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "a documentation address",
    ),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "a segment-routing address",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "a private (unique local) address",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "a link-local address",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "a site-local address",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "a multicast address"),
];

fn v4_at(s: &[u16; 8], i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        (s[i] >> 8) as u8,
        s[i] as u8,
        (s[i + 1] >> 8) as u8,
        s[i + 1] as u8,
    )
}

/// The IPv4 addresses an IPv6 address carries, by the form that carries them.
fn embedded_v4(ip: Ipv6Addr) -> Vec<(&'static str, Ipv4Addr)> {
    let s = ip.segments();
    let zero = |r: std::ops::Range<usize>| s[r].iter().all(|x| *x == 0);
    if zero(0..5) && s[5] == 0xffff {
        vec![("IPv4-mapped", v4_at(&s, 6))]
    } else if zero(0..6) {
        // `::` and `::1` are matched before this is asked.
        vec![("IPv4-compatible", v4_at(&s, 6))]
    } else if zero(0..4) && s[4] == 0xffff && s[5] == 0 {
        vec![("IPv4-translated", v4_at(&s, 6))]
    } else if s[0] == 0x64 && s[1] == 0xff9b && zero(2..6) {
        vec![("NAT64", v4_at(&s, 6))]
    } else if s[0] == 0x2002 {
        vec![("6to4", v4_at(&s, 1))]
    } else if s[0] == 0x2001 && s[1] == 0 {
        let client = v4_at(&s, 6);
        vec![
            ("Teredo server", v4_at(&s, 2)),
            ("Teredo client", Ipv4Addr::from(!u32::from(client))),
        ]
    } else {
        Vec::new()
    }
}

/// Why an address is not public, if it is not (this machine's own
/// addresses aside: see [`HostAddresses`]).
pub fn non_public_reason(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(a) => V4_REFUSED
            .iter()
            .find(|(net, _)| net.contains(&a))
            .map(|(_, why)| why.to_string())
            .or_else(|| a.is_broadcast().then(|| "the broadcast address".into())),
        IpAddr::V6(a) => {
            if let Some((_, why)) = V6_REFUSED.iter().find(|(net, _)| net.contains(&a)) {
                return Some(why.to_string());
            }
            embedded_v4(a).into_iter().find_map(|(form, inner)| {
                non_public_reason(IpAddr::V4(inner))
                    .map(|why| format!("an {form} form of {inner}, {why}"))
            })
        }
    }
}

/// This machine's own interface addresses, read again at most every few
/// seconds (interfaces come and go; reading them costs a syscall).
pub struct HostAddresses {
    cached: Mutex<Option<(Instant, Vec<IpAddr>)>>,
}

const HOST_ADDRESSES_TTL: Duration = Duration::from_secs(5);

impl HostAddresses {
    pub const fn new() -> Self {
        HostAddresses {
            cached: Mutex::new(None),
        }
    }

    /// Whether `ip` (or the IPv4 address it carries) is one of this
    /// machine's.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < HOST_ADDRESSES_TTL);
        if !fresh {
            let addrs = match if_addrs::get_if_addrs() {
                Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list this machine's addresses");
                    Vec::new()
                }
            };
            *cached = Some((Instant::now(), addrs));
        }
        let own = cached.as_ref().map(|(_, a)| a.as_slice()).unwrap_or(&[]);
        let mut candidates = vec![ip];
        if let IpAddr::V6(v6) = ip {
            candidates.extend(embedded_v4(v6).into_iter().map(|(_, a)| IpAddr::V4(a)));
        }
        candidates.iter().any(|c| own.contains(c))
    }
}

impl Default for HostAddresses {
    fn default() -> Self {
        Self::new()
    }
}

/// The process-wide list of this machine's addresses.
pub fn host_addresses() -> &'static HostAddresses {
    static HOST: HostAddresses = HostAddresses::new();
    &HOST
}

/// Why the guest may not reach `ip` when private addresses are not allowed.
/// This machine's own addresses are named as such (whatever range they are
/// in), loopback aside.
pub fn refusal(ip: IpAddr) -> Option<String> {
    let reason = non_public_reason(ip);
    if reason.as_deref().is_some_and(|r| r.contains("loopback")) {
        return reason;
    }
    if host_addresses().contains(ip) {
        return Some("an address of this machine".to_string());
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(a: &str) -> Option<String> {
        non_public_reason(a.parse().expect("an address"))
    }

    #[test]
    fn special_purpose_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "198.19.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "2001:2::1",
            "64:ff9b:1::1",
        ] {
            assert!(reason(a).is_some(), "{a} should be refused");
        }
        assert_eq!(reason("169.254.169.254").as_deref(), Some(METADATA));
        assert_eq!(reason("fd00:ec2::254").as_deref(), Some(METADATA));
        for a in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert_eq!(reason(a), None, "{a} is public");
        }
    }

    #[test]
    fn ipv6_forms_are_judged_by_the_ipv4_they_carry() {
        let cases = [
            ("::ffff:127.0.0.1", "IPv4-mapped"),
            ("::10.1.2.3", "IPv4-compatible"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::ffff:0:169.254.169.254", "IPv4-translated"),
            ("64:ff9b::a00:1", "NAT64"),
            ("2002:c0a8:0101::1", "6to4"),
            // Teredo: server 1.2.3.4, client 10.0.0.1 stored inverted.
            ("2001:0:102:304:0:0:f5ff:fffe", "Teredo client"),
            ("2001:0:7f00:1::1", "Teredo server"),
        ];
        for (a, form) in cases {
            let why = reason(a).unwrap_or_else(|| panic!("{a} should be refused"));
            assert!(why.contains(form), "{a}: {why}");
        }
        assert_eq!(reason("::ffff:1.1.1.1"), None);
        assert_eq!(reason("2002:0101:0101::1"), None);
        assert_eq!(reason("64:ff9b::101:101"), None);
    }

    #[test]
    fn this_machines_addresses_are_its_own() {
        let host = HostAddresses::new();
        assert!(host.contains("127.0.0.1".parse().expect("ip")));
        assert!(host.contains("::ffff:127.0.0.1".parse().expect("ip")));
        assert!(!host.contains("1.1.1.1".parse().expect("ip")));
        let own = if_addrs::get_if_addrs()
            .expect("this machine's interfaces")
            .into_iter()
            .map(|i| i.ip())
            .find(|ip| !ip.is_loopback())
            .expect("this test needs a non-loopback interface, and this machine has none");
        assert_eq!(
            refusal(own).as_deref(),
            Some("an address of this machine"),
            "{own} is this machine's and must be refused"
        );
    }
}
