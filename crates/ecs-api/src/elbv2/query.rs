//! The query protocol's request side: a form-encoded body (`Action=…&Version=…&
//! Names.member.1=…&Listeners.member.1.Port=80`) decoded into [`Params`], with the
//! accessors the operations' parsers use: scalars, `member.N` lists of strings and of
//! structures, nested structures (`ForwardConfig.TargetGroups.member.1.Weight`).
//!
//! Decoding is `form_urlencoded` (the `url` crate's, percent- and `+`-decoding). List
//! indexes are 1-based as botocore writes them; they are sorted numerically, and an index
//! over [`MAX_MEMBERS`] is refused, so no input can make a list larger than that.

use std::collections::BTreeMap;

use controlplane::ops::elbv2::{ElbError, validation};

/// Largest `member.N` index accepted.
pub const MAX_MEMBERS: usize = 1000;

/// Decoded request parameters (or the members of one nested structure of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
    /// The dotted path of this structure in the request, for messages (`""` at the top).
    path: String,
}

impl Params {
    /// Decodes a form body. A key given twice keeps its last value.
    pub fn parse(body: &[u8]) -> Params {
        Params {
            map: form_urlencoded::parse(body).into_owned().collect(),
            path: String::new(),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A scalar.
    pub fn get(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }

    /// A required scalar (`ValidationError` naming it when absent).
    pub fn required(&self, key: &str) -> Result<String, ElbError> {
        self.get(key).ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                self.name(key)
            ))
        })
    }

    /// An integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ElbError> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    validation(format!(
                        "Value for {} must be an integer, not '{}'",
                        self.name(key),
                        controlplane::ops::elbv2::shorten(&v)
                    ))
                })
            })
            .transpose()
    }

    /// A boolean (`true`/`false`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ElbError> {
        self.get(key)
            .map(|v| match v.as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(validation(format!(
                    "Value for {} must be true or false",
                    self.name(key)
                ))),
            })
            .transpose()
    }

    /// The members of structure `key` (`key.X` → `X`); `None` when none is set.
    pub fn structure(&self, key: &str) -> Option<Params> {
        let prefix = format!("{key}.");
        let map: BTreeMap<String, String> = self
            .map
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
            .collect();
        (!map.is_empty()).then(|| Params {
            map,
            path: self.name(key),
        })
    }

    /// The entries of list `key` by index: `key.member.N` (a scalar, under `""`) and
    /// `key.member.N.X` (a structure's members), in index order.
    fn members(&self, key: &str) -> Result<Vec<Params>, ElbError> {
        let prefix = format!("{key}.member.");
        let mut by_index: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
        for (k, v) in &self.map {
            let Some(rest) = k.strip_prefix(&prefix) else {
                continue;
            };
            let (index, member) = rest.split_once('.').unwrap_or((rest, ""));
            let n: usize = index
                .parse()
                .ok()
                .filter(|n| (1..=MAX_MEMBERS).contains(n))
                .ok_or_else(|| {
                    validation(format!(
                        "{} has an invalid list index '{}': 1 to {MAX_MEMBERS}",
                        self.name(key),
                        controlplane::ops::elbv2::shorten(index)
                    ))
                })?;
            by_index
                .entry(n)
                .or_default()
                .insert(member.to_owned(), v.clone());
        }
        Ok(by_index
            .into_iter()
            .map(|(n, map)| Params {
                map,
                path: format!("{}.member.{n}", self.name(key)),
            })
            .collect())
    }

    /// A list of strings (`key.member.N`).
    pub fn list(&self, key: &str) -> Result<Vec<String>, ElbError> {
        self.members(key)?
            .into_iter()
            .map(|p| {
                p.get("").ok_or_else(|| {
                    validation(format!("{} must be a list of strings", self.name(key)))
                })
            })
            .collect()
    }

    /// A list of structures (`key.member.N.X`).
    pub fn structures(&self, key: &str) -> Result<Vec<Params>, ElbError> {
        self.members(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lists_and_structures_decode_in_index_order() {
        let body = "Action=CreateListener&Version=2015-12-01&LoadBalancerArn=arn%3Aaws%3Ax\
            &DefaultActions.member.1.Type=forward\
            &DefaultActions.member.1.ForwardConfig.TargetGroups.member.10.TargetGroupArn=tg10\
            &DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn=tg2\
            &DefaultActions.member.1.ForwardConfig.TargetGroups.member.2.Weight=5\
            &Names.member.2=b+c&Names.member.1=a%26b";
        let p = Params::parse(body.as_bytes());
        assert_eq!(p.get("LoadBalancerArn").as_deref(), Some("arn:aws:x"));
        assert_eq!(p.list("Names").unwrap(), ["a&b", "b c"]);
        let actions = p.structures("DefaultActions").unwrap();
        assert_eq!(actions.len(), 1);
        let fc = actions[0].structure("ForwardConfig").unwrap();
        let groups = fc.structures("TargetGroups").unwrap();
        let arns: Vec<_> = groups
            .iter()
            .map(|g| g.get("TargetGroupArn").unwrap())
            .collect();
        assert_eq!(arns, ["tg2", "tg10"], "numeric, not lexical, order");
        assert_eq!(groups[0].int("Weight").unwrap(), Some(5));
        let e = groups[1].required("Weight").unwrap_err();
        assert!(
            e.to_string()
                .contains("DefaultActions.member.1.ForwardConfig.TargetGroups.member.10.Weight"),
            "{e}"
        );
        assert!(p.list("Absent").unwrap().is_empty());
        assert!(p.structure("Absent").is_none());
    }

    #[test]
    fn bad_indexes_and_scalars_are_validation_errors() {
        for body in [
            "Names.member.0=a",
            "Names.member.x=a",
            "Names.member.1001=a",
        ] {
            let e = Params::parse(body.as_bytes()).list("Names").unwrap_err();
            assert_eq!(e.code(), "ValidationError", "{body}");
        }
        let p = Params::parse(b"Port=eighty&Enabled=yes");
        assert_eq!(p.int("Port").unwrap_err().code(), "ValidationError");
        assert_eq!(p.bool("Enabled").unwrap_err().code(), "ValidationError");
    }
}
