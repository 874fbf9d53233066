//! Request routing, pure: which [`Action`] a listener takes for a request ([`Router`]), ALB's
//! `*`/`?` wildcard matching ([`wildcard_match`]), and the weighted choice of a target group
//! in a forward action given a random number ([`choose_weighted`]), so every decision can be
//! replayed in a unit test.

use http::HeaderMap;

use crate::config::{Action, Condition, ListenerConfig, RuleConfig, WeightedTargetGroup};

/// The parts of a request that rules look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Host without the port (from `Host` or the HTTP/2 `:authority`), if any.
    pub host: Option<&'a str>,
    /// Path without the query.
    pub path: &'a str,
    /// All headers.
    pub headers: &'a HeaderMap,
}

/// A listener's rules, sorted by priority, ready to match requests.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Vec<RuleConfig>,
    default_action: Action,
}

impl Router {
    /// Sorts the listener's rules by priority; patterns of case-insensitive conditions are
    /// lowercased once here.
    pub fn new(listener: &ListenerConfig) -> Router {
        let mut rules = listener.rules.clone();
        rules.sort_by_key(|r| r.priority);
        for r in &mut rules {
            for c in &mut r.conditions {
                match c {
                    Condition::HostHeader { values } | Condition::HttpHeader { values, .. } => {
                        values.iter_mut().for_each(|v| *v = v.to_ascii_lowercase());
                    }
                    Condition::PathPattern { .. } | Condition::HttpRequestMethod { .. } => {}
                }
            }
        }
        Router {
            rules,
            default_action: listener.default_action.clone(),
        }
    }

    /// The listener's default action (all a TCP listener has).
    pub fn default_action(&self) -> &Action {
        &self.default_action
    }

    /// The action of the first rule whose conditions all hold, else the default action.
    pub fn route(&self, req: &RequestInfo<'_>) -> &Action {
        self.rules
            .iter()
            .find(|r| r.conditions.iter().all(|c| condition_holds(c, req)))
            .map_or(&self.default_action, |r| &r.action)
    }
}

fn condition_holds(c: &Condition, req: &RequestInfo<'_>) -> bool {
    match c {
        Condition::PathPattern { values } => values.iter().any(|p| wildcard_match(p, req.path)),
        Condition::HostHeader { values } => req.host.is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            values.iter().any(|p| wildcard_match(p, &h))
        }),
        Condition::HttpHeader { name, values } => req
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                let v = v.to_ascii_lowercase();
                values.iter().any(|p| wildcard_match(p, &v))
            }),
        Condition::HttpRequestMethod { values } => values.iter().any(|m| m == req.method),
    }
}

/// ALB wildcard matching over the whole of `text`: `*` matches any run of characters (empty
/// included), `?` exactly one; everything else matches itself. Linear-time (greedy with one
/// backtrack point), so a hostile pattern cannot make it slow.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Picks a target group by weight. `random` is a uniformly random `u32` (an input so that
/// tests choose it); groups of weight 0 are never chosen. `None` only if all weights are 0.
pub fn choose_weighted(groups: &[WeightedTargetGroup], random: u32) -> Option<&str> {
    let total: u64 = groups.iter().map(|g| u64::from(g.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = u64::from(random) % total;
    for g in groups {
        let w = u64::from(g.weight);
        if point < w {
            return Some(&g.name);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("/api/*", "/api/"));
        assert!(wildcard_match("/api/*", "/api/v1/x"));
        assert!(!wildcard_match("/api/*", "/api"));
        assert!(wildcard_match("/img/*.png", "/img/a/b.png"));
        assert!(!wildcard_match("/img/*.png", "/img/a/b.jpg"));
        assert!(wildcard_match("/v?/x", "/v2/x"));
        assert!(!wildcard_match("/v?/x", "/v10/x"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("*.example.com", "a.b.example.com"));
        assert!(!wildcard_match("/Api", "/api"));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
    }

    fn listener() -> ListenerConfig {
        ListenerConfig {
            tls: None,
            bind: "127.0.0.1:80".parse().unwrap(),
            protocol: crate::config::ListenerProtocol::Http,
            rules: vec![
                RuleConfig {
                    priority: 20,
                    conditions: vec![Condition::PathPattern {
                        values: vec!["/api/*".into()],
                    }],
                    action: Action::forward("api"),
                },
                RuleConfig {
                    priority: 10,
                    conditions: vec![Condition::HostHeader {
                        values: vec!["Admin.*".into()],
                    }],
                    action: Action::fixed(200, "admin"),
                },
                RuleConfig {
                    priority: 30,
                    conditions: vec![
                        Condition::HttpHeader {
                            name: "x-canary".into(),
                            values: vec!["YES".into()],
                        },
                        Condition::HttpRequestMethod {
                            values: vec!["GET".into()],
                        },
                    ],
                    action: Action::forward("canary"),
                },
            ],
            default_action: Action::fixed(404, "none"),
        }
    }

    #[test]
    fn rules_in_priority_order() {
        let r = Router::new(&listener());
        let empty = HeaderMap::new();
        let req = |method, host, path, headers| RequestInfo {
            method,
            host,
            path,
            headers,
        };
        assert_eq!(
            r.route(&req("GET", Some("x"), "/api/1", &empty)),
            &Action::forward("api")
        );
        // Priority 10 (host) beats 20 (path); host matching ignores case.
        assert_eq!(
            r.route(&req("GET", Some("admin.example.com"), "/api/1", &empty)),
            &Action::fixed(200, "admin")
        );
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", HeaderValue::from_static("yes"));
        assert_eq!(
            r.route(&req("GET", None, "/", &canary)),
            &Action::forward("canary")
        );
        assert_eq!(
            r.route(&req("POST", None, "/", &canary)),
            &Action::fixed(404, "none")
        );
        assert_eq!(
            r.route(&req("GET", None, "/", &empty)),
            &Action::fixed(404, "none")
        );
    }

    #[test]
    fn weighted_choice() {
        let g = |name: &str, weight| WeightedTargetGroup {
            name: name.into(),
            weight,
        };
        let groups = [g("a", 1), g("b", 0), g("c", 3)];
        assert_eq!(choose_weighted(&groups, 0), Some("a"));
        assert_eq!(choose_weighted(&groups, 1), Some("c"));
        assert_eq!(choose_weighted(&groups, 3), Some("c"));
        assert_eq!(choose_weighted(&groups, 4), Some("a"));
        let counts = (0..4000u32).fold([0; 3], |mut acc, r| {
            let i = match choose_weighted(&groups, r.wrapping_mul(2_654_435_761)) {
                Some("a") => 0,
                Some("b") => 1,
                _ => 2,
            };
            acc[i] += 1;
            acc
        });
        assert_eq!(counts[1], 0);
        assert_eq!(counts[0] + counts[2], 4000);
        assert_eq!(choose_weighted(&[g("z", 0)], 7), None);
    }
}
