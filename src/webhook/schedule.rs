//! When to try a delivery again: a pure function of the attempt number and a random unit, so
//! the due time can be persisted and tests need no clock.

use std::time::{Duration, SystemTime};

/// The Standard Webhooks example schedule: the pause before attempt 1, 2, … 10 (≈ 75 h in all).
pub const DEFAULT_SCHEDULE: [Duration; 10] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// The longest a `Retry-After` may push a retry.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(6 * 3600);

/// The pause before attempt `attempt` (1-based), with jitter only ever added: `unit` in
/// [0, 1) picks up to 10 % of the step, at least 1 s and at most 10 min. `None` when the
/// schedule has no such attempt.
pub fn delay_before(attempt: u32, schedule: &[Duration], unit: f64) -> Option<Duration> {
    let base = *schedule.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
    if base.is_zero() {
        return Some(base);
    }
    let span = (base / 10).clamp(Duration::from_secs(1), Duration::from_secs(600));
    Some(base + span.mul_f64(unit.clamp(0.0, 1.0)))
}

/// A retry after a 429 or 503: the later of the schedule and the server's hint (capped).
pub fn honour_retry_after(scheduled: Duration, hint: Option<Duration>) -> Duration {
    hint.map_or(scheduled, |hint| scheduled.max(hint.min(RETRY_AFTER_CAP)))
}

/// `Retry-After: <seconds>` or an HTTP date, as a pause from `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_followed_and_jitter_never_makes_it_earlier() {
        for (index, base) in DEFAULT_SCHEDULE.iter().enumerate() {
            let attempt = index as u32 + 1;
            let low = delay_before(attempt, &DEFAULT_SCHEDULE, 0.0).expect("in schedule");
            let high = delay_before(attempt, &DEFAULT_SCHEDULE, 0.999).expect("in schedule");
            assert_eq!(low, *base, "attempt {attempt}");
            assert!(
                high >= *base && high <= *base + Duration::from_secs(600),
                "{attempt}"
            );
        }
        assert_eq!(delay_before(11, &DEFAULT_SCHEDULE, 0.5), None);
        assert_eq!(delay_before(0, &DEFAULT_SCHEDULE, 0.5), None);
        // 5 s gets at least 1 s of spread; 24 h at most 10 min.
        assert_eq!(
            delay_before(2, &DEFAULT_SCHEDULE, 0.5),
            Some(Duration::from_millis(5500))
        );
        assert_eq!(
            delay_before(10, &DEFAULT_SCHEDULE, 0.5),
            Some(Duration::from_secs(24 * 3600 + 300))
        );
    }

    #[test]
    fn retry_after_only_pushes_later_and_is_capped() {
        let five = Duration::from_secs(5);
        assert_eq!(honour_retry_after(five, None), five);
        assert_eq!(honour_retry_after(five, Some(Duration::from_secs(1))), five);
        assert_eq!(
            honour_retry_after(five, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            honour_retry_after(five, Some(Duration::from_secs(86_400))),
            RETRY_AFTER_CAP
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Tue, 24 Nov 2026 18:00:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 18:02:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 24 Nov 2026 17:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
