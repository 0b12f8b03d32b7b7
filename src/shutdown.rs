//! One drain signal shared by every task. The first SIGTERM or SIGINT starts a graceful
//! drain; a second one exits at once, for an operator who does not want to wait.

use tokio::sync::watch;

/// Fires the drain signal.
#[derive(Clone)]
pub struct Trigger(watch::Sender<bool>);

/// Awaited by tasks; cheap to clone.
#[derive(Clone)]
pub struct Signal(watch::Receiver<bool>);

pub fn channel() -> (Trigger, Signal) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Signal(rx))
}

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    pub fn signal(&self) -> Signal {
        Signal(self.0.subscribe())
    }
}

impl Signal {
    /// Resolves once the drain has started (or the trigger is gone, which means the same).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}

/// Fires `trigger` on the first SIGTERM/SIGINT and exits the process on the second.
pub async fn watch_os_signals(trigger: Trigger) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; draining"),
        _ = int.recv() => tracing::info!("SIGINT received; draining"),
    }
    trigger.fire();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal received; exiting without waiting");
    std::process::exit(130);
}

/// Calls `refresh` on every SIGHUP, the conventional "reload" signal, so that an operator
/// can make every secret sync now. Runs until the process exits.
pub async fn refresh_on_sighup(refresh: impl Fn()) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received; syncing every secret now");
        refresh();
    }
    Ok(())
}
