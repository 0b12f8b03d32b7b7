//! How every AWS SDK client is set up: bounded timeouts, one shared HTTPS client, and the
//! interceptor that counts calls.

use super::error::{class_of, xml_or_json_code, Class};
use crate::metrics::{Metrics, Outcome};
use std::fmt;
use std::time::Duration;

/// The SDK sets no read timeout by default: a hung endpoint would stall a secret's
/// polling loop (or a role's refresh) forever. These bound every AWS call.
pub fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// One HTTPS client for every SDK client. Without it each client (two per role) builds
/// its own connector, TLS configuration and connection pool: about 300 KiB per role.
/// Configured as the SDK's own default (rustls with aws-lc, proxy from the environment).
pub fn shared_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// Counts every request AWS answered (`secret_ferry_aws_api_calls_total`), retries
/// included, since each one is billed and counts against the API quota. Added to every
/// SDK client the daemon builds.
#[derive(Clone)]
pub struct CountCalls(pub Metrics);

impl fmt::Debug for CountCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CountCalls")
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "CountCalls"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        // Nothing answered (connection refused, timed out): nothing was billed.
        let Some(response) = context.response() else {
            return Ok(());
        };
        let outcome = if response.status().is_success() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        if let Some(meta) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            self.0.aws_api_call(meta.service(), meta.name(), outcome);
            let status = response.status().as_u16();
            let throttled = status == 429
                || (status == 400
                    && response
                        .body()
                        .bytes()
                        .and_then(xml_or_json_code)
                        .is_some_and(|code| class_of(Some(&code), None, None) == Class::Throttled));
            if throttled {
                self.0.aws_throttled(meta.service(), meta.name());
            }
        }
        Ok(())
    }
}
