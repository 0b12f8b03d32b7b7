//! Where credentials go: `baseCredentials`, `credentialOutputs` and `credentialsEndpoint`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::claims::PathClaims;
use super::read::{
    checked_string, first_use, parsed_string, read_list, read_path, read_reference, unique, ROLES,
};
use super::rules::{is_name, read_file_mode};
use super::yaml::{or_default, Checker, Field, Fields};
use super::{ANY_NUMBER, AT_LEAST_ONE, DEFAULT_FILE_MODE};

const DEFAULT_PROFILE: &str = "default";
const LISTEN_FORM: &str =
    "an IP address and port such as \"127.0.0.1:9911\" (host names are not accepted)";

/// Long-lived access keys for the base identity, read from files.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseCredentials {
    pub access_key_id_file: PathBuf,
    pub secret_access_key_file: PathBuf,
}

/// A role's credentials written as an AWS shared credentials file, for other processes.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialOutput {
    /// The key of a role under `roles`.
    pub role: String,
    pub path: PathBuf,
    /// The `[profile]` section the credentials are written under.
    pub profile: String,
    /// Permission bits of the file, at most 0o777.
    pub mode: u32,
}

/// An HTTP endpoint serving role credentials to clients that present the token.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsEndpoint {
    pub listen: SocketAddr,
    /// The file holding the token clients must present.
    pub token_file: PathBuf,
    /// Keys of roles under `roles` that the endpoint serves.
    pub roles: Vec<String>,
    /// Whether `listen` may be reachable from other hosts.
    pub allow_non_loopback: bool,
}

pub(super) fn read_base_credentials(c: &mut Checker, at: &Field) -> Option<BaseCredentials> {
    let mut f = Fields::open(c, at)?;
    let access_key_id_file = f
        .require(c, "accessKeyIdFile")
        .and_then(|v| read_path(c, &v));
    let secret_access_key_file = f
        .require(c, "secretAccessKeyFile")
        .and_then(|v| read_path(c, &v));
    f.finish(c);
    Some(BaseCredentials {
        access_key_id_file: access_key_id_file?,
        secret_access_key_file: secret_access_key_file?,
    })
}

pub(super) fn read_credential_outputs(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    dirs: &PathClaims,
) -> Option<Vec<CredentialOutput>> {
    // Output path → path of the field that has it.
    let mut paths = BTreeMap::new();
    read_list(c, at, ANY_NUMBER, "credential output", |c, item| {
        read_credential_output(c, item, roles, dirs, &mut paths)
    })
}

fn read_credential_output(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
    dirs: &PathClaims,
    paths: &mut BTreeMap<PathBuf, String>,
) -> Option<CredentialOutput> {
    let mut f = Fields::open(c, at)?;
    let role = f
        .require(c, "role")
        .and_then(|v| read_reference(c, &v, roles, &ROLES));
    let file = f.require(c, "file").and_then(|v| Fields::open(c, &v));
    f.finish(c);
    let mut f = file?;
    let path = f
        .require(c, "path")
        .and_then(|v| read_output_path(c, &v, dirs, paths));
    let profile = or_default(f.get("profile"), DEFAULT_PROFILE.to_owned(), |v| {
        checked_string(
            c,
            v,
            |p| is_name(p, 64),
            "1 to 64 letters, digits, '_', '.' or '-'",
        )
    });
    let mode = or_default(f.get("mode"), DEFAULT_FILE_MODE, |v| read_file_mode(c, v));
    f.finish(c);
    Some(CredentialOutput {
        role: role?,
        path: path?,
        profile: profile?,
        mode: mode?,
    })
}

fn read_output_path(
    c: &mut Checker,
    at: &Field,
    dirs: &PathClaims,
    paths: &mut BTreeMap<PathBuf, String>,
) -> Option<PathBuf> {
    let path = read_path(c, at)?;
    let shown = path.display().to_string();
    // The target's writer manages everything in its directory and assumes it is the only one.
    if let Some((dir, owner)) = path.ancestors().find_map(|dir| dirs.get(dir)) {
        c.problem(
            at,
            format!(
                "{shown:?} is inside {:?}, the directory of {owner}; a target's directory \
                 belongs to its secret, so write the credentials elsewhere",
                dir.display().to_string()
            ),
        );
        return None;
    }
    if let Some(first) = first_use(paths, path.clone(), &at.path) {
        c.problem(
            at,
            format!("{shown:?} is already written by {first}; each output needs its own file"),
        );
        return None;
    }
    Some(path)
}

pub(super) fn read_credentials_endpoint(
    c: &mut Checker,
    at: &Field,
    roles: Option<&BTreeSet<String>>,
) -> Option<CredentialsEndpoint> {
    let mut f = Fields::open(c, at)?;
    let listen_field = f.require(c, "listen");
    let listen = listen_field
        .as_ref()
        .and_then(|v| parsed_string(c, v, |s| s.parse::<SocketAddr>().ok(), LISTEN_FORM));
    // Read right after `listen`, so that a problem with either comes in document order.
    let allow_non_loopback = or_default(f.get("allowNonLoopback"), false, |v| c.boolean(v));
    let listen = match (&listen_field, listen, allow_non_loopback) {
        (Some(at), Some(listen), Some(false)) => loopback_only(c, at, listen),
        (_, listen, _) => listen,
    };
    let token_file = f.require(c, "tokenFile").and_then(|v| read_path(c, &v));
    let served = f.require(c, "roles").and_then(|v| {
        let read = |c: &mut Checker, role: &Field| read_reference(c, role, roles, &ROLES);
        read_list(c, &v, AT_LEAST_ONE, "role", unique(read))
    });
    f.finish(c);
    Some(CredentialsEndpoint {
        listen: listen?,
        token_file: token_file?,
        roles: served?,
        allow_non_loopback: allow_non_loopback?,
    })
}

/// The endpoint hands out credentials, so by default it must not be reachable from other hosts.
fn loopback_only(c: &mut Checker, at: &Field, listen: SocketAddr) -> Option<SocketAddr> {
    // `to_canonical` so that `::ffff:127.0.0.1` counts as the loopback address it is.
    if listen.ip().to_canonical().is_loopback() {
        return Some(listen);
    }
    c.problem(
        at,
        format!(
            "{listen} is not a loopback address, so other hosts could fetch credentials from \
             it; set allowNonLoopback: true if that is intended"
        ),
    );
    None
}
