//! The `metrics` section (which secrets are named by per-secret series) and `maxPollStall`
//! (when a poll that does not complete fails readiness).

use super::read::read_enum;
use super::yaml::{or_default, Checker, Field, Fields};
use crate::metrics::SeriesPolicy;
use std::ops::RangeInclusive;
use std::time::Duration;

/// `metrics.perSecretSeries`; `auto` takes its limit from `perSecretSeriesLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auto,
    All,
    Unhealthy,
}

const MODES: &[(&str, Mode)] = &[
    ("auto", Mode::Auto),
    ("all", Mode::All),
    ("unhealthy", Mode::Unhealthy),
];

const LIMITS: RangeInclusive<u32> = 0..=1_000_000;

/// The default `maxPollStall`: a group that has not completed a poll for this long (and for
/// twice its interval) fails `/readyz`.
pub const DEFAULT_MAX_POLL_STALL: Duration = Duration::from_secs(600);

pub(super) fn read_metrics(c: &mut Checker, at: &Field) -> Option<SeriesPolicy> {
    let mut f = Fields::open(c, at)?;
    let mode_field = f.get("perSecretSeries");
    let limit_field = f.get("perSecretSeriesLimit");
    let mode = or_default(mode_field, Mode::Auto, |v| read_enum(c, v, MODES));
    let limit = or_default(
        limit_field.clone(),
        SeriesPolicy::DEFAULT_LIMIT as u32,
        |v| c.integer_within(v, LIMITS),
    );
    f.finish(c);
    let (mode, limit) = (mode?, limit?);
    if let (Some(field), true) = (&limit_field, mode != Mode::Auto) {
        c.warn(
            field,
            "perSecretSeriesLimit only applies with perSecretSeries: auto; it is ignored",
        );
    }
    Some(match mode {
        Mode::Auto => SeriesPolicy::Auto {
            limit: limit as usize,
        },
        Mode::All => SeriesPolicy::All,
        Mode::Unhealthy => SeriesPolicy::Unhealthy,
    })
}
