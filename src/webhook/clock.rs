//! When the wall clock can be trusted for webhooks. Receivers reject a `webhook-timestamp`
//! far from their own time, and event times are a contract, so deliveries are held while the
//! clock is implausible. The rule is bounded (issue #10): a host that never synchronises (no
//! NTP daemon, an isolated LAN, a container) still delivers once the boot has had time to sync.
//!
//! - Synchronised (the kernel's NTP state says so) and not before the build: trusted.
//! - Not synchronised, and earlier than the build time or than the newest time the store has
//!   recorded (a clock that went backwards across a reboot, a Pi without RTC in 1970): held,
//!   and the events recorded meanwhile are marked `clock_suspect`.
//! - Not synchronised, plausible, within `webhook_clock_wait` of boot: held while NTP may still
//!   catch up.
//! - Not synchronised, plausible, after that: used, with one warning and a flag in the status.
//!
//! [`assess`] is the pure rule; [`ClockGuard`] applies it to a [`Clock`] and says what changed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use log::{info, warn};

/// The wall clock, injectable so tests can run a three-day schedule in milliseconds.
pub trait Clock: Send + Sync {
    /// Now, Unix ms.
    fn now_ms(&self) -> u64;
    /// Whether the kernel says the clock is synchronised (NTP); `None` when it cannot tell.
    fn synchronised(&self) -> Option<bool>;
    /// Time since boot, suspend included.
    fn uptime(&self) -> Duration;
}

/// The environment variable that overrides the kernel's sync state: `synchronised` or
/// `unsynchronised`. For tests, and for containers that may not read the host's clock state.
pub const SYNC_OVERRIDE: &str = "SMSRELAY_CLOCK_SYNC";

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::store::now_ms()
    }

    fn synchronised(&self) -> Option<bool> {
        match std::env::var(SYNC_OVERRIDE).as_deref() {
            Ok("synchronised" | "synchronized") => return Some(true),
            Ok("unsynchronised" | "unsynchronized") => return Some(false),
            _ => {}
        }
        // SAFETY: adjtimex with modes = 0 only reads the kernel's clock state into `timex`,
        // a plain struct we own.
        let mut timex: libc::timex = unsafe { std::mem::zeroed() };
        let state = unsafe { libc::adjtimex(&mut timex) };
        if state < 0 {
            // A sandbox that forbids adjtimex (systemd's ProtectClock=): we cannot tell, and
            // the grace period after boot bounds the wait.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                warn!(
                    "webhooks: cannot read the clock's sync state ({}); treating the clock as \
                     not synchronised",
                    std::io::Error::last_os_error()
                );
            });
            return None;
        }
        Some(state != libc::TIME_ERROR && timex.status & libc::STA_UNSYNC == 0)
    }

    fn uptime(&self) -> Duration {
        // SAFETY: clock_gettime only writes the timespec we own.
        let mut now: libc::timespec = unsafe { std::mem::zeroed() };
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
            // Cannot happen on Linux ≥ 2.6.39; an endless boot would hold forever, so say the
            // boot is long over.
            return Duration::MAX;
        }
        Duration::new(
            now.tv_sec.max(0) as u64,
            now.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
}

/// A clock moved by hand (tests): the system clock plus or minus an offset, a sync state and
/// an uptime that tests set. A schedule of hours runs in milliseconds, while jobs the store
/// stamps with the real time stay comparable.
#[derive(Debug)]
pub struct ManualClock {
    /// Added to the system clock, in ms (negative: the clock is behind).
    offset: std::sync::atomic::AtomicI64,
    unsynchronised: AtomicBool,
    uptime_ms: AtomicU64,
}

impl Default for ManualClock {
    fn default() -> ManualClock {
        ManualClock {
            offset: std::sync::atomic::AtomicI64::new(0),
            unsynchronised: AtomicBool::new(false),
            // Long after boot: the grace period is over.
            uptime_ms: AtomicU64::new(24 * 3600 * 1000),
        }
    }
}

impl ManualClock {
    /// The system clock, `ahead` in the future.
    pub fn ahead(ahead: Duration) -> ManualClock {
        let clock = ManualClock::default();
        clock.advance(ahead);
        clock
    }

    /// A clock that reads `at` (Unix ms) now and runs on with the system clock.
    pub fn at(at: u64) -> ManualClock {
        let clock = ManualClock::default();
        clock.set_now(at);
        clock
    }

    /// Sets the clock to read `at` (Unix ms) now, as NTP or a person would.
    pub fn set_now(&self, at: u64) {
        let offset = at as i64 - crate::store::now_ms() as i64;
        self.offset.store(offset, Ordering::SeqCst);
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.offset
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// Says whether the clock is synchronised.
    pub fn set_synchronised(&self, synchronised: bool) {
        self.unsynchronised.store(!synchronised, Ordering::SeqCst);
    }

    /// Sets the time since boot.
    pub fn set_uptime(&self, uptime: Duration) {
        self.uptime_ms
            .store(uptime.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        let now = crate::store::now_ms() as i64 + self.offset.load(Ordering::SeqCst);
        now.max(0) as u64
    }

    fn synchronised(&self) -> Option<bool> {
        Some(!self.unsynchronised.load(Ordering::SeqCst))
    }

    fn uptime(&self) -> Duration {
        Duration::from_millis(self.uptime_ms.load(Ordering::SeqCst))
    }
}

/// What the clock rule needs from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPolicy {
    /// `webhook_clock_check`: false trusts any clock.
    pub check: bool,
    /// `webhook_clock_wait`: how long after boot an unsynchronised clock is waited for.
    pub wait: Duration,
    /// No correct clock reads earlier than the moment this binary was built (Unix ms).
    pub build_ms: u64,
}

impl Default for ClockPolicy {
    fn default() -> ClockPolicy {
        ClockPolicy {
            check: true,
            wait: Duration::from_secs(300),
            build_ms: build_time_ms(),
        }
    }
}

/// When this binary was built (Unix ms), from build.rs (`SOURCE_DATE_EPOCH` when set).
pub fn build_time_ms() -> u64 {
    env!("SMSRELAY_BUILD_UNIX")
        .parse::<u64>()
        .unwrap_or(0)
        .saturating_mul(1000)
}

/// What the rule says about the clock now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockVerdict {
    /// Synchronised, or the check is off: deliver.
    Trusted,
    /// Not synchronised but plausible, and the wait after boot is over: deliver, and say so.
    Unsynchronised,
    /// Not synchronised within the wait after boot: hold while NTP may still set it.
    Waiting {
        /// How much of the wait is left.
        remaining: Duration,
    },
    /// Earlier than the build or than the newest stored time: hold, and mark new events.
    Implausible {
        /// Why, for the status and the log.
        reason: String,
    },
}

impl ClockVerdict {
    /// Whether webhook deliveries wait.
    pub fn holds(&self) -> bool {
        matches!(
            self,
            ClockVerdict::Waiting { .. } | ClockVerdict::Implausible { .. }
        )
    }

    /// Whether times taken now are wrong.
    pub fn suspect(&self) -> bool {
        matches!(self, ClockVerdict::Implausible { .. })
    }

    /// The documented name: `trusted`, `unsynchronised`, `waiting`, `implausible`.
    pub fn name(&self) -> &'static str {
        match self {
            ClockVerdict::Trusted => "trusted",
            ClockVerdict::Unsynchronised => "unsynchronised",
            ClockVerdict::Waiting { .. } => "waiting",
            ClockVerdict::Implausible { .. } => "implausible",
        }
    }

    /// A sentence for the status and the log.
    pub fn describe(&self) -> String {
        match self {
            ClockVerdict::Trusted => "the clock is synchronised".into(),
            ClockVerdict::Unsynchronised => {
                "the clock is not synchronised (no NTP?); webhooks are delivered with its time"
                    .into()
            }
            ClockVerdict::Waiting { remaining } => format!(
                "the clock is not synchronised yet; webhooks wait up to {} more for NTP \
                 (webhook_clock_wait)",
                humantime::format_duration(Duration::from_secs(remaining.as_secs()))
            ),
            ClockVerdict::Implausible { reason } => {
                format!("webhooks held: {reason}; set the clock (e.g. enable NTP)")
            }
        }
    }
}

/// The clock rule (see the module doc). `floor_ms` is the newest time the store recorded.
pub fn assess(
    policy: &ClockPolicy,
    now_ms: u64,
    synchronised: Option<bool>,
    uptime: Duration,
    floor_ms: u64,
) -> ClockVerdict {
    if !policy.check {
        return ClockVerdict::Trusted;
    }
    let stamp = |ms: u64| {
        time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
            .ok()
            .and_then(|time| {
                time.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("{ms} ms"))
    };
    if now_ms < policy.build_ms {
        return ClockVerdict::Implausible {
            reason: format!(
                "the clock reads {}, before this smsrelay was built ({})",
                stamp(now_ms),
                stamp(policy.build_ms)
            ),
        };
    }
    // NTP's word beats our floor: a floor set while the clock ran ahead must not hold a
    // corrected clock forever.
    if synchronised == Some(true) {
        return ClockVerdict::Trusted;
    }
    if now_ms < floor_ms {
        return ClockVerdict::Implausible {
            reason: format!(
                "the clock reads {}, before the newest time already recorded ({}): it went \
                 backwards",
                stamp(now_ms),
                stamp(floor_ms)
            ),
        };
    }
    match policy.wait.checked_sub(uptime) {
        Some(remaining) if !remaining.is_zero() => ClockVerdict::Waiting { remaining },
        _ => ClockVerdict::Unsynchronised,
    }
}

/// Applies [`assess`] to a clock, remembers the verdict for the status, and logs each change
/// once. Shared by the webhook threads and the daemon's tick.
pub struct ClockGuard {
    clock: std::sync::Arc<dyn Clock>,
    policy: ClockPolicy,
    floor_ms: AtomicU64,
    verdict: Mutex<ClockVerdict>,
}

impl std::fmt::Debug for ClockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClockGuard")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ClockGuard {
    /// A guard over `clock`; `floor_ms` is the newest time the store recorded.
    pub fn new(clock: std::sync::Arc<dyn Clock>, policy: ClockPolicy, floor_ms: u64) -> Self {
        ClockGuard {
            clock,
            policy,
            floor_ms: AtomicU64::new(floor_ms),
            verdict: Mutex::new(ClockVerdict::Trusted),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Judges the clock now; logs when the verdict changes.
    pub fn check(&self) -> ClockVerdict {
        let verdict = assess(
            &self.policy,
            self.clock.now_ms(),
            self.clock.synchronised(),
            self.clock.uptime(),
            self.floor_ms.load(Ordering::Relaxed),
        );
        let mut last = self
            .verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.name() != verdict.name() {
            match &verdict {
                ClockVerdict::Trusted => info!("webhooks: {}", verdict.describe()),
                ClockVerdict::Waiting { .. } => info!("webhooks: {}", verdict.describe()),
                _ => warn!("webhooks: {}", verdict.describe()),
            }
        }
        *last = verdict.clone();
        verdict
    }

    /// The verdict of the last [`ClockGuard::check`].
    pub fn last(&self) -> ClockVerdict {
        self.verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The newest time known to be right (Unix ms).
    pub fn floor_ms(&self) -> u64 {
        self.floor_ms.load(Ordering::Relaxed)
    }

    /// Raises the floor to now when the clock is not suspect; returns the new floor if it
    /// moved, for the caller to store.
    pub fn advance_floor(&self) -> Option<u64> {
        if self.check().suspect() {
            return None;
        }
        let now = self.clock.now_ms();
        let previous = self.floor_ms.fetch_max(now, Ordering::Relaxed);
        (now > previous).then_some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD: u64 = 1_780_000_000_000;
    const MINUTE: Duration = Duration::from_secs(60);

    fn check(now: u64, synchronised: Option<bool>, uptime: Duration, floor: u64, expected: &str) {
        let policy = ClockPolicy {
            check: true,
            wait: 5 * MINUTE,
            build_ms: BUILD,
        };
        let verdict = assess(&policy, now, synchronised, uptime, floor);
        assert_eq!(
            verdict.name(),
            expected,
            "now {now}, sync {synchronised:?}, up {uptime:?}, floor {floor}: {verdict:?}"
        );
    }

    #[test]
    fn the_clock_rule() {
        let later = BUILD + 86_400_000;
        // Synchronised: trusted, even behind a floor a wrong clock once set.
        check(later, Some(true), MINUTE, 0, "trusted");
        check(later, Some(true), MINUTE, later + 1, "trusted");
        // Never synchronised: waits for NTP within the grace, then delivers.
        check(later, Some(false), MINUTE, 0, "waiting");
        check(later, Some(false), 5 * MINUTE, 0, "unsynchronised");
        check(later, None, 10 * MINUTE, 0, "unsynchronised");
        check(later, None, MINUTE, 0, "waiting");
        // 1970 (a Pi without RTC), or before the build even when NTP claims sync.
        check(0, Some(false), 10 * MINUTE, 0, "implausible");
        check(86_400_000, Some(true), 10 * MINUTE, 0, "implausible");
        // Backwards across a reboot: before the newest stored time.
        check(later, Some(false), 10 * MINUTE, later + 1000, "implausible");
        check(later, None, MINUTE, later + 1000, "implausible");
    }

    #[test]
    fn the_check_off_trusts_any_clock() {
        let policy = ClockPolicy {
            check: false,
            wait: 5 * MINUTE,
            build_ms: BUILD,
        };
        assert_eq!(
            assess(&policy, 0, Some(false), Duration::ZERO, BUILD),
            ClockVerdict::Trusted
        );
    }

    #[test]
    fn the_floor_rises_only_with_a_plausible_clock() {
        let clock = std::sync::Arc::new(ManualClock::at(1000));
        clock.set_synchronised(false);
        let guard = ClockGuard::new(clock.clone(), ClockPolicy::default(), 0);
        assert!(guard.check().suspect(), "1970 is before the build");
        assert_eq!(guard.advance_floor(), None);
        let right_now = crate::store::now_ms();
        let clock = std::sync::Arc::new(ManualClock::default());
        let guard = ClockGuard::new(clock, ClockPolicy::default(), 0);
        let floor = guard.advance_floor().expect("moved");
        assert!(floor >= right_now);
        assert_eq!(guard.floor_ms(), floor);
    }

    #[test]
    fn the_build_time_is_known() {
        assert!(build_time_ms() > 1_700_000_000_000, "{}", build_time_ms());
    }
}
