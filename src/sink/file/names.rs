//! The names of the timestamped data directories: this writer's, and which names in a
//! target directory are such directories (its own or kubelet's) to be cleaned up.

use std::time::{SystemTime, UNIX_EPOCH};

/// `..YYYY_MM_DD_HH_MM_SS.<nanos>_<random>` in UTC. The random suffix keeps
/// two writes within the same nanosecond (coarse clocks) from colliding.
pub(super) fn timestamp_dir_name(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "..{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}.{:09}_{:08x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_nanos(),
        fastrand::u32(..),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date, after Howard
/// Hinnant's `civil_from_days`; unsigned because the epoch is the floor here.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Accepts this writer's names and kubelet's (`..YYYY_MM_DD_HH_MM_SS.<n>`),
/// and nothing else, so a user's own `..something` is never swept up.
pub(super) fn is_timestamp_dir_name(name: &str) -> bool {
    const SHAPE: &[u8] = b"dddd_dd_dd_dd_dd_dd";
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let bytes = rest.as_bytes();
    bytes.len() >= SHAPE.len()
        && bytes.iter().zip(SHAPE).all(|(&b, &shape)| match shape {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        })
        && matches!(bytes.get(SHAPE.len()), None | Some(b'.'))
        && !name.contains('/')
}
