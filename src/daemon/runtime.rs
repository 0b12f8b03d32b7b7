//! Runs the daemon as a process: the admin server, the credentials endpoint, the signal
//! handlers and, under `--leader-elect`, the Lease, around [`App::run`]. `main.rs` only
//! turns the command line into [`Options`] and the [`Outcome`] into an exit code.

use super::error::BuildError;
use super::{summary, App};
use crate::admin::Admin;
use crate::config::{self, Config, Target};
use crate::credentials::{base_sdk_config, Roles};
use crate::k8s::leader::{self, Elector, LeaderConfig};
use crate::k8s::{Kube, KubeSetupError};
use crate::metrics::Metrics;
use crate::shutdown::{self, Signal, Trigger};
use crate::vend::CredentialsEndpoint;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How `run` runs, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sync every secret once and return.
    pub once: bool,
    /// The admin server's address (`--listen`).
    pub listen: SocketAddr,
    pub leader_elect: bool,
    pub lease: LeaseOptions,
}

/// The Lease of `--leader-elect`; its name also marks the Secrets this instance may delete.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    pub name: String,
    /// Default: the daemon's own namespace.
    pub namespace: Option<String>,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// How a run that started ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every secret synced (`--once`), or stopped on a signal.
    Done,
    /// A sync failed under `--once`, or the leader lost its Lease.
    Failed,
}

/// Why the daemon could not start. Each variant says what it was doing; the cause is the
/// source, so that `{:#}` prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot register metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("--lease-renew-deadline ({renew_deadline:?}) must be shorter than --lease-duration ({duration:?}): the leader must stop before a follower may take over")]
    LeaseTimes {
        renew_deadline: Duration,
        duration: Duration,
    },
    #[error(transparent)]
    Kube(#[from] KubeSetupError),
    /// The configuration cannot be run (`main` exits with the config error code).
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot listen on {addr} ({setting})")]
    Listen {
        addr: SocketAddr,
        setting: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("--leader-elect: cannot tell the namespace for the Lease; set --lease-namespace or POD_NAMESPACE")]
    NoLeaseNamespace,
}

/// Runs the daemon until a signal stops it (or once, with `--once`).
pub async fn run(cfg: Config, options: &Options) -> Result<Outcome, StartError> {
    for warning in &cfg.warnings {
        tracing::warn!("config: {warning}");
    }
    let sdk = base_sdk_config(&cfg).await;
    let metrics = Metrics::new().map_err(StartError::Metrics)?;
    let lease = &options.lease;
    if options.leader_elect && lease.renew_deadline >= lease.duration {
        return Err(StartError::LeaseTimes {
            renew_deadline: lease.renew_deadline,
            duration: lease.duration,
        });
    }
    let kube = if needs_kube(&cfg, options.leader_elect) {
        Some(Kube::connect(metrics.clone(), lease.name.clone()).await?)
    } else {
        None
    };
    let app = App::build_with(&cfg, &sdk, metrics.clone(), kube.as_ref())?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        secrets = cfg.secrets.len(),
        pushes = cfg.pushes.len(),
        roles = cfg.roles.len(),
        once = options.once,
        "secret-ferry starting"
    );
    // Each job holds its own copy of its secret's settings: keeping the parsed config too
    // would hold a second copy (about 340 B per secret, docs/performance.md).
    let (secrets, credentials_endpoint) = (cfg.secrets.len(), cfg.credentials_endpoint.clone());
    drop(cfg);

    if options.once {
        return Ok(run_once(app, secrets).await);
    }
    let (trigger, signal) = serve(&app, &metrics, options.listen, credentials_endpoint).await?;
    let (Some(kube), true) = (kube, options.leader_elect) else {
        metrics.set_leader(true);
        app.run(signal).await;
        tracing::info!("stopped");
        return Ok(Outcome::Done);
    };
    lead(app, kube, lease, &metrics, trigger, signal).await
}

async fn run_once(app: App, secrets: usize) -> Outcome {
    let report = app.run_once_with_credentials_files().await;
    let mut outcome = Outcome::Done;
    if report.sync_failures.is_empty() {
        tracing::info!("all {} secret(s) synced", secrets);
    } else {
        log_lines(summary::summarize(&report.sync_failures, secrets));
        outcome = Outcome::Failed;
    }
    for failure in &report.push_failures {
        tracing::error!(reason = failure.kind(), "{failure}");
        outcome = Outcome::Failed;
    }
    if report.credentials_files == 0 {
        return outcome;
    }
    if report.unwritten.is_empty() {
        tracing::info!(
            "{}",
            summary::credentials_files_written(report.credentials_files)
        );
    } else {
        log_lines(summary::summarize_credentials_files(
            &report.unwritten,
            report.credentials_files,
        ));
        outcome = Outcome::Failed;
    }
    outcome
}

/// Binds the admin server (and the credentials endpoint, if configured) and installs the
/// signal handlers; returns the shutdown channel they all listen to.
async fn serve(
    app: &App,
    metrics: &Metrics,
    listen: SocketAddr,
    credentials_endpoint: Option<config::CredentialsEndpoint>,
) -> Result<(Trigger, Signal), StartError> {
    let listener = Admin::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen,
            setting: "--listen",
            source,
        })?;
    tracing::info!(listen = %listen, "admin server listening");
    let (trigger, signal) = shutdown::channel();
    if let Some(endpoint) = &credentials_endpoint {
        let listener = CredentialsEndpoint::<Roles>::bind(endpoint.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: endpoint.listen,
                setting: "credentialsEndpoint.listen",
                source,
            })?;
        tracing::info!(listen = %endpoint.listen, roles = ?endpoint.roles, "credentials endpoint listening");
        let server = CredentialsEndpoint::new(
            app.roles(),
            endpoint.roles.clone(),
            endpoint.token_file.clone(),
        );
        tokio::spawn(server.serve(listener, signal.clone()));
    }
    let refresh = app.refresh_handle();
    let admin = Admin::new(metrics.clone(), app.readiness(), refresh.clone());
    tokio::spawn(admin.serve(listener, signal.clone()));
    tokio::spawn(async move {
        if let Err(e) = shutdown::refresh_on_sighup(move || refresh.all()).await {
            tracing::error!("cannot install the SIGHUP handler: {e}");
        }
    });
    let os_trigger = trigger.clone();
    tokio::spawn(async move {
        if let Err(e) = shutdown::watch_os_signals(os_trigger).await {
            tracing::error!("cannot install signal handlers: {e}");
        }
    });
    Ok((trigger, signal))
}

/// `--leader-elect`: stands by until this instance holds the Lease, then runs while it
/// holds it; losing it stops the writes at once.
async fn lead(
    app: App,
    kube: Kube,
    lease: &LeaseOptions,
    metrics: &Metrics,
    trigger: Trigger,
    signal: Signal,
) -> Result<Outcome, StartError> {
    let namespace = lease
        .namespace
        .clone()
        .or_else(|| kube.namespace.clone())
        .ok_or(StartError::NoLeaseNamespace)?;
    let elector = Arc::new(Elector::new(
        kube.clone(),
        LeaderConfig {
            lease_name: lease.name.clone(),
            namespace,
            identity: leader::identity(),
            lease_duration: lease.duration,
            renew_deadline: lease.renew_deadline,
            retry_period: lease.retry_period,
        },
        metrics.clone(),
    ));
    let readiness = app.readiness();
    readiness.set_standby(true);
    let mut waiting = signal.clone();
    if !elector.acquire(&mut waiting).await {
        tracing::info!("stopped while standing by");
        return Ok(Outcome::Done);
    }
    readiness.set_standby(false);
    let holder = {
        let elector = elector.clone();
        let signal = signal.clone();
        tokio::spawn(async move {
            let held = elector.hold(signal).await;
            if held == leader::Held::Lost {
                // Stop writing now: a follower may take over once the Lease expires.
                trigger.fire();
            }
            held
        })
    };
    app.delete_unconfigured_secrets(&kube).await;
    app.run(signal).await;
    let held = holder.await.unwrap_or(leader::Held::Lost);
    if held == leader::Held::Lost {
        tracing::error!("lost the leader Lease; exiting so that a restart stands by");
        return Ok(Outcome::Failed);
    }
    elector.release().await;
    tracing::info!("stopped");
    Ok(Outcome::Done)
}

/// The end of `run --once`: one line per cause (see `summary`).
fn log_lines(lines: Vec<summary::Line>) {
    for line in lines {
        match line.reason {
            Some(reason) => tracing::error!(reason, "{}", line.text),
            None => tracing::error!("{}", line.text),
        }
    }
}

/// The Kubernetes client is only built when something needs it, so a file-only sidecar
/// needs no service-account token or RBAC at all.
fn needs_kube(cfg: &Config, leader_elect: bool) -> bool {
    leader_elect || !cfg.tenants.is_empty() || has_kube_targets(cfg)
}

/// Whether a secret is written to a Kubernetes Secret, or a push reads one.
pub fn has_kube_targets(cfg: &Config) -> bool {
    cfg.secrets
        .iter()
        .flat_map(|s| &s.targets)
        .any(|t| matches!(t, Target::KubernetesSecret(_)))
        || cfg
            .pushes
            .iter()
            .any(|p| matches!(p.from, crate::config::PushSource::KubernetesSecret { .. }))
}
