//! A daemon running in this test process (the library's `App::run`), stopped with `stop`;
//! the areas add their own waits in `impl Daemon` blocks of their own.

use super::{capture, capture_logs, metric_or_zero};
use secret_ferry::daemon::App;
use secret_ferry::health::{Readiness, RefreshHandle};
use secret_ferry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

pub struct Daemon {
    pub metrics: Metrics,
    pub readiness: Arc<Readiness>,
    pub refresh: RefreshHandle,
    trigger: secret_ferry::shutdown::Trigger,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Builds the daemon from `yaml` (no Kubernetes client) and runs it.
    pub fn start(yaml: &str, sdk: &aws_config::SdkConfig) -> Daemon {
        // The library runs in this process, which is shared with the tests that install the
        // log capture: install it here too, so that whether these logs reach the leak scan
        // does not depend on which test ran first.
        capture_logs();
        let cfg = secret_ferry::config::parse(yaml).unwrap();
        let metrics = Metrics::new().unwrap();
        let app = App::build(&cfg, sdk, metrics.clone()).unwrap();
        Self::run(app, metrics)
    }

    /// Runs an app built by the caller (with `metrics`, its registry).
    pub fn run(app: App, metrics: Metrics) -> Daemon {
        capture_logs();
        let readiness = app.readiness();
        let refresh = app.refresh_handle();
        let (trigger, signal) = secret_ferry::shutdown::channel();
        let task = tokio::spawn(app.run(signal));
        Daemon {
            metrics,
            readiness,
            refresh,
            trigger,
            task,
        }
    }

    /// One series of a fresh scrape (0 when absent); the scrape joins the leak scan.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.render().unwrap();
        capture("metrics", text.as_bytes());
        metric_or_zero(&text, series)
    }

    /// Fires shutdown and waits (up to 10 s) for the daemon to return.
    pub async fn stop(self) {
        self.trigger.fire();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}
