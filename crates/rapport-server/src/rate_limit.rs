//! Rate limits at ingest: per source and per client IP address, so that a public write key
//! (anyone can read a browser source's key from its pages) cannot flood the log.
//!
//! Each limit is a token bucket (GCRA, from `governor`): `per_second` sustained with a
//! `burst`. The source limit counts the events a request would store (a batch larger than
//! the burst counts as a full burst, so it waits for a full bucket instead of never
//! passing); the IP limit counts requests, and is checked as soon as the source is known —
//! before the body is read when the key came in a header. A refused request stores nothing
//! and is answered `429 rate_limited` with `Retry-After` (whole seconds).
//!
//! The client IP is the TCP peer's address. `X-Forwarded-For` is read only when the peer is
//! one of the configured trusted proxies (none by default): the client is then the
//! right-most address in the header that is not itself a trusted proxy. Without a known
//! peer (a server run without connection info) the IP limit does not apply.
//!
//! Keys an attacker chooses (IP addresses) cannot grow memory without bound: every
//! [`HOUSEKEEPING_EVERY`] checks, and whenever a source tracks more than
//! `max_tracked_ips` addresses, addresses whose bucket is full again are forgotten
//! (`retain_recent`); if that is not enough the source's table is emptied, which can only
//! let clients through, never lock one out.

use crate::error::ApiError;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use rapport_api::Code;
use rapport_store::RateLimit;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Checks between two sweeps of the per-IP tables.
pub const HOUSEKEEPING_EVERY: u64 = 4096;

/// Server-wide rate-limit options (in `ServerConfig`).
/// `[rate_limits]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitOptions {
    /// Peers whose `X-Forwarded-For` is believed. Empty by default: the peer is the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// The source limit of sources whose settings set none; `None` (default): unlimited.
    pub default_source: Option<RateLimit>,
    /// The per-IP limit of sources whose settings set none; `None` (default): unlimited.
    pub default_ip: Option<RateLimit>,
    /// Most client addresses tracked per source (default 100,000; about 100 bytes each).
    pub max_tracked_ips: usize,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        RateLimitOptions {
            trusted_proxies: Vec::new(),
            default_source: None,
            default_ip: None,
            max_tracked_ips: 100_000,
        }
    }
}

type IpLimiter = DefaultKeyedRateLimiter<IpAddr>;

/// The buckets, shared by every clone (one per server).
#[derive(Clone, Default)]
pub struct Limiters(Arc<Inner>);

#[derive(Default)]
struct Inner {
    sources: Mutex<HashMap<String, (RateLimit, Arc<DefaultDirectRateLimiter>)>>,
    ips: Mutex<HashMap<String, (RateLimit, Arc<IpLimiter>)>>,
    checks: AtomicU64,
}

impl fmt::Debug for Limiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

fn quota(limit: RateLimit) -> Quota {
    let per_second = NonZeroU32::new(limit.per_second.max(1)).expect("non-zero");
    let burst = NonZeroU32::new(limit.burst.max(1)).expect("non-zero");
    Quota::per_second(per_second).allow_burst(burst)
}

/// A refusal: which limit, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub scope: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }

    /// The refusal's message, for people.
    pub fn message(&self) -> String {
        let secs = self.retry_after_secs().max(1);
        match self.scope {
            "ip" => {
                format!("too many requests from this address to this source; retry in {secs} s")
            }
            _ => format!("this source sends more events than its rate limit; retry in {secs} s"),
        }
    }
}

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let secs = self.retry_after_secs().max(1);
        let mut res = ApiError::new(Code::RateLimited, self.message()).into_response();
        res.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).expect("digits"),
        );
        res
    }
}

fn wait(not_until: &governor::NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
    not_until.wait_time_from(DefaultClock::default().now())
}

impl Limiters {
    /// Takes `events` from the source's bucket (at most a full burst), or says when to retry.
    pub fn check_source(
        &self,
        source_id: &str,
        limit: RateLimit,
        events: usize,
    ) -> Result<(), Limited> {
        let limiter = {
            let mut map = self.0.sources.lock().expect("rate limit lock");
            match map.get(source_id) {
                Some((l, limiter)) if *l == limit => limiter.clone(),
                _ => {
                    let limiter = Arc::new(RateLimiter::direct(quota(limit)));
                    map.insert(source_id.to_owned(), (limit, limiter.clone()));
                    limiter
                }
            }
        };
        let n = u32::try_from(events)
            .unwrap_or(u32::MAX)
            .clamp(1, limit.burst.max(1));
        match limiter.check_n(NonZeroU32::new(n).expect("non-zero")) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Limited {
                scope: "source",
                retry_after: wait(&not_until),
            }),
            // n is clamped to the burst, so this cannot happen; refuse for a second if it does.
            Err(_) => Err(Limited {
                scope: "source",
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// Takes one request from the bucket of `ip` for this source.
    pub fn check_ip(
        &self,
        source_id: &str,
        limit: RateLimit,
        ip: IpAddr,
        max_tracked: usize,
    ) -> Result<(), Limited> {
        let limiter = {
            let mut map = self.0.ips.lock().expect("rate limit lock");
            match map.get(source_id) {
                Some((l, limiter)) if *l == limit => limiter.clone(),
                _ => {
                    let limiter = Arc::new(RateLimiter::keyed(quota(limit)));
                    map.insert(source_id.to_owned(), (limit, limiter.clone()));
                    limiter
                }
            }
        };
        let checks = self.0.checks.fetch_add(1, Ordering::Relaxed) + 1;
        if checks.is_multiple_of(HOUSEKEEPING_EVERY) || limiter.len() >= max_tracked {
            self.sweep(max_tracked);
        }
        limiter.check_key(&ip).map_err(|not_until| Limited {
            scope: "ip",
            retry_after: wait(&not_until),
        })
    }

    /// Forgets addresses whose bucket is full again; empties a table still over `max`.
    fn sweep(&self, max: usize) {
        let mut map = self.0.ips.lock().expect("rate limit lock");
        for (limit, limiter) in map.values_mut() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            if limiter.len() >= max {
                metrics::counter!("rapport_rate_limit_ip_table_resets_total").increment(1);
                *limiter = Arc::new(RateLimiter::keyed(quota(*limit)));
            }
        }
    }

    /// Addresses tracked for a source (tests, metrics).
    pub fn tracked_ips(&self, source_id: &str) -> usize {
        self.0
            .ips
            .lock()
            .expect("rate limit lock")
            .get(source_id)
            .map_or(0, |(_, l)| l.len())
    }
}

/// The client's address: the peer's, or from `X-Forwarded-For` when the peer is a trusted
/// proxy (the right-most address that is not a trusted proxy; the peer's if none parses).
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return Some(client);
        };
        for part in text.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) if trusted.contains(&ip) => client = ip,
                Ok(ip) => return Some(ip),
                Err(_) => return Some(client),
            }
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIGHT: RateLimit = RateLimit {
        per_second: 1,
        burst: 2,
    };

    #[test]
    fn a_source_bucket_empties_and_says_when_to_retry() {
        let l = Limiters::default();
        assert!(l.check_source("s", TIGHT, 1).is_ok());
        assert!(l.check_source("s", TIGHT, 1).is_ok());
        let refused = l.check_source("s", TIGHT, 1).unwrap_err();
        assert_eq!(refused.scope, "source");
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        // Another source has its own bucket.
        assert!(l.check_source("t", TIGHT, 2).is_ok());
        // A batch larger than the burst counts as a full burst: it passes on a full bucket.
        assert!(l.check_source("u", TIGHT, 500).is_ok());
        assert!(l.check_source("u", TIGHT, 1).is_err());
        // A changed limit starts a new bucket.
        let wider = RateLimit {
            per_second: 1,
            burst: 3,
        };
        assert!(l.check_source("s", wider, 1).is_ok());
    }

    #[test]
    fn ip_buckets_are_per_address_and_bounded() {
        let l = Limiters::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check_ip("s", TIGHT, a, 100).is_ok());
        assert!(l.check_ip("s", TIGHT, a, 100).is_ok());
        assert_eq!(l.check_ip("s", TIGHT, a, 100).unwrap_err().scope, "ip");
        assert!(l.check_ip("s", TIGHT, b, 100).is_ok());
        // Thousands of addresses never make the table exceed its bound.
        for i in 0..3_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check_ip("s", TIGHT, ip, 100);
            assert!(l.tracked_ips("s") <= 100, "{}", l.tracked_ips("s"));
        }
    }

    #[test]
    fn forwarded_for_is_read_only_behind_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 1234));
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.1".parse().unwrap());
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Not trusted: the header is the client's word and is ignored.
        assert_eq!(
            client_ip(peer("198.51.100.7"), &h, &[proxy]),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(peer("10.0.0.1"), &h, &[]), ip("10.0.0.1"));
        // Trusted: the right-most address that is not a proxy.
        assert_eq!(client_ip(peer("10.0.0.1"), &h, &[proxy]), ip("203.0.113.9"));
        // A client cannot hide behind an address it prepends itself.
        h.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9".parse().unwrap());
        assert_eq!(client_ip(peer("10.0.0.1"), &h, &[proxy]), ip("203.0.113.9"));
        assert_eq!(
            client_ip(peer("10.0.0.1"), &HeaderMap::new(), &[proxy]),
            ip("10.0.0.1")
        );
        assert_eq!(client_ip(None, &h, &[proxy]), None);
    }
}
