//! Pagination for every List operation: `maxResults` and signed `nextToken`s.
//!
//! A token records which operation and which filters it belongs to, the last key
//! returned, and when it was issued, and is signed with HMAC-SHA256 under a secret kept
//! in the store. A token that was altered, made up, issued for another operation or other
//! filters, or is older than a day is refused with `InvalidParameterException`, as ECS
//! does. Listing resumes *after* the last key, so records created or deleted between
//! pages never cause a repeat or a skip of the others.
//!
//! Every page costs the same wherever it starts: [`paginate`] hands the last key to the
//! listing, which ranges an ordered map or a derived index of the state
//! ([`Derived`](crate::state::Derived)) from just after it, so a page visits about as
//! many records as it returns (plus those a filter without an index of its own skips),
//! never the ones before it. Tests count the visits through [`counted`].
//!
//! The tokens themselves (their body, signature and checks) are in `token`; the tests
//! that walk every listing and count what each page visits are in `cost_tests`.

mod token;

#[cfg(test)]
mod cost_tests;

use crate::error::{EcsError, invalid};

pub use token::TOKEN_LIFETIME;
use token::{bad_token, decode, encode};

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Where the next page starts, if there is one.
    pub next_token: Option<String>,
}

/// The parameters every paginated listing shares.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    /// Signing secret (hex) from the state's metadata.
    pub secret: &'a str,
    /// Current time, epoch seconds.
    pub now: f64,
    /// Operation name, e.g. `ListTasks`.
    pub operation: &'a str,
    /// A canonical string of the request's filters.
    pub filters: &'a str,
    /// `maxResults` from the request.
    pub max_results: Option<i32>,
    /// The largest `maxResults` the operation allows (and its default).
    pub limit: i32,
    /// `nextToken` from the request.
    pub next_token: Option<&'a str>,
    /// Whether items come in descending key order.
    pub descending: bool,
}

impl<'a> PageRequest<'a> {
    /// The usual listing: ascending keys, at most 100 items a page.
    pub fn ascending(
        secret: &'a str,
        now: f64,
        operation: &'a str,
        filters: &'a str,
        max_results: Option<i32>,
        next_token: Option<&'a str>,
    ) -> PageRequest<'a> {
        PageRequest {
            secret,
            now,
            operation,
            filters,
            max_results,
            limit: 100,
            next_token,
            descending: false,
        }
    }

    /// The same listing in descending key order when `descending`.
    pub fn with_descending(self, descending: bool) -> PageRequest<'a> {
        PageRequest { descending, ..self }
    }

    /// The same listing with another largest `maxResults` (and default).
    pub fn with_limit(self, limit: i32) -> PageRequest<'a> {
        PageRequest { limit, ..self }
    }
}
#[cfg(test)]
thread_local! {
    static VISITED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Records visited by listings on this thread since the last call (test builds only).
#[cfg(test)]
pub fn take_visited() -> u64 {
    VISITED.with(|v| v.replace(0))
}

/// Wraps the records a listing walks, so that tests can count how many one page visits
/// (in other builds it is the iterator itself).
pub fn counted<I: Iterator>(iter: I) -> impl Iterator<Item = I::Item> {
    #[cfg(test)]
    {
        iter.inspect(|_| VISITED.with(|v| v.set(v.get() + 1)))
    }
    #[cfg(not(test))]
    {
        iter
    }
}

/// [`counted`] over `iter` walked backwards when `descending`, else forwards: a
/// listing's range in the order its pages go.
pub fn counted_in_order<'a, I>(iter: I, descending: bool) -> Box<dyn Iterator<Item = I::Item> + 'a>
where
    I: DoubleEndedIterator + 'a,
{
    if descending {
        Box::new(counted(iter.rev()))
    } else {
        Box::new(counted(iter))
    }
}

/// Cuts one page out of a listing. `items` is given the last key of the previous page
/// (`None` on the first page) and must return the listing from just after that key, in
/// key order (descending when `req.descending`): ranging an ordered map or index from
/// the key, so that a page costs the same at any offset. Items at or before the key are
/// dropped here too, so a source that starts at the key itself is still right.
pub fn paginate<T, I>(
    req: &PageRequest<'_>,
    items: impl FnOnce(Option<&str>) -> Result<I, EcsError>,
) -> Result<Page<T>, EcsError>
where
    I: IntoIterator<Item = (String, T)>,
{
    let max = match req.max_results {
        None => req.limit,
        Some(n) if (1..=req.limit).contains(&n) => n,
        Some(n) => {
            return Err(invalid(format!(
                "maxResults must be between 1 and {}, got {n}.",
                req.limit
            )));
        }
    };
    let max = usize::try_from(max).unwrap_or(1);
    let after = match req.next_token {
        Some(t) if !t.is_empty() => Some(decode(req, t)?),
        _ => None,
    };
    let source = items(after.as_deref())?;
    let mut iter = source.into_iter().filter(|(k, _)| match &after {
        None => true,
        Some(last) if req.descending => k.as_str() < last.as_str(),
        Some(last) => k.as_str() > last.as_str(),
    });
    let mut page = Vec::with_capacity(max.min(128));
    let mut last_key = None;
    for (k, item) in iter.by_ref() {
        page.push(item);
        last_key = Some(k);
        if page.len() == max {
            break;
        }
    }
    let next_token = match (iter.next(), last_key) {
        (Some(_), Some(last)) => Some(encode(req, &last)?),
        _ => None,
    };
    Ok(Page {
        items: page,
        next_token,
    })
}

/// The error for a token whose last key the listing cannot read back (it was signed
/// by this server, so only a bug or a changed key format gets here).
pub fn unreadable_token() -> EcsError {
    bad_token()
}

/// The range bound that starts a listing just after `after` (or at `first`).
pub fn start_after<K>(after: Option<K>, first: K) -> std::ops::Bound<K> {
    match after {
        Some(k) => std::ops::Bound::Excluded(k),
        None => std::ops::Bound::Included(first),
    }
}

/// Merges two iterators that each come in ascending key order into one.
pub fn merge_ascending<T>(
    a: impl Iterator<Item = (String, T)>,
    b: impl Iterator<Item = (String, T)>,
) -> impl Iterator<Item = (String, T)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) => {
            if x <= y {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(token: Option<&'a str>, max: Option<i32>) -> PageRequest<'a> {
        PageRequest {
            secret: "s3cr3t",
            now: 1000.0,
            operation: "ListClusters",
            filters: "",
            max_results: max,
            limit: 100,
            next_token: token,
            descending: false,
        }
    }

    fn items(n: usize) -> Vec<(String, usize)> {
        (0..n).map(|i| (format!("k{i:04}"), i)).collect()
    }

    #[test]
    fn walks_every_item_once() {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = paginate(&req(token.as_deref(), Some(7)), |_| Ok(items(30))).unwrap();
            assert!(page.items.len() <= 7);
            seen.extend(page.items);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, (0..30).collect::<Vec<_>>());
    }

    #[test]
    fn no_token_on_an_exact_last_page() {
        let page = paginate(&req(None, Some(5)), |_| Ok(items(5))).unwrap();
        assert_eq!(page.items.len(), 5);
        assert!(page.next_token.is_none());
    }

    #[test]
    fn forged_tampered_and_foreign_tokens_are_refused() {
        let page = paginate(&req(None, Some(2)), |_| Ok(items(5))).unwrap();
        let token = page.next_token.unwrap();
        for bad in [
            "garbage",
            "a.b",
            &format!("{token}x"),
            &token.replacen('e', "f", 1),
        ] {
            if bad == token {
                continue;
            }
            let err = paginate(&req(Some(bad), None), |_| Ok(items(5))).unwrap_err();
            assert_eq!(err.code(), "InvalidParameterException", "{bad}");
        }
        let mut other = req(Some(&token), None);
        other.operation = "ListTasks";
        assert!(paginate(&other, |_| Ok(items(5))).is_err());
        let mut late = req(Some(&token), None);
        late.now += TOKEN_LIFETIME + 1.0;
        assert!(paginate(&late, |_| Ok(items(5))).is_err());
    }

    #[test]
    fn a_page_takes_only_its_own_items_from_a_source_that_starts_at_the_last_key() {
        use std::cell::Cell;
        use std::collections::BTreeMap;
        use std::ops::Bound;
        let map: BTreeMap<String, usize> = items(10_000).into_iter().collect();
        let pulled = Cell::new(0usize);
        let (mut token, mut seen, mut pages) = (None::<String>, 0, 0);
        loop {
            pulled.set(0);
            let page = paginate(&req(token.as_deref(), Some(100)), |after| {
                let start = super::start_after(after, "");
                Ok(map
                    .range::<str, _>((start, Bound::Unbounded))
                    .inspect(|_| pulled.set(pulled.get() + 1))
                    .map(|(k, v)| (k.clone(), *v)))
            })
            .unwrap();
            assert!(pulled.get() <= 101, "page {pages} pulled {}", pulled.get());
            assert_eq!(page.items.first(), Some(&seen));
            seen += page.items.len();
            pages += 1;
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!((seen, pages), (10_000, 100));
    }

    #[test]
    fn merge_ascending_interleaves_in_key_order() {
        let a = vec![("a".to_owned(), 1), ("c".to_owned(), 3)];
        let b = vec![
            ("b".to_owned(), 2),
            ("d".to_owned(), 4),
            ("e".to_owned(), 5),
        ];
        let merged: Vec<i32> = merge_ascending(a.into_iter(), b.into_iter())
            .map(|(_, v)| v)
            .collect();
        assert_eq!(merged, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn max_results_is_bounded() {
        assert!(paginate(&req(None, Some(0)), |_| Ok(items(1))).is_err());
        assert!(paginate(&req(None, Some(101)), |_| Ok(items(1))).is_err());
    }
}
