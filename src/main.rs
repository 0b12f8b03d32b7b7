#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secret_ferry::admin::Admin;
use secret_ferry::app::{App, Roles};
use secret_ferry::credentials::FileCredentials;
use secret_ferry::credentials_endpoint::CredentialsEndpoint;
use secret_ferry::k8s::leader::{self, Elector, LeaderConfig};
use secret_ferry::k8s::Kube;
use secret_ferry::metrics::Metrics;
use secret_ferry::telemetry::{self, LogFormat};
use secret_ferry::{config, shutdown};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes; README.md documents them.
mod exit {
    pub const OK: u8 = 0;
    /// A sync failed in `--once` mode, or the daemon could not start.
    pub const FAILURE: u8 = 1;
    // 2 is clap's code for command-line usage errors.
    /// The configuration file is missing, unreadable or invalid (EX_CONFIG).
    pub const CONFIG: u8 = 78;
}

#[derive(Parser, Debug)]
#[command(
    name = "secret-ferry",
    version,
    about = "Assume a cross-account AWS role, poll Secrets Manager, write secrets to files atomically"
)]
struct Cli {
    /// Log line format.
    #[arg(
        long,
        value_enum,
        default_value = "plain",
        global = true,
        env = "SECRET_FERRY_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: keep every configured secret in sync with Secrets Manager.
    Run(RunArgs),
    /// Parse and validate a configuration file, printing every problem.
    Validate(ConfigArg),
    /// Walk the chain (base identity, roles, secrets, targets) once and report every link.
    Check(CheckArgs),
    /// Print the IAM documents the configuration needs, for every role.
    IamPolicy(IamPolicyArgs),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// `text`: one line per link with the fix for each failure; `json`: the same links as one
    /// JSON document.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args, Debug)]
struct IamPolicyArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The identity the daemon runs as (the trust policy's Principal); `check` prints it.
    #[arg(long)]
    caller_arn: Option<String>,
    /// Also require the caller to be in this AWS Organization (aws:PrincipalOrgID).
    #[arg(long)]
    org_id: Option<String>,
    /// `text`: every document under a heading, ready to paste; `json`:
    /// `{"<role>": {"trustPolicy", "permissionsPolicy", "kmsKeyPolicyStatement", "callerPolicy"}}`.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,
}

#[derive(Args, Debug)]
struct ConfigArg {
    /// Configuration file (YAML).
    #[arg(long, env = "SECRET_FERRY_CONFIG")]
    config: PathBuf,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Sync every secret once and exit: 0 if all succeeded (init-container use).
    #[arg(long)]
    once: bool,
    /// Address of the admin server (/metrics, /healthz, /readyz).
    #[arg(long, env = "SECRET_FERRY_LISTEN", default_value = "0.0.0.0:9779")]
    listen: SocketAddr,
    /// Run several replicas: only the holder of a coordination.k8s.io/v1 Lease polls and writes.
    #[arg(long)]
    leader_elect: bool,
    /// Name of the Lease (also marks the Secrets this instance may delete).
    #[arg(long, default_value = "secret-ferry")]
    lease_name: String,
    /// Namespace of the Lease; default: the daemon's own namespace.
    #[arg(long)]
    lease_namespace: Option<String>,
    /// How long a Lease holds without renewal before another replica may take it.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    lease_duration: Duration,
    /// The leader stops when it could not renew for this long (must be below --lease-duration).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    lease_renew_deadline: Duration,
    /// How often the Lease is renewed, or tried by a follower.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    lease_retry_period: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => validate(&args.config),
        Command::IamPolicy(args) => iam_policy(&args),
        Command::Check(args) => {
            telemetry::init(cli.log_format);
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(check(args)),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    exit::FAILURE
                }
            }
        }
        Command::Run(args) => {
            telemetry::init(cli.log_format);
            // Two workers are plenty for a poller; the blocking pool only runs file
            // writes, and each extra thread costs resident memory in a sidecar.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(4)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::from(exit::FAILURE);
                }
            };
            let code = runtime.block_on(run(args));
            // Do not wait on a blocking write that is stuck (a hung volume): the process
            // must exit promptly after SIGTERM.
            runtime.shutdown_timeout(Duration::from_millis(500));
            code
        }
    };
    ExitCode::from(code)
}

fn load(path: &std::path::Path) -> Result<config::Config, u8> {
    config::load(path).map_err(|errors| {
        eprintln!("error: invalid configuration in {}:", path.display());
        for problem in &errors.0 {
            eprintln!("  {problem}");
        }
        exit::CONFIG
    })
}

fn validate(path: &std::path::Path) -> u8 {
    match load(path) {
        Ok(cfg) => {
            for warning in &cfg.warnings {
                eprintln!("warning: {warning}");
            }
            // Not an error here: the region may come from the environment the daemon runs in.
            let region_from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|r| !r.is_empty()));
            if cfg.region.is_none() && !region_from_env {
                eprintln!("warning: region: no region is configured: set `region` in the config file, or AWS_REGION where the daemon runs (without either, `run` exits 78)");
            }
            println!(
                "{}: valid ({} role(s), {} secret(s))",
                path.display(),
                cfg.roles.len(),
                cfg.secrets.len()
            );
            exit::OK
        }
        Err(code) => code,
    }
}

fn iam_policy(args: &IamPolicyArgs) -> u8 {
    let cfg = match load(&args.config.config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let documents =
        secret_ferry::iam::documents(&cfg, args.caller_arn.as_deref(), args.org_id.as_deref());
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&documents).unwrap_or_default()
        ),
        Output::Text => print!("{}", secret_ferry::iam::render_text(&documents)),
    }
    exit::OK
}

async fn check(args: CheckArgs) -> u8 {
    let cfg = match load(&args.config.config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let sdk = sdk_config(&cfg).await;
    let metrics = match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
    };
    let needs = cfg
        .secrets
        .iter()
        .flat_map(|s| &s.targets)
        .any(|t| matches!(t, config::Target::KubernetesSecret(_)));
    let kube = if needs {
        match Kube::connect(metrics.clone(), "secret-ferry".to_owned()).await {
            Ok(kube) => Some(kube),
            Err(e) => {
                eprintln!("error: {e}");
                None
            }
        }
    } else {
        None
    };
    let app = match App::build_with(&cfg, &sdk, metrics, kube.as_ref()) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let links = app.check(&cfg, &sdk, kube.as_ref()).await;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&secret_ferry::app::check::render_json(&links))
                .unwrap_or_default()
        ),
        Output::Text => print!("{}", secret_ferry::app::check::render_text(&links)),
    }
    if links.iter().all(|l| l.ok) {
        exit::OK
    } else {
        exit::FAILURE
    }
}

/// The AWS SDK configuration the daemon runs with: the default chain (IRSA, Pod Identity,
/// instance profile, environment), or the configured base credential files.
async fn sdk_config(cfg: &config::Config) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = &cfg.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(files) = &cfg.base_credentials {
        loader = loader.credentials_provider(FileCredentials::new(
            files.access_key_id_file.clone(),
            files.secret_access_key_file.clone(),
        ));
    }
    loader.load().await
}

async fn run(args: RunArgs) -> u8 {
    let cfg = match load(&args.config.config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    match start(cfg, &args).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            e.downcast_ref::<secret_ferry::app::BuildError>()
                .map_or(exit::FAILURE, |_| exit::CONFIG)
        }
    }
}

async fn start(cfg: config::Config, args: &RunArgs) -> anyhow::Result<u8> {
    for warning in &cfg.warnings {
        tracing::warn!("config: {warning}");
    }
    let sdk = sdk_config(&cfg).await;
    let metrics = Metrics::new().context("cannot register metrics")?;
    if args.leader_elect && args.lease_renew_deadline >= args.lease_duration {
        anyhow::bail!(
            "--lease-renew-deadline ({:?}) must be shorter than --lease-duration ({:?}): the leader must stop before a follower may take over",
            args.lease_renew_deadline,
            args.lease_duration
        );
    }
    let kube = if needs_kube(&cfg, args) {
        Some(Kube::connect(metrics.clone(), args.lease_name.clone()).await?)
    } else {
        None
    };
    let app = App::build_with(&cfg, &sdk, metrics.clone(), kube.as_ref())?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        secrets = cfg.secrets.len(),
        roles = cfg.roles.len(),
        once = args.once,
        "secret-ferry starting"
    );
    // Each job holds its own copy of its secret's settings: keeping the parsed config too
    // would hold a second copy (about 340 B per secret, docs/performance.md).
    let (secrets, credentials_endpoint) = (cfg.secrets.len(), cfg.credentials_endpoint.clone());
    drop(cfg);

    if args.once {
        let failures = app.run_once().await;
        if failures.is_empty() {
            tracing::info!("all {} secret(s) synced", secrets);
            return Ok(exit::OK);
        }
        report_failures(&failures, secrets);
        return Ok(exit::FAILURE);
    }

    let listener = Admin::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    tracing::info!(listen = %args.listen, "admin server listening");
    let (trigger, signal) = shutdown::channel();
    if let Some(endpoint) = &credentials_endpoint {
        let listener = CredentialsEndpoint::<Roles>::bind(endpoint.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (credentialsEndpoint.listen)",
                    endpoint.listen
                )
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
    let readiness = app.readiness();
    let admin = Admin::new(metrics.clone(), readiness.clone(), refresh.clone());
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
    let (Some(kube), true) = (kube, args.leader_elect) else {
        metrics.set_leader(true);
        app.run(signal).await;
        tracing::info!("stopped");
        return Ok(exit::OK);
    };
    let namespace = args
        .lease_namespace
        .clone()
        .or_else(|| kube.namespace.clone())
        .context("--leader-elect: cannot tell the namespace for the Lease; set --lease-namespace or POD_NAMESPACE")?;
    let elector = std::sync::Arc::new(Elector::new(
        kube.clone(),
        LeaderConfig {
            lease_name: args.lease_name.clone(),
            namespace,
            identity: leader::identity(),
            lease_duration: args.lease_duration,
            renew_deadline: args.lease_renew_deadline,
            retry_period: args.lease_retry_period,
        },
        metrics.clone(),
    ));
    readiness.set_standby(true);
    let mut waiting = signal.clone();
    if !elector.acquire(&mut waiting).await {
        tracing::info!("stopped while standing by");
        return Ok(exit::OK);
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
        return Ok(exit::FAILURE);
    }
    elector.release().await;
    tracing::info!("stopped");
    Ok(exit::OK)
}

/// The end of `run --once`: one line per cause (see `app::summary`).
fn report_failures(failures: &[secret_ferry::app::SyncError], secrets: usize) {
    for line in secret_ferry::app::summary::summarize(failures, secrets) {
        match line.reason {
            Some(reason) => tracing::error!(reason, "{}", line.text),
            None => tracing::error!("{}", line.text),
        }
    }
}

/// The Kubernetes client is only built when something needs it, so a file-only sidecar
/// needs no service-account token or RBAC at all.
fn needs_kube(cfg: &config::Config, args: &RunArgs) -> bool {
    args.leader_elect
        || !cfg.tenants.is_empty()
        || cfg
            .secrets
            .iter()
            .flat_map(|s| &s.targets)
            .any(|t| matches!(t, config::Target::KubernetesSecret(_)))
}
