//! When the next attempt is due, for polls and pushes alike. Pure: the refresh interval with
//! jitter, and after a cycle in which everything failed an exponential back-off capped at that
//! interval.

use std::time::Duration;

const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The wait before the next cycle: the interval (jittered), or after a cycle in which
/// everything failed the next step of the back-off, which a success resets.
pub(crate) fn next_delay(
    all_failed: bool,
    backoff: &mut Option<Box<dyn Iterator<Item = Duration> + Send>>,
    interval: Duration,
) -> Duration {
    if all_failed {
        backoff
            .get_or_insert_with(|| Box::new(failure_delays(interval)))
            .next()
            .unwrap_or(interval)
    } else {
        *backoff = None;
        jittered(interval)
    }
}

/// Up to 10% early, never late: secrets configured alike spread out over time, and a
/// change is still picked up within `refreshInterval`.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - fastrand::f64() * 0.1)
}

/// Exponential back-off with jitter after failures, capped at the refresh interval so a
/// failing secret is never polled less often than a healthy one.
pub fn failure_delays(interval: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY.min(interval))
        .with_max_delay(interval)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |d| d.min(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_never_delays_past_the_interval() {
        let interval = Duration::from_secs(60);
        for _ in 0..1000 {
            let d = jittered(interval);
            assert!(d <= interval && d >= Duration::from_secs(54), "{d:?}");
        }
    }

    #[test]
    fn failure_backoff_grows_and_is_capped_at_the_interval() {
        let interval = Duration::from_secs(10);
        let delays: Vec<_> = failure_delays(interval).take(8).collect();
        assert!(
            delays[0] >= Duration::from_secs(1) && delays[0] <= Duration::from_secs(2),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= interval), "{delays:?}");
        assert_eq!(delays[7], interval, "{delays:?}");
        let short: Vec<_> = failure_delays(Duration::from_millis(500)).take(3).collect();
        assert!(
            short.iter().all(|d| *d <= Duration::from_millis(500)),
            "{short:?}"
        );
    }
}
