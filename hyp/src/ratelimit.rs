//! A token bucket for log lines a guest can cause: a burst of `burst`
//! lines, then `per_second` a second, and a count of what was left out.
//! Portable and tested on the host; time comes in as ticks of a counter
//! and its frequency (the generic timer's at EL2).

/// Rate limit for one source of log lines.
#[derive(Debug)]
pub struct RateLimit {
    burst: u32,
    per_second: u32,
    tokens: u32,
    /// When the last token was added (counter ticks).
    last: u64,
    dropped: u64,
}

impl RateLimit {
    /// Allows `burst` lines at once, then `per_second` a second.
    pub const fn new(burst: u32, per_second: u32) -> Self {
        Self { burst, per_second, tokens: burst, last: 0, dropped: 0 }
    }

    /// Whether a line may go out now (`now` ticks of a counter running at
    /// `freq` ticks a second): `Some(n)` with the lines left out since the
    /// last one that went, or `None` to leave this one out too.
    pub fn check(&mut self, now: u64, freq: u64) -> Option<u64> {
        let freq = freq.max(1);
        let period = (freq / u64::from(self.per_second.max(1))).max(1);
        let earned = now.saturating_sub(self.last) / period;
        if earned > 0 {
            self.tokens =
                self.burst.min(self.tokens.saturating_add(earned.min(u64::from(u32::MAX)) as u32));
            self.last = self.last.saturating_add(earned * period).min(now);
        }
        if self.tokens == 0 {
            self.dropped += 1;
            return None;
        }
        self.tokens -= 1;
        Some(core::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000;

    #[test]
    fn a_burst_then_a_steady_rate() {
        let mut r = RateLimit::new(3, 2);
        let t = 10 * HZ;
        // The burst goes out, then nothing within the same instant.
        assert_eq!([r.check(t, HZ), r.check(t, HZ), r.check(t, HZ)], [Some(0); 3]);
        for _ in 0..1000 {
            assert_eq!(r.check(t, HZ), None);
        }
        // Half a second later one more, telling how many were left out.
        assert_eq!(r.check(t + HZ / 2, HZ), Some(1000));
        assert_eq!(r.check(t + HZ / 2, HZ), None);
        // A long quiet spell refills the burst, no more.
        let later = t + 100 * HZ;
        let got: Vec<_> = (0..5).map(|_| r.check(later, HZ)).collect();
        assert_eq!(got, [Some(1), Some(0), Some(0), None, None]);
    }

    #[test]
    fn a_flood_over_time_stays_within_the_rate() {
        let mut r = RateLimit::new(8, 4);
        // One attempt per millisecond for ten seconds.
        let printed = (0..10 * HZ).filter(|&ms| r.check(ms, HZ).is_some()).count();
        assert!(printed <= 8 + 4 * 10, "{printed} lines");
        assert!(printed >= 4 * 10, "{printed} lines: the rate is met");
    }

    #[test]
    fn a_clock_that_goes_back_or_stops_is_harmless() {
        let mut r = RateLimit::new(1, 1);
        assert_eq!(r.check(5 * HZ, HZ), Some(0));
        assert_eq!(r.check(HZ, HZ), None);
        assert_eq!(r.check(0, 0), None);
        assert_eq!(r.check(u64::MAX, HZ), Some(2));
    }
}
