//! `validate`: what a valid configuration is still warned about, and the one line that
//! says it is valid.

use crate::config::Config;
use std::path::Path;

/// The config's own warnings, then the missing region (not an error here: the region may
/// come from the environment the daemon runs in).
pub fn warnings(cfg: &Config) -> Vec<String> {
    let mut warnings: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
    let region_from_env = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|r| !r.is_empty()));
    if cfg.region.is_none() && !region_from_env {
        warnings.push("region: no region is configured: set `region` in the config file, or AWS_REGION where the daemon runs (without either, `run` exits 78)".to_owned());
    }
    warnings
}

/// `<path>: valid (<n> role(s), <m> secret(s))`.
pub fn summary(path: &Path, cfg: &Config) -> String {
    format!(
        "{}: valid ({} role(s), {} secret(s))",
        path.display(),
        cfg.roles.len(),
        cfg.secrets.len()
    )
}
