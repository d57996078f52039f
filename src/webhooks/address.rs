//! Where webhooks may not go (SSRF protection): a receiver's host is resolved by Huddle itself,
//! and loopback, private, link-local (the cloud metadata services among them), shared,
//! multicast and reserved addresses are refused, at registration and again at every delivery
//! (a name may resolve elsewhere later), unless `WEBHOOK_ALLOW_PRIVATE=true`. Redirects are
//! never followed, so a receiver cannot bounce a delivery to such an address either.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether a delivery may not go to `ip`.
pub fn is_refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_refused_v4(v4),
            None => is_refused_v6(v6),
        },
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, with 169.254.169.254 (metadata)
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, 192.0.0/24
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, 198.18/15
        || a >= 240 // reserved
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7 (fd00:ec2::254: metadata)
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        // NAT64 (64:ff9b::/96) reaches IPv4: judge the address it embeds.
        || (ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && {
            let s = ip.segments();
            is_refused_v4(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ))
        })
}

/// Why a URL's host may not receive deliveries, if it may not: an address literal that is
/// refused, or a name that does not resolve or resolves to a refused address.
pub async fn check_host(host: &str, port: u16, allow_private: bool) -> Result<(), String> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return if allow_private || !is_refused(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is a loopback, private or reserved address"))
        };
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} does not resolve"));
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| is_refused(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, a loopback, private or reserved address",
                bad.ip()
            ));
        }
    }
    Ok(())
}

/// The deliveries' resolver: the system's, without the refused addresses (a name with nothing
/// else fails to resolve, and the delivery fails with it).
#[derive(Clone, Copy, Debug)]
pub struct Guarded {
    pub allow_private: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_refused(a.ip()))
                .collect();
            if found.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} has no address a webhook may be delivered to").into();
                return Err(err);
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver, as reqwest takes it.
pub fn resolver(allow_private: bool) -> Arc<Guarded> {
    Arc::new(Guarded { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_are_not() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_refused(refused.parse().unwrap()), "{refused}");
        }
        for allowed in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_refused(allowed.parse().unwrap()), "{allowed}");
        }
    }

    #[tokio::test]
    async fn hosts_are_checked_by_what_they_resolve_to() {
        assert!(check_host("127.0.0.1", 80, false).await.is_err());
        assert!(check_host("[::1]", 80, false).await.is_err());
        assert!(check_host("localhost", 80, false).await.is_err());
        assert!(check_host("127.0.0.1", 80, true).await.is_ok());
        assert!(check_host("localhost", 80, true).await.is_ok());
        assert!(check_host("no-such-host.invalid", 80, true).await.is_err());
    }
}
