//! What happens after a delivery attempt: delivered, tried again later, or sent to the
//! destination's dead-letter queue — and when "later" is.
//!
//! The rules (stated to users in `docs/destinations.md`):
//! - a 2xx answer is a delivery;
//! - connection failures, timeouts, `408`, `429` and every `5xx` are tried again, after an
//!   exponential backoff with jitter (attempt *n* waits `base · 2^(n-1)`, capped at
//!   `max_delay`, then scaled into its upper half by the jitter: "equal jitter", so that
//!   retries of many events spread out but never come sooner than half the nominal wait),
//!   and never sooner than the receiver's `Retry-After` (capped at `max_retry_after`);
//! - any other answer (`4xx`, and `3xx` left after redirects) goes to the dead-letter queue
//!   at once: sending the same request again cannot succeed;
//! - an event whose next attempt would fall later than `give_up_after` after its first
//!   attempt goes to the dead-letter queue instead.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a delivery attempt came to, as the worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this status; `retry_after` is its `Retry-After`.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: the connection could not be made or broke (refused, reset, DNS).
    ConnectionFailed,
    /// No answer within the destination's timeout.
    TimedOut,
}

/// Why an event went to the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The receiver refused the request with a status that retrying cannot change.
    Refused { status: u16 },
    /// Retries went on for longer than the destination's give-up age.
    GaveUp { attempts: u32 },
}

/// The decision after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Try again at this time.
    Retry {
        at: DateTime<Utc>,
    },
    DeadLetter(DeadLetterReason),
}

/// The retry schedule of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryPolicy {
    /// The first retry's nominal wait, milliseconds (default 1,000).
    pub base_delay_ms: u64,
    /// The longest wait between two attempts, milliseconds (default 1 hour).
    pub max_delay_ms: u64,
    /// The longest `Retry-After` honoured, milliseconds (default 1 hour); a longer one is
    /// read as this.
    pub max_retry_after_ms: u64,
    /// How long after its first attempt an event is still retried, milliseconds (default
    /// 72 hours).
    pub give_up_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay_ms: 1_000,
            max_delay_ms: 3_600_000,
            max_retry_after_ms: 3_600_000,
            give_up_after_ms: 72 * 3_600_000,
        }
    }
}

/// Whether an answer with `status` is worth trying again.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` (1-based) failed, for a
    /// `jitter` drawn uniformly from `[0, 1)`: `d/2 + jitter · d/2` with
    /// `d = min(max_delay, base · 2^(attempt-1))`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(62);
        let nominal = self
            .base_delay_ms
            .saturating_mul(1u64 << exponent)
            .min(self.max_delay_ms);
        let jitter = jitter.clamp(0.0, 1.0);
        let half = nominal as f64 / 2.0;
        Duration::from_millis((half + jitter * half).round() as u64)
    }

    /// The decision after attempt number `attempt` (1-based) of an event first attempted
    /// at `first_attempt`, with `jitter` uniform in `[0, 1)`.
    pub fn decide(
        &self,
        result: Attempt,
        attempt: u32,
        first_attempt: DateTime<Utc>,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Decision {
        let retry_after = match result {
            Attempt::Answered { status, .. } if (200..300).contains(&status) => {
                return Decision::Delivered;
            }
            Attempt::Answered { status, .. } if !is_retryable_status(status) => {
                return Decision::DeadLetter(DeadLetterReason::Refused { status });
            }
            Attempt::Answered { retry_after, .. } => retry_after,
            Attempt::ConnectionFailed | Attempt::TimedOut => None,
        };
        let mut wait = self.backoff(attempt, jitter);
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(Duration::from_millis(self.max_retry_after_ms)));
        }
        let at = now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
        let give_up_at = first_attempt + TimeDelta::milliseconds(self.give_up_after_ms as i64);
        if at > give_up_at {
            Decision::DeadLetter(DeadLetterReason::GaveUp { attempts: attempt })
        } else {
            Decision::Retry { at }
        }
    }
}

/// A `Retry-After` header's wait: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`) relative to `now`; a date in the past is no wait.
/// `None` when the value is neither.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn answers_are_sorted_into_delivered_retried_and_refused() {
        let p = RetryPolicy::default();
        let start = t("2026-12-02T10:00:00Z");
        let decide = |a| p.decide(a, 1, start, start, 0.5);
        assert_eq!(
            decide(Attempt::Answered {
                status: 204,
                retry_after: None
            }),
            Decision::Delivered
        );
        for status in [400, 401, 403, 404, 410, 413, 422, 301] {
            assert_eq!(
                decide(Attempt::Answered {
                    status,
                    retry_after: None
                }),
                Decision::DeadLetter(DeadLetterReason::Refused { status }),
                "{status}"
            );
        }
        for a in [
            Attempt::Answered {
                status: 408,
                retry_after: None,
            },
            Attempt::Answered {
                status: 429,
                retry_after: None,
            },
            Attempt::Answered {
                status: 500,
                retry_after: None,
            },
            Attempt::Answered {
                status: 503,
                retry_after: None,
            },
            Attempt::ConnectionFailed,
            Attempt::TimedOut,
        ] {
            assert!(matches!(decide(a), Decision::Retry { .. }), "{a:?}");
        }
    }

    #[test]
    fn the_schedule_doubles_to_its_cap() {
        let p = RetryPolicy::default();
        let ms = |n| p.backoff(n, 1.0).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [1_000, 2_000, 4_000, 8_000]);
        assert_eq!(ms(13), 3_600_000);
        assert_eq!(ms(400), 3_600_000);
        // With no jitter drawn, half the nominal wait.
        assert_eq!(p.backoff(3, 0.0).as_millis(), 2_000);
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let p = RetryPolicy::default();
        let start = t("2026-12-02T10:00:00Z");
        let slow_down = |secs| Attempt::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            p.decide(slow_down(120), 1, start, start, 0.0),
            Decision::Retry {
                at: t("2026-12-02T10:02:00Z")
            }
        );
        assert_eq!(
            p.decide(slow_down(86_400), 1, start, start, 0.0),
            Decision::Retry {
                at: t("2026-12-02T11:00:00Z")
            }
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 10:05:00 GMT", start),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 09:00:00 GMT", start),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after(" 7 ", start),
            Some(Duration::from_secs(7))
        );
        assert_eq!(parse_retry_after("soon", start), None);
    }

    #[test]
    fn retries_stop_at_the_give_up_age() {
        let p = RetryPolicy::default();
        let start = t("2026-12-02T10:00:00Z");
        let now = t("2026-12-05T09:30:00Z");
        assert_eq!(
            p.decide(Attempt::TimedOut, 80, start, now, 0.99),
            Decision::DeadLetter(DeadLetterReason::GaveUp { attempts: 80 })
        );
    }

    proptest! {
        #[test]
        fn waits_are_bounded_and_grow_with_attempts(
            base in 1u64..60_000,
            max in 1u64..86_400_000,
            attempt in 1u32..200,
            j1 in 0.0f64..1.0,
        ) {
            let p = RetryPolicy { base_delay_ms: base, max_delay_ms: max, ..RetryPolicy::default() };
            let nominal = (base as u128 * (1u128 << (attempt - 1).min(62))).min(max as u128);
            let w = p.backoff(attempt, j1).as_millis();
            prop_assert!(w <= nominal);
            prop_assert!(w * 2 + 1 >= nominal);
            // Without jitter, never shorter than the previous attempt's wait.
            prop_assert!(p.backoff(attempt + 1, 1.0) >= p.backoff(attempt, 1.0));
        }

        #[test]
        fn a_retry_is_never_scheduled_past_the_give_up_age_nor_before_now(
            attempt in 1u32..100,
            elapsed_ms in 0i64..300_000_000,
            status in prop_oneof![Just(408u16), Just(429), 500u16..600],
            jitter in 0.0f64..1.0,
        ) {
            let p = RetryPolicy::default();
            let start = t("2026-12-02T10:00:00Z");
            let now = start + TimeDelta::milliseconds(elapsed_ms);
            match p.decide(Attempt::Answered { status, retry_after: None }, attempt, start, now, jitter) {
                Decision::Retry { at } => {
                    prop_assert!(at >= now);
                    prop_assert!(at <= start + TimeDelta::milliseconds(p.give_up_after_ms as i64));
                }
                Decision::DeadLetter(DeadLetterReason::GaveUp { attempts }) => prop_assert_eq!(attempts, attempt),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
