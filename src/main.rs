#![forbid(unsafe_code)]

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use secret_ferry::admin::Admin;
use secret_ferry::app::{App, Roles};
use secret_ferry::credentials::FileCredentials;
use secret_ferry::credentials_endpoint::CredentialsEndpoint;
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate(args) => validate(&args.config),
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
    let sdk = loader.load().await;
    let metrics = Metrics::new().context("cannot register metrics")?;
    let app = App::build(&cfg, &sdk, metrics.clone())?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        secrets = cfg.secrets.len(),
        roles = cfg.roles.len(),
        once = args.once,
        "secret-ferry starting"
    );

    if args.once {
        let failures = app.run_once().await;
        if failures.is_empty() {
            tracing::info!("all {} secret(s) synced", cfg.secrets.len());
            return Ok(exit::OK);
        }
        for failure in &failures {
            tracing::error!(reason = failure.kind(), "{failure}");
        }
        tracing::error!(
            "{} of {} secret(s) failed to sync",
            failures.len(),
            cfg.secrets.len()
        );
        return Ok(exit::FAILURE);
    }

    let listener = Admin::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    tracing::info!(listen = %args.listen, "admin server listening");
    let (trigger, signal) = shutdown::channel();
    if let Some(endpoint) = &cfg.credentials_endpoint {
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
    let admin = Admin::new(metrics, app.readiness(), refresh.clone());
    tokio::spawn(admin.serve(listener, signal.clone()));
    tokio::spawn(async move {
        if let Err(e) = shutdown::refresh_on_sighup(move || refresh.all()).await {
            tracing::error!("cannot install the SIGHUP handler: {e}");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = shutdown::watch_os_signals(trigger).await {
            tracing::error!("cannot install signal handlers: {e}");
        }
    });
    app.run(signal).await;
    tracing::info!("stopped");
    Ok(exit::OK)
}
