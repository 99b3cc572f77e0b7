//! The wall clock as the connector writes it into frames and records: unix
//! seconds, read in one place so every module means the same time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now in unix seconds, to the microsecond, so `forwarded_at` can time delivery.
pub(crate) fn unix_now() -> f64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    micros as f64 / 1e6
}

/// Now in whole unix seconds (records: when a product was made, a key rotated).
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_read_the_same_clock() {
        let (secs, now) = (unix_secs(), unix_now());
        // Read back to back: the same second, or the next one.
        assert!(
            now >= secs as f64 && now < secs as f64 + 2.0,
            "{secs} {now}"
        );
        // Microseconds, not whole seconds.
        assert!((0..100).map(|_| unix_now()).any(|t| t.fract() != 0.0));
    }
}
