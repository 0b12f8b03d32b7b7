#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use secret_ferry::commands;
use secret_ferry::config;
use secret_ferry::daemon::runtime::{self as daemon, LeaseOptions, Options, Outcome, StartError};
use secret_ferry::telemetry::{self, LogFormat};
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
            for warning in commands::validate::warnings(&cfg) {
                eprintln!("warning: {warning}");
            }
            println!("{}", commands::validate::summary(path, &cfg));
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
        commands::iam_policy::documents(&cfg, args.caller_arn.as_deref(), args.org_id.as_deref());
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&documents).unwrap_or_default()
        ),
        Output::Text => print!("{}", commands::iam_policy::render_text(&documents)),
    }
    exit::OK
}

async fn check(args: CheckArgs) -> u8 {
    let cfg = match load(&args.config.config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let checked = match commands::check::run(&cfg).await {
        Ok(checked) => checked,
        Err(commands::check::CheckError::Metrics(e)) => {
            eprintln!("error: {e}");
            return exit::FAILURE;
        }
        Err(commands::check::CheckError::Build { source, kube_error }) => {
            if let Some(e) = kube_error {
                eprintln!("error: {e}");
            }
            eprintln!("error: {source}");
            return exit::CONFIG;
        }
    };
    if let Some(e) = &checked.kube_error {
        eprintln!("error: {e}");
    }
    let links = checked.links;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&commands::check::render_json(&links)).unwrap_or_default()
        ),
        Output::Text => print!("{}", commands::check::render_text(&links)),
    }
    if links.iter().all(|l| l.ok) {
        exit::OK
    } else {
        exit::FAILURE
    }
}

async fn run(args: RunArgs) -> u8 {
    let cfg = match load(&args.config.config) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let options = Options {
        once: args.once,
        listen: args.listen,
        leader_elect: args.leader_elect,
        lease: LeaseOptions {
            name: args.lease_name,
            namespace: args.lease_namespace,
            duration: args.lease_duration,
            renew_deadline: args.lease_renew_deadline,
            retry_period: args.lease_retry_period,
        },
    };
    match daemon::run(cfg, &options).await {
        Ok(Outcome::Done) => exit::OK,
        Ok(Outcome::Failed) => exit::FAILURE,
        Err(e) => {
            let code = match e {
                StartError::Build(_) => exit::CONFIG,
                _ => exit::FAILURE,
            };
            // `{:#}`: the error and every cause, on one line.
            tracing::error!("{:#}", anyhow::Error::from(e));
            code
        }
    }
}
