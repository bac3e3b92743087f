//! Usage plans: a token bucket (rate, burst) and a quota counter per API key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveTime, TimeZone, Utc};

use crate::config::{QuotaPeriod, UsagePlan};

/// Why a request was refused, and when trying again can succeed (if known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Rate or burst exceeded: 429 `Too Many Requests`.
    Throttled(Option<Duration>),
    /// Quota used up: 429 `Limit Exceeded`.
    QuotaExceeded(Option<Duration>),
}

/// A token bucket holding up to `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Starts full, as API Gateway lets a burst through at once.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst);
        TokenBucket { rate: rate.max(0.0), burst, tokens: burst, last: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether a token is available now (without taking it).
    pub fn check(&mut self, now: Instant) -> Result<(), Option<Duration>> {
        self.refill(now);
        if self.tokens >= 1.0 {
            Ok(())
        } else if self.rate > 0.0 && self.burst >= 1.0 {
            Err(Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate)))
        } else {
            // A zero rate or burst never lets anything through.
            Err(None)
        }
    }

    /// Takes one token if there is one; otherwise says how long until there will be.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Option<Duration>> {
        self.check(now)?;
        self.tokens -= 1.0;
        Ok(())
    }
}

/// Requests counted against a limit per window (a calendar period or a fixed number of seconds).
#[derive(Debug, Clone)]
pub struct Quota {
    limit: u64,
    period: QuotaPeriod,
    window_secs: u64,
    window_end: Option<DateTime<Utc>>,
    used: u64,
}

/// The end of the calendar period (UTC) that contains `now`.
pub fn period_end(period: QuotaPeriod, now: DateTime<Utc>) -> DateTime<Utc> {
    let day_start = Utc.from_utc_datetime(&now.date_naive().and_time(NaiveTime::MIN));
    match period {
        QuotaPeriod::Day => day_start + ChronoDuration::days(1),
        QuotaPeriod::Week => {
            day_start + ChronoDuration::days(7 - i64::from(now.weekday().num_days_from_monday()))
        }
        QuotaPeriod::Month => {
            let (y, m) =
                if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().expect("the first of a month exists")
        }
    }
}

impl Quota {
    pub fn new(limit: u64, period: QuotaPeriod, window_secs: u64) -> Self {
        Quota { limit, period, window_secs, window_end: None, used: 0 }
    }

    fn roll(&mut self, now: DateTime<Utc>) {
        if self.window_end.is_some_and(|end| now < end) {
            return;
        }
        self.used = 0;
        self.window_end = Some(if self.window_secs > 0 {
            // Fixed windows: skip whole windows that passed unused.
            match self.window_end {
                Some(end) => {
                    let w = self.window_secs as i64;
                    let passed = (now - end).num_seconds() / w + 1;
                    end + ChronoDuration::seconds(passed * w)
                }
                None => now + ChronoDuration::seconds(self.window_secs as i64),
            }
        } else {
            period_end(self.period, now)
        });
    }

    /// Whether one more request fits (without counting it).
    pub fn check(&mut self, now: DateTime<Utc>) -> Result<(), Option<Duration>> {
        if self.limit == 0 {
            return Ok(());
        }
        self.roll(now);
        if self.used < self.limit {
            Ok(())
        } else {
            Err(self.window_end.and_then(|end| (end - now).to_std().ok()))
        }
    }

    pub fn count(&mut self) {
        self.used += 1;
    }

    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

struct KeyUsage {
    bucket: TokenBucket,
    quota: Quota,
}

/// Usage of every key seen so far.
#[derive(Default)]
pub struct UsageTracker {
    keys: Mutex<HashMap<String, KeyUsage>>,
}

impl UsageTracker {
    /// Admits one request of `key_id` under `plan`, or says why not. A request refused for its
    /// quota takes no token; one refused by throttling counts against no quota.
    pub fn admit(
        &self,
        key_id: &str,
        plan: &UsagePlan,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let usage = keys.entry(key_id.to_owned()).or_insert_with(|| KeyUsage {
            bucket: TokenBucket::new(plan.rate_limit, plan.burst_limit, now),
            quota: Quota::new(plan.quota_limit, plan.quota_period, plan.quota_window_secs),
        });
        usage.quota.check(wall).map_err(Refusal::QuotaExceeded)?;
        usage.bucket.try_take(now).map_err(Refusal::Throttled)?;
        usage.quota.count();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        let wait = b.try_take(t0).unwrap_err().unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.try_take(t1), Ok(()));
        assert!(b.try_take(t1).is_err());
        // Long idle refills to the burst size, never beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.try_take(t2), Ok(()));
        }
        assert!(b.try_take(t2).is_err());
    }

    #[test]
    fn zero_rate_or_burst_refuses_without_a_retry_time() {
        let t0 = Instant::now();
        assert_eq!(TokenBucket::new(0.0, 0, t0).try_take(t0), Err(None));
        let mut b = TokenBucket::new(0.0, 1, t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0 + Duration::from_secs(3600)), Err(None));
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn calendar_periods_end_at_utc_midnight() {
        let now = at("2024-12-31T15:30:00Z"); // a Tuesday
        assert_eq!(period_end(QuotaPeriod::Day, now), at("2025-01-01T00:00:00Z"));
        assert_eq!(period_end(QuotaPeriod::Week, now), at("2025-01-06T00:00:00Z"));
        assert_eq!(period_end(QuotaPeriod::Month, now), at("2025-01-01T00:00:00Z"));
        assert_eq!(
            period_end(QuotaPeriod::Month, at("2024-02-10T00:00:00Z")),
            at("2024-03-01T00:00:00Z")
        );
        assert_eq!(
            period_end(QuotaPeriod::Week, at("2024-12-30T00:00:00Z")),
            at("2025-01-06T00:00:00Z")
        );
    }

    #[test]
    fn quota_counts_per_window_and_resets() {
        let t0 = at("2024-05-01T00:00:00Z");
        let mut q = Quota::new(2, QuotaPeriod::Day, 10);
        for _ in 0..2 {
            q.check(t0).unwrap();
            q.count();
        }
        assert_eq!(q.check(t0 + ChronoDuration::seconds(4)), Err(Some(Duration::from_secs(6))));
        q.check(t0 + ChronoDuration::seconds(10)).unwrap();
        assert_eq!(q.remaining(), 2);
        // Windows that pass unused are skipped: the window containing t=35 ends at t=40.
        q.count();
        q.count();
        assert_eq!(q.check(t0 + ChronoDuration::seconds(35)), Ok(()));
        q.count();
        q.count();
        assert_eq!(q.check(t0 + ChronoDuration::seconds(36)), Err(Some(Duration::from_secs(4))));
    }

    #[test]
    fn tracker_keeps_keys_apart_and_orders_quota_before_throttle() {
        let plan = UsagePlan {
            rate_limit: 0.0,
            burst_limit: 2,
            quota_limit: 3,
            quota_window_secs: 3600,
            ..UsagePlan::default()
        };
        let (now, wall) = (Instant::now(), Utc::now());
        let t = UsageTracker::default();
        assert_eq!(t.admit("a", &plan, now, wall), Ok(()));
        assert_eq!(t.admit("a", &plan, now, wall), Ok(()));
        assert_eq!(t.admit("a", &plan, now, wall), Err(Refusal::Throttled(None)));
        assert_eq!(t.admit("b", &plan, now, wall), Ok(()));
        let plan = UsagePlan { quota_limit: 1, quota_window_secs: 60, ..UsagePlan::default() };
        assert_eq!(t.admit("c", &plan, now, wall), Ok(()));
        assert!(matches!(t.admit("c", &plan, now, wall), Err(Refusal::QuotaExceeded(Some(_)))));
    }
}
