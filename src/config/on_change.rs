//! A secret's `onChange` actions: signal a process, call a URL or touch a file.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use super::read::{checked_string, parsed_string, read_path};
use super::yaml::{or_default, Checker, Field, Fields};

/// One way to tell the app that its secret changed.
#[derive(Debug, Clone, PartialEq)]
pub enum OnChange {
    /// Send `signal` to every process whose name (`/proc/PID/comm`) is `process`.
    Signal { process: String, signal: SignalName },
    /// Call an HTTP endpoint of the app, e.g. a reload hook.
    Http {
        url: String,
        method: String,
        timeout: Duration,
    },
    /// Create the file or move its modification time to now.
    Touch(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalName {
    Hup,
    Int,
    Quit,
    Term,
    Usr1,
    Usr2,
}

const SIGNALS: &[(&str, SignalName)] = &[
    ("HUP", SignalName::Hup),
    ("INT", SignalName::Int),
    ("QUIT", SignalName::Quit),
    ("TERM", SignalName::Term),
    ("USR1", SignalName::Usr1),
    ("USR2", SignalName::Usr2),
];
const HTTP_METHODS: &[&str] = &["POST", "PUT", "GET"];
const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
const NOTIFY_TIMEOUTS: RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(60);
pub(super) const DEBOUNCES: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);
/// Linux keeps 15 bytes of a process name in `/proc/PID/comm`.
const MAX_PROCESS_NAME: usize = 15;

/// An action is a mapping with a single key naming its kind, like a target.
pub(super) fn read_on_change(c: &mut Checker, at: &Field) -> Option<OnChange> {
    let mut f = Fields::open(c, at)?;
    let (signal, http, touch) = (f.get("signal"), f.get("http"), f.get("touch"));
    f.finish(c);
    match (signal, http, touch) {
        (Some(v), None, None) => read_signal_action(c, &v),
        (None, Some(v), None) => read_http_action(c, &v),
        (None, None, Some(v)) => read_path(c, &v).map(OnChange::Touch),
        _ => {
            c.problem(
                at,
                "must have exactly one of signal, http or touch; start a new list item for each",
            );
            None
        }
    }
}

fn read_signal_action(c: &mut Checker, at: &Field) -> Option<OnChange> {
    let mut f = Fields::open(c, at)?;
    let process = f.require(c, "process").and_then(|v| {
        checked_string(
            c,
            &v,
            |p| !p.is_empty() && p.len() <= MAX_PROCESS_NAME && !p.contains('/'),
            "a process name as in /proc/PID/comm (1 to 15 bytes, no '/')",
        )
    });
    let signal = f.require(c, "signal").and_then(|v| {
        let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        parsed_string(
            c,
            &v,
            |text| {
                let text = text.strip_prefix("SIG").unwrap_or(text);
                SIGNALS.iter().find(|(n, _)| *n == text).map(|(_, s)| *s)
            },
            &format!("one of {}", names.join(", ")),
        )
    });
    f.finish(c);
    Some(OnChange::Signal {
        process: process?,
        signal: signal?,
    })
}

fn read_http_action(c: &mut Checker, at: &Field) -> Option<OnChange> {
    let mut f = Fields::open(c, at)?;
    let url = f.require(c, "url").and_then(|v| {
        checked_string(
            c,
            &v,
            |u| {
                u.strip_prefix("http://")
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !u.contains(char::is_whitespace))
            },
            "an http:// URL of the app (https is not supported: the hook is meant for a loopback endpoint)",
        )
    });
    let method = or_default(f.get("method"), "POST".to_owned(), |v| {
        checked_string(
            c,
            v,
            |m| HTTP_METHODS.contains(&m),
            &format!("one of {}", HTTP_METHODS.join(", ")),
        )
    });
    let timeout = or_default(f.get("timeout"), DEFAULT_NOTIFY_TIMEOUT, |v| {
        c.duration_within(v, NOTIFY_TIMEOUTS)
    });
    f.finish(c);
    Some(OnChange::Http {
        url: url?,
        method: method?,
        timeout: timeout?,
    })
}
