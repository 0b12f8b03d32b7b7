//! Log set-up: plain or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).

use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// The AWS SDK and HTTP crates log whole requests and responses at `trace` (signed
/// headers, bodies holding secret values); they are capped at `debug` whatever
/// `RUST_LOG` asks for, so that no log level can leak a value or a session token.
const CAPPED: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "aws_sdk_sts",
    "aws_sdk_secretsmanager",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
];

/// `wanted` with the AWS SDK and HTTP crates capped at `debug`; the tests' in-process
/// log capture applies the same filter as the daemon.
pub fn capped<S>(wanted: EnvFilter) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let cap = Targets::new()
        .with_default(Level::TRACE)
        .with_targets(CAPPED.iter().map(|t| (*t, Level::DEBUG)))
        // The SDK warns, at length, each time the instance metadata service has no region
        // for it; when no region is found the daemon's own error says what to set, once.
        .with_target("aws_config::imds::region", Level::ERROR);
    wanted.and(cap)
}

pub fn init(format: LogFormat) {
    let wanted = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = capped(wanted);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Plain => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().flatten_event(true).with_filter(filter))
            .init(),
    }
}
