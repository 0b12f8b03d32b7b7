//! The chart rendered with the real Helm library, by `.ci/render_pod.py` (the shapes and
//! values of `scripts/chart-check.sh`, plus the test's own values and the stated overlay).
use crate::common::{python, CrossAccount, Moto};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

pub struct Rendered {
    /// What podman plays.
    pub objects: Vec<Value>,
    /// The pod specs exactly as Helm rendered them, before the overlay.
    pub rendered_pods: Vec<Value>,
    /// The Roles and ClusterRoles the chart rendered.
    pub rbac: Vec<Value>,
    /// What the overlay changed (render_pod.py's PODMAN_GAPS), one entry per change.
    pub overlay: Vec<String>,
}

/// Extra inputs of a pod: the Secrets its volumes mount, and the Kubernetes API and
/// service-account files a kubelet would give it.
#[derive(Default)]
pub struct Inputs<'a> {
    pub secrets: Vec<(&'a str, &'a Path)>,
    /// Where the pod's emptyDir volumes are made, one directory each by volume name.
    pub empty_dirs: Option<&'a Path>,
    pub kube_api: Option<(String, &'a Path)>,
}

pub fn render(shape: &str, values: &Value, inputs: &Inputs) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let values_path = dir.path().join("values.json");
    std::fs::write(&values_path, values.to_string()).unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/render_pod.py"));
    for (name, path) in &inputs.secrets {
        cmd.arg("--secret")
            .arg(format!("{name}={}", path.display()));
    }
    if let Some(dir) = inputs.empty_dirs {
        cmd.arg("--empty-dirs").arg(dir);
    }
    if let Some((api, sa)) = &inputs.kube_api {
        cmd.args(["--kube-api", api, "--service-account"]).arg(sa);
    }
    let out = cmd.arg(shape).arg(&values_path).output().unwrap();
    assert!(
        out.status.success(),
        "render_pod.py {shape} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = |k: &str| v[k].as_array().unwrap().clone();
    Rendered {
        objects: list("objects"),
        rendered_pods: list("rendered_pods"),
        rbac: list("rbac"),
        overlay: list("overlay")
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect(),
    }
}

impl Rendered {
    /// A container of the first pod, as Helm rendered it (init containers included).
    pub fn container(&self, name: &str) -> &Value {
        let pod = &self.rendered_pods[0];
        ["initContainers", "containers"]
            .iter()
            .filter_map(|k| pod[*k].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name} in {pod}"))
    }

    /// The path and port number of a rendered HTTP probe (a named port resolved against the
    /// container's ports, as a kubelet does).
    pub fn probe(&self, container: &str, probe: &str) -> (String, u16) {
        let c = self.container(container);
        let get = &c[probe]["httpGet"];
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().unwrap() as u16,
            Value::String(name) => c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == *name)
                .unwrap()["containerPort"]
                .as_u64()
                .unwrap() as u16,
            other => panic!("probe port {other}"),
        };
        (get["path"].as_str().unwrap().to_owned(), port)
    }
}

/// The environment the daemon gets from values (`extraEnv`): moto's endpoint, the default
/// moto identity as base credentials (IRSA's stand-in), and IMDS off.
pub fn aws_env(moto: &Moto) -> Value {
    json!([
        {"name": "AWS_ENDPOINT_URL", "value": moto.endpoint()},
        {"name": "AWS_ACCESS_KEY_ID", "value": "testing"},
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "testing"},
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
    ])
}

/// A Secret's keys as a kubelet mounts them: one file per key, root-owned, group 65532 (the
/// pod's fsGroup), with the volume's defaultMode.
pub fn secret_dir(keys: &[(&str, &str)], mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (k, v) in keys {
        let path = dir.path().join(k);
        std::fs::write(&path, v).unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(65532)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// The ExternalId Secret of the example values (`externalId.existingSecret`), holding the
/// fixture role's ExternalId.
pub fn external_id_secret(fx: &CrossAccount) -> tempfile::TempDir {
    // 0440 = the chart's defaultMode (288) for the ExternalId volume.
    secret_dir(&[("external-id", &fx.external_id)], 0o440)
}

/// The `secret-ferry` values every shape's test sets: this checkout's image, a free admin
/// port, debug logs (more output for the leak scan), moto.
pub fn ferry_values(fx: &CrossAccount, port: u16, config: Value) -> Value {
    json!({
        "image": {"repository": "localhost/secret-ferry", "tag": "latest"},
        "port": port,
        "logLevel": "debug",
        "extraEnv": aws_env(&fx.moto),
        "config": config,
    })
}
