//! The values a container definition may put in its `/etc/resolv.conf` (`dnsServers`,
//! `dnsSearchDomains`): one set of rules for RegisterTaskDefinition, which refuses the
//! others, and the agent, which writes the file.

use std::net::IpAddr;

/// Longest search domain ECS accepts (its pattern `^[a-zA-Z0-9-.]{0,253}[a-zA-Z0-9]$`).
pub const MAX_SEARCH_DOMAIN_LEN: usize = 254;

/// A `dnsServers` entry: an IPv4 or IPv6 address, nothing around it.
///
/// # Errors
/// Why `s` is not one (the message quotes it, escaped).
pub fn dns_server(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("dnsServers: {s:?} is not an IP address."))
}

/// Checks a `dnsSearchDomains` entry against ECS's pattern
/// `^[a-zA-Z0-9-.]{0,253}[a-zA-Z0-9]$`: letters, digits, `-` and `.`, up to 254
/// characters, ending in a letter or digit (so no whitespace or control characters can
/// reach the file).
///
/// # Errors
/// Why `s` does not match (the message quotes it, escaped).
pub fn search_domain(s: &str) -> Result<(), String> {
    let ok = (1..=MAX_SEARCH_DOMAIN_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "dnsSearchDomains: {s:?} is not a domain name (letters, digits, '-' and '.', up to {MAX_SEARCH_DOMAIN_LEN} characters, ending in a letter or digit)."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_servers_are_bare_ip_addresses() {
        assert_eq!(dns_server("10.0.0.2").unwrap().to_string(), "10.0.0.2");
        assert_eq!(dns_server("fd00::53").unwrap().to_string(), "fd00::53");
        for bad in [
            "",
            " 10.0.0.2",
            "10.0.0.2\nnameserver 1.1.1.1",
            "dns.local",
            "10.0.0.256",
        ] {
            assert!(dns_server(bad).is_err(), "{bad:?}");
        }
        assert!(dns_server("a\nb").unwrap_err().contains("\\n"), "escaped");
    }

    #[test]
    fn search_domains_follow_the_ecs_pattern() {
        for good in ["corp.local", "a", "x-1.example.com", "9"] {
            search_domain(good).unwrap();
        }
        let long = "a".repeat(MAX_SEARCH_DOMAIN_LEN);
        search_domain(&long).unwrap();
        for bad in [
            "",
            "corp.local.",
            "trailing-",
            "sp ace",
            "tab\t",
            "new\nline",
            "ünï.code",
            &"a".repeat(MAX_SEARCH_DOMAIN_LEN + 1),
        ] {
            assert!(search_domain(bad).is_err(), "{bad:?}");
        }
    }
}
