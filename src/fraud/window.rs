//! Sliding windows of fixed slices: a count over the last minute, hour or day in a few
//! bytes whatever the number of calls. A window of 12 slices of 5 s holds the calls of
//! the last 55 to 60 s.

use serde::{Deserialize, Serialize};

/// How many slices a window has.
pub const SLICES: usize = 12;

/// `SLICES` slices of `width` seconds (the width is the caller's: one per window kind).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window<T> {
    slices: [T; SLICES],
    /// The number of the latest slice written (Unix time / width).
    latest: u32,
}

impl<T: Copy + Default + Into<u64>> Window<T> {
    /// Clears the slices that fell out of the window by `now`.
    fn advance(&mut self, now: u64, width: u64) {
        let slice = u32::try_from(now / width).unwrap_or(u32::MAX);
        if slice <= self.latest {
            return;
        }
        let gone = (slice - self.latest).min(SLICES as u32);
        for back in 0..gone {
            self.slices[((slice - back) as usize) % SLICES] = T::default();
        }
        self.latest = slice;
    }

    /// The sum over the window at `now`.
    pub fn sum(&mut self, now: u64, width: u64) -> u64 {
        self.advance(now, width);
        self.slices.iter().map(|&v| v.into()).sum()
    }

    /// Whether nothing is left in the window at `now`.
    pub fn is_empty(&mut self, now: u64, width: u64) -> bool {
        self.sum(now, width) == 0
    }
}

impl Window<u16> {
    /// Adds one at `now`.
    pub fn add(&mut self, now: u64, width: u64) {
        self.advance(now, width);
        let at = (self.latest as usize) % SLICES;
        self.slices[at] = self.slices[at].saturating_add(1);
    }
}

impl Window<u32> {
    /// Adds `amount` at `now`.
    pub fn add_amount(&mut self, now: u64, width: u64, amount: u32) {
        self.advance(now, width);
        let at = (self.latest as usize) % SLICES;
        self.slices[at] = self.slices[at].saturating_add(amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_five_second_slices_forgets_what_is_older() {
        let mut w = Window::<u16>::default();
        let t0 = 1_800_000_000;
        for s in 0..6 {
            w.add(t0 + s * 10, 5);
        }
        assert_eq!(w.sum(t0 + 50, 5), 6);
        // 55 s later the first call's slice is gone, 60 s later the second's.
        assert_eq!(w.sum(t0 + 60, 5), 5);
        assert_eq!(w.sum(t0 + 70, 5), 4);
        assert_eq!(w.sum(t0 + 3600, 5), 0);
        assert!(w.is_empty(t0 + 3600, 5));
        // Time going back (a clock set back) changes nothing.
        w.add(t0, 5);
        assert_eq!(w.sum(t0 + 3600, 5), 1);
    }

    #[test]
    fn amounts_add_up_and_saturate() {
        let mut w = Window::<u32>::default();
        w.add_amount(7200, 7200, 600);
        w.add_amount(7300, 7200, 900);
        assert_eq!(w.sum(7400, 7200), 1500);
        w.add_amount(7400, 7200, u32::MAX);
        assert_eq!(w.sum(7400, 7200), u64::from(u32::MAX));
        assert_eq!(w.sum(7200 * 14, 7200), 0);
    }
}
