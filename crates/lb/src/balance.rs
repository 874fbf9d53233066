//! Target selection within a target group, pure: round-robin and least-outstanding-requests
//! over the routable targets ([`pick`]), the slow-start weight ramp ([`slow_start_weight`]),
//! and the sticky-session cookie ([`encode_sticky`], [`decode_sticky`]). The caller (the proxy)
//! gathers the candidates (healthy, not draining) and supplies the counter and the random
//! number, so every choice can be replayed in a test.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Algorithm;

/// Name of the stickiness cookie (ALB's).
pub const STICKY_COOKIE: &str = "AWSALB";

/// A routable target, as [`pick`] sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Requests in flight to it.
    pub outstanding: u64,
    /// Share in `(0, 1]`: 1 unless it is in slow start.
    pub weight: f64,
}

/// Slow start: the share of a target that has been healthy for `healthy_for`, ramping
/// linearly from 10 % to 100 % over `slow_start` (ALB ramps linearly too). Zero `slow_start`
/// is off (always 1).
pub fn slow_start_weight(healthy_for: Duration, slow_start: Duration) -> f64 {
    if slow_start.is_zero() || healthy_for >= slow_start {
        return 1.0;
    }
    let f = healthy_for.as_secs_f64() / slow_start.as_secs_f64();
    0.1 + 0.9 * f
}

/// Picks the index of a candidate, `None` only if there are none.
///
/// - Round robin: candidate `counter % n`, but one in slow start (weight < 1) is taken only
///   with probability `weight` (`random` uniform in `[0, 1)`), else the next one is tried.
/// - Least outstanding: the lowest `(outstanding + 1) / weight`; ties go to the first one at
///   or after `counter % n`, so equal targets still take turns.
pub fn pick(algorithm: Algorithm, cands: &[Candidate], counter: u64, random: f64) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    let start = (counter % n as u64) as usize;
    match algorithm {
        Algorithm::RoundRobin => (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| cands[i].weight >= 1.0 || random < cands[i].weight)
            .or(Some(start)),
        Algorithm::LeastOutstandingRequests => {
            let score = |c: &Candidate| (c.outstanding as f64 + 1.0) / c.weight.max(0.01);
            let mut best = start;
            for i in (0..n).map(|i| (start + i) % n) {
                if score(&cands[i]) < score(&cands[best]) {
                    best = i;
                }
            }
            Some(best)
        }
    }
}

/// The sticky cookie's value naming `target` of `group`: hex, so it is a valid cookie value
/// whatever the address looks like. Not secret (ALB encrypts it; a client that forges one
/// only chooses among targets it could reach anyway, and a stale one is ignored).
pub fn encode_sticky(group: &str, target: SocketAddr) -> String {
    format!("{group}|{target}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes [`encode_sticky`]'s value; `None` if it is not one.
pub fn decode_sticky(value: &str) -> Option<(String, SocketAddr)> {
    if !value.len().is_multiple_of(2) || value.len() > 512 {
        return None;
    }
    let bytes = (0..value.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let (group, addr) = text.split_once('|')?;
    Some((group.to_string(), addr.parse().ok()?))
}

/// The value of the [`STICKY_COOKIE`] in a request's `Cookie` header values, if any.
pub fn find_sticky_cookie<'a>(cookie_headers: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    cookie_headers
        .flat_map(|h| h.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == STICKY_COOKIE)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(outstanding: u64, weight: f64) -> Candidate {
        Candidate {
            outstanding,
            weight,
        }
    }

    #[test]
    fn round_robin_takes_turns() {
        let cands = [c(0, 1.0), c(0, 1.0), c(0, 1.0)];
        let picks: Vec<_> = (0..6)
            .map(|i| pick(Algorithm::RoundRobin, &cands, i, 0.5).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(pick(Algorithm::RoundRobin, &[], 0, 0.5), None);
    }

    #[test]
    fn round_robin_skips_slow_starters_by_chance() {
        let cands = [c(0, 0.2), c(0, 1.0)];
        assert_eq!(pick(Algorithm::RoundRobin, &cands, 0, 0.5), Some(1));
        assert_eq!(pick(Algorithm::RoundRobin, &cands, 0, 0.1), Some(0));
        // All in slow start and unlucky: still picks one.
        let all_slow = [c(0, 0.2), c(0, 0.2)];
        assert_eq!(pick(Algorithm::RoundRobin, &all_slow, 1, 0.9), Some(1));
    }

    #[test]
    fn least_outstanding() {
        let cands = [c(5, 1.0), c(1, 1.0), c(3, 1.0)];
        assert_eq!(
            pick(Algorithm::LeastOutstandingRequests, &cands, 0, 0.0),
            Some(1)
        );
        let tie = [c(1, 1.0), c(1, 1.0)];
        assert_eq!(
            pick(Algorithm::LeastOutstandingRequests, &tie, 1, 0.0),
            Some(1)
        );
        // A slow starter at 10 % counts as ten times as loaded.
        let slow = [c(0, 0.1), c(3, 1.0)];
        assert_eq!(
            pick(Algorithm::LeastOutstandingRequests, &slow, 0, 0.0),
            Some(1)
        );
    }

    #[test]
    fn slow_start_ramps() {
        let s = Duration::from_secs(100);
        assert_eq!(slow_start_weight(Duration::ZERO, Duration::ZERO), 1.0);
        assert!((slow_start_weight(Duration::ZERO, s) - 0.1).abs() < 1e-9);
        assert!((slow_start_weight(Duration::from_secs(50), s) - 0.55).abs() < 1e-9);
        assert_eq!(slow_start_weight(Duration::from_secs(100), s), 1.0);
    }

    #[test]
    fn sticky_cookie_round_trips() {
        let addr: SocketAddr = "[::1]:8080".parse().unwrap();
        let v = encode_sticky("web-1", addr);
        assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode_sticky(&v), Some(("web-1".to_string(), addr)));
        assert_eq!(decode_sticky("zz"), None);
        assert_eq!(decode_sticky("abc"), None);
        let header = format!("a=b; {STICKY_COOKIE}={v}; c=d");
        assert_eq!(
            find_sticky_cookie([header.as_str()].into_iter()),
            Some(v.as_str())
        );
        assert_eq!(find_sticky_cookie(["a=b"].into_iter()), None);
    }
}
