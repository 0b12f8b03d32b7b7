//! Telling the app that its secret changed: a signal to its process (pods with
//! `shareProcessNamespace: true`), a call to its reload endpoint, or a touched file.
//! Changes are debounced, so a burst of rotations makes one notification.

use crate::config::{OnChange, SignalName};
use crate::metrics::{Metrics, Outcome};
use crate::shutdown::Signal;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Wakes a secret's notifier; cheap to clone.
#[derive(Clone, Default)]
pub struct Changed(Arc<Notify>);

// === impl Changed ===

impl Changed {
    pub fn changed(&self) {
        self.0.notify_one();
    }
}

/// Runs until `shutdown`: after each change, waits until `debounce` passes without another
/// one, then runs every action once.
pub async fn run(
    secret: String,
    actions: Vec<OnChange>,
    debounce: Duration,
    changed: Changed,
    metrics: Metrics,
    mut shutdown: Signal,
) {
    loop {
        tokio::select! {
            _ = changed.0.notified() => {}
            _ = shutdown.wait() => return,
        }
        loop {
            tokio::select! {
                _ = changed.0.notified() => continue,
                _ = tokio::time::sleep(debounce) => break,
                _ = shutdown.wait() => return,
            }
        }
        for action in &actions {
            let kind = kind(action);
            let outcome = match perform(action).await {
                Ok(detail) => {
                    tracing::info!(secret = %secret, kind, "notified: {detail}");
                    Outcome::Success
                }
                Err(why) => {
                    tracing::warn!(secret = %secret, kind, "notification failed: {why}");
                    Outcome::Failure
                }
            };
            metrics.notified(&secret, kind, outcome);
        }
    }
}

fn kind(action: &OnChange) -> &'static str {
    match action {
        OnChange::Signal { .. } => "signal",
        OnChange::Http { .. } => "http",
        OnChange::Touch(_) => "touch",
    }
}

async fn perform(action: &OnChange) -> Result<String, String> {
    match action {
        OnChange::Touch(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || touch(&path))
                .await
                .map_err(|e| e.to_string())?
        }
        OnChange::Http {
            url,
            method,
            timeout,
        } => tokio::time::timeout(*timeout, http(url, method))
            .await
            .map_err(|_| {
                format!(
                    "{method} {url} timed out after {}",
                    humantime::format_duration(*timeout)
                )
            })?,
        OnChange::Signal { process, signal } => {
            let (process, signal) = (process.clone(), *signal);
            tokio::task::spawn_blocking(move || send_signal(&process, signal))
                .await
                .map_err(|e| e.to_string())?
        }
    }
}

fn touch(path: &std::path::Path) -> Result<String, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.set_modified(SystemTime::now())
        .map_err(|e| format!("cannot touch {}: {e}", path.display()))?;
    Ok(format!("touched {}", path.display()))
}

/// A minimal HTTP/1.1 request: reload hooks live on the app's loopback port, so no TLS
/// or redirects; any 2xx is success.
async fn http(url: &str, method: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: secret-ferry\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send to {address}: {e}"))?;
    let mut head = vec![0u8; 64];
    let n = stream
        .read(&mut head)
        .await
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{address} did not answer HTTP"))?;
    if (200..300).contains(&status) {
        Ok(format!("{method} {url} answered {status}"))
    } else {
        Err(format!("{method} {url} answered {status}"))
    }
}

/// Signals every process named `process` (as `/proc/PID/comm` shows it), except this one.
fn send_signal(process: &str, signal: SignalName) -> Result<String, String> {
    use rustix::process::{kill_process, Pid, Signal as Sig};
    let sig = match signal {
        SignalName::Hup => Sig::HUP,
        SignalName::Int => Sig::INT,
        SignalName::Quit => Sig::QUIT,
        SignalName::Term => Sig::TERM,
        SignalName::Usr1 => Sig::USR1,
        SignalName::Usr2 => Sig::USR2,
    };
    let me = std::process::id();
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
    let mut signalled = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end_matches('\n') != process {
            continue;
        }
        let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        match kill_process(target, sig) {
            Ok(()) => signalled.push(pid),
            Err(e) => return Err(format!("cannot signal {process} (pid {pid}): {e}")),
        }
    }
    if signalled.is_empty() {
        return Err(format!(
            "no process named {process:?} is visible; the pod needs shareProcessNamespace: true"
        ));
    }
    Ok(format!("sent {signal:?} to {process} (pids {signalled:?})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_makes_one_notification() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join(".changed");
        let metrics = Metrics::new().unwrap();
        let changed = Changed::default();
        let (trigger, signal) = crate::shutdown::channel();
        let task = tokio::spawn(run(
            "db".into(),
            vec![OnChange::Touch(flag.clone())],
            Duration::from_secs(2),
            changed.clone(),
            metrics.clone(),
            signal,
        ));
        let fired = |m: &Metrics| {
            m.render()
                .unwrap()
                .lines()
                .find(|l| {
                    l.starts_with(
                        r#"secret_ferry_notify_total{kind="touch",result="success",secret="db"}"#,
                    )
                })
                .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        };
        for _ in 0..3 {
            changed.changed();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(fired(&metrics), None, "still within the debounce");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        // The touch runs on the blocking pool; let it finish.
        for _ in 0..100 {
            if fired(&metrics).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fired(&metrics).as_deref(), Some("1"));
        assert!(flag.exists());
        changed.changed();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        for _ in 0..100 {
            if fired(&metrics).as_deref() == Some("2") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fired(&metrics).as_deref(), Some("2"));
        trigger.fire();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn http_hook_needs_a_2xx_and_names_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["204 No Content", "500 Internal Server Error"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/-/reload");
        assert!(http(&url, "POST").await.unwrap().contains("204"));
        let err = http(&url, "POST").await.unwrap_err();
        assert!(err.contains("500") && err.contains("/-/reload"), "{err}");
        let closed = format!("http://127.0.0.1:{}/x", port);
        assert!(http(&closed, "POST").await.is_err());
    }

    #[test]
    fn signal_with_no_such_process_says_what_the_pod_needs() {
        let err = send_signal("no-such-proc-x", SignalName::Hup).unwrap_err();
        assert!(err.contains("shareProcessNamespace"), "{err}");
    }
}
