//! The daemon's configuration as YAML, for the tests where the configuration is scaffolding
//! rather than the subject. Tests of config parsing, hostile input and CLI validation keep
//! their literal YAML: there the text is what is tested.
//!
//! Values are written as given, as plain YAML scalars (or flow collections, for example
//! `onChange: [{touch: /x}]`): a caller quotes a value that YAML would otherwise read as
//! something else (`mode: "0440"`).

use std::fmt::Display;
use std::path::Path;

type Entries = Vec<(String, String)>;

/// `ConfigYaml::new().region(REGION).role("shared", &arn, &ext).secret("db", "app/db")
/// .uses_role("shared").option("refreshInterval", "1s").file_target(&dir).build()`.
#[derive(Debug, Clone, Default)]
pub struct ConfigYaml {
    top: Entries,
    roles: Vec<(String, Entries)>,
    secrets: Vec<Secret>,
}

#[derive(Debug, Clone, Default)]
struct Secret {
    entries: Entries,
    /// Each target: its kind (`file`, `kubernetesSecret`) and its keys.
    targets: Vec<(String, Entries)>,
}

fn entry(key: &str, value: impl Display) -> (String, String) {
    (key.to_owned(), value.to_string())
}

impl ConfigYaml {
    pub fn new() -> ConfigYaml {
        ConfigYaml::default()
    }

    pub fn region(self, region: &str) -> ConfigYaml {
        self.top("region", region)
    }

    /// A top-level key (`fetchStrategy`, `apiRateLimit`, or a whole flow mapping such as
    /// `credentialsEndpoint`).
    pub fn top(mut self, key: &str, value: impl Display) -> ConfigYaml {
        self.top.push(entry(key, value));
        self
    }

    /// A role with its ARN and ExternalId file.
    pub fn role(mut self, name: &str, role_arn: &str, external_id_file: &Path) -> ConfigYaml {
        self.roles.push((
            name.to_owned(),
            vec![
                entry("roleArn", role_arn),
                entry("externalIdFile", external_id_file.display()),
            ],
        ));
        self
    }

    /// Another key of the last role (`duration`, `sessionName`, ...).
    pub fn role_option(mut self, key: &str, value: impl Display) -> ConfigYaml {
        let (_, entries) = self.roles.last_mut().expect("role_option after a role");
        entries.push(entry(key, value));
        self
    }

    /// A secret read by `secret_id`.
    pub fn secret(mut self, name: &str, secret_id: &str) -> ConfigYaml {
        self.secrets.push(Secret {
            entries: vec![entry("name", name), entry("secretId", secret_id)],
            targets: Vec::new(),
        });
        self
    }

    /// An entry reading the Parameter Store parameter `parameter` (a selector allowed).
    pub fn parameter(mut self, name: &str, parameter: &str) -> ConfigYaml {
        self.secrets.push(Secret {
            entries: vec![entry("name", name), entry("parameter", parameter)],
            targets: Vec::new(),
        });
        self
    }

    /// The last secret is read through `role`.
    pub fn uses_role(self, role: &str) -> ConfigYaml {
        self.option("role", role)
    }

    /// Another key of the last secret (`refreshInterval`, `onChange`, ...).
    pub fn option(mut self, key: &str, value: impl Display) -> ConfigYaml {
        self.last_secret().entries.push(entry(key, value));
        self
    }

    /// A file target of the last secret writing into `dir`.
    pub fn file_target(self, dir: &Path) -> ConfigYaml {
        self.file_target_with(dir, &[])
    }

    /// A file target writing into `dir`, with more keys (`mode`, ...).
    pub fn file_target_with(mut self, dir: &Path, more: &[(&str, &str)]) -> ConfigYaml {
        let mut entries = vec![entry("dir", dir.display())];
        entries.extend(more.iter().map(|(k, v)| entry(k, v)));
        self.last_secret()
            .targets
            .push(("file".to_owned(), entries));
        self
    }

    /// A Kubernetes Secret target of the last secret.
    pub fn kube_target(mut self, name: &str) -> ConfigYaml {
        self.last_secret()
            .targets
            .push(("kubernetesSecret".to_owned(), vec![entry("name", name)]));
        self
    }

    fn last_secret(&mut self) -> &mut Secret {
        self.secrets.last_mut().expect("a secret first")
    }

    pub fn build(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.top {
            out.push_str(&format!("{key}: {value}\n"));
        }
        if !self.roles.is_empty() {
            out.push_str("roles:\n");
            for (name, entries) in &self.roles {
                out.push_str(&format!("  {name}:\n"));
                for (key, value) in entries {
                    out.push_str(&format!("    {key}: {value}\n"));
                }
            }
        }
        out.push_str("secrets:\n");
        for secret in &self.secrets {
            for (i, (key, value)) in secret.entries.iter().enumerate() {
                let lead = if i == 0 { "  - " } else { "    " };
                out.push_str(&format!("{lead}{key}: {value}\n"));
            }
            if !secret.targets.is_empty() {
                out.push_str("    targets:\n");
                for (kind, entries) in &secret.targets {
                    out.push_str(&format!("      - {kind}:\n"));
                    for (key, value) in entries {
                        out.push_str(&format!("          {key}: {value}\n"));
                    }
                }
            }
        }
        out
    }
}
