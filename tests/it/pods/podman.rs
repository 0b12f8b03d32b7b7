//! podman as the tests use it: the runtime options `scripts/image.sh` found this machine needs,
//! the images, and a played pod that is always taken down.
use crate::common::capture;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where `scripts/image.sh` keeps its state (the same default).
fn state_dir() -> PathBuf {
    std::env::var_os("SECRET_FERRY_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cache/secret-ferry"))
}

/// The global podman options containers need here (`--runtime <wrapper>` on a machine that
/// refuses rlimits, nothing elsewhere), as `scripts/image.sh` recorded them.
fn runtime_args() -> Vec<String> {
    let path = state_dir().join("podman-args");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run scripts/image.sh first (scripts/test.sh does), which builds the image \
             and records how podman runs containers here",
            path.display()
        )
    });
    text.split_whitespace().map(str::to_owned).collect()
}

pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(runtime_args());
    cmd
}

/// Runs a podman command that must succeed; its stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run podman");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The image `scripts/image.sh` built from this checkout.
pub fn image() -> &'static str {
    static CHECKED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    const IMAGE: &str = "localhost/secret-ferry:latest";
    CHECKED.get_or_init(|| {
        let status = Command::new("podman")
            .args(["image", "exists", IMAGE])
            .status()
            .expect("run podman");
        assert!(
            status.success(),
            "{IMAGE} does not exist: run scripts/image.sh"
        );
    });
    IMAGE
}

/// The binary inside the image (image.sh keeps the copy it built the image from): the
/// outside run that the in-container memory is compared with uses the very same file.
pub fn image_binary() -> PathBuf {
    state_dir().join("image/context/secret-ferry")
}

/// The app container of the tests: busybox from Debian's `busybox-static`, alone in an image
/// made here (nothing can be pulled). Built once per machine.
pub fn app_image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    const IMAGE: &str = "localhost/secret-ferry-test-app:busybox";
    BUILT.get_or_init(|| {
        if Command::new("podman")
            .args(["image", "exists", IMAGE])
            .status()
            .unwrap()
            .success()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .args(["-ec", script])
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "building {IMAGE}: {script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh("apt-get download busybox-static >/dev/null 2>&1 && dpkg-deb -x busybox-static_*.deb x");
        sh(
            "mkdir -p r/bin r/tmp && cp x/bin/busybox r/bin/ && chmod 1777 r/tmp && \
            for a in sh ls cat sleep stat id test; do ln -s busybox r/bin/$a; done && \
            tar --numeric-owner -C r -cf app.tar .",
        );
        let tar = dir.path().join("app.tar");
        ok(Command::new("podman")
            .args(["import", "--quiet", "--change", "ENV PATH=/bin"])
            .arg(&tar)
            .arg(IMAGE));
    });
    IMAGE
}

/// How long `podman kube play` may take to start a pod (pulling nothing: the images are local).
const PLAY_TIMEOUT: Duration = Duration::from_secs(120);

/// A pod played from rendered objects with `podman kube play`. Dropping it captures every
/// container's log for the leak scan and runs `podman kube down`.
pub struct Played {
    dir: tempfile::TempDir,
    pub name: String,
    /// A `kube play` still running (one that waits for an init container that keeps failing).
    playing: Option<std::process::Child>,
    taken_down: bool,
}

impl Played {
    /// Plays `objects` (JSON, which YAML reads as is). `Err` with what podman said when it
    /// says no (the pod it left is taken down).
    pub fn play(objects: &[Value]) -> Result<Played, String> {
        let mut played = Self::start(objects);
        let mut playing = played.playing.take().unwrap();
        // A `kube play` that never returns (seen once here, after a pod of the same name was
        // left by a killed run) must fail its test, not hold up the whole suite.
        let deadline = Instant::now() + PLAY_TIMEOUT;
        while playing.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = playing.kill();
                let out = playing.wait_with_output().unwrap();
                return Err(format!(
                    "podman kube play did not return within {PLAY_TIMEOUT:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = playing.wait_with_output().unwrap();
        if out.status.success() {
            Ok(played)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Starts `kube play` without waiting for it: with a Deployment's `restartPolicy: Always`
    /// podman retries a failing init container, as the kubelet does, and never returns.
    pub fn start(objects: &[Value]) -> Played {
        let dir = tempfile::tempdir().unwrap();
        let yaml: Vec<String> = objects.iter().map(|o| o.to_string()).collect();
        std::fs::write(dir.path().join("pod.yaml"), yaml.join("\n---\n")).unwrap();
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .expect("a Deployment to play");
        // podman 4.3 names a Deployment's pod `<name>-pod-0` and its containers `<pod>-<name>`.
        let name = format!("{}-pod-0", deployment["metadata"]["name"].as_str().unwrap());
        // Every test plays the same release, so a pod a killed run left behind (its Drop never
        // ran) would make every later play fail with "name is in use".
        let _ = Command::new("podman")
            .args(["pod", "rm", "--force", "--ignore", &name])
            .output();
        let playing = podman()
            .args(["kube", "play"])
            .arg(dir.path().join("pod.yaml"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Played {
            dir,
            name,
            playing: Some(playing),
            taken_down: false,
        }
    }

    pub fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }

    pub fn inspect(&self, container: &str, format: &str) -> String {
        ok(
            Command::new("podman").args([
                "inspect",
                "--format",
                format,
                &self.container(container),
            ]),
        )
    }

    pub fn state(&self, container: &str) -> String {
        self.inspect(container, "{{.State.Status}}")
    }

    /// Runs a command in a running container, as the container's user.
    pub fn exec(&self, container: &str, args: &[&str]) -> Output {
        podman()
            .args(["exec", &self.container(container)])
            .args(args)
            .output()
            .unwrap()
    }

    /// The container's log so far (stdout, then stderr). Every container's whole log goes to
    /// the leak scan once, when the pod is taken down, however often a test read it.
    pub fn logs(&self, container: &str) -> String {
        crate::common::output_text(&self.read_logs(container))
    }

    fn read_logs(&self, container: &str) -> Output {
        Command::new("podman")
            .args(["logs", &self.container(container)])
            .output()
            .unwrap()
    }

    /// The main process of a running container, as the host sees it.
    pub fn pid(&self, container: &str) -> u32 {
        self.inspect(container, "{{.State.Pid}}").parse().unwrap()
    }

    /// What `podman kube down` does to each container first: SIGTERM, SIGKILL after `grace`.
    /// Done on its own, to one container, so that its own stop is timed (the example app, a
    /// shell loop as PID 1, ignores SIGTERM and waits for the SIGKILL) and so that exit codes,
    /// logs and volumes can be looked at before `kube down` removes them.
    pub fn stop(&self, container: &str, grace: Duration) -> Duration {
        let started = Instant::now();
        ok(Command::new("podman").args([
            "stop",
            "--time",
            &grace.as_secs().to_string(),
            &self.container(container),
        ]));
        started.elapsed()
    }

    pub fn exit_code(&self, container: &str) -> i32 {
        self.inspect(container, "{{.State.ExitCode}}")
            .parse()
            .unwrap()
    }

    /// `podman kube down`: stops what still runs and removes the pod and its volumes.
    pub fn down(mut self) {
        self.take_down();
    }

    fn take_down(&mut self) {
        if self.taken_down {
            return;
        }
        self.taken_down = true;
        if let Some(mut playing) = self.playing.take() {
            let _ = playing.kill();
            let _ = playing.wait();
        }
        let names = Command::new("podman")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("pod={}", self.name),
                "--format",
                "{{.Names}}",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for name in names.lines() {
            if let Some(short) = name.strip_prefix(&format!("{}-", self.name)) {
                let out = self.read_logs(short);
                capture("podman-logs", &out.stdout);
                capture("podman-logs", &out.stderr);
            }
        }
        // No grace period here: a test that wanted a clean stop has stopped the pod itself.
        let _ = Command::new("podman")
            .args(["pod", "stop", "--time", "0", "--ignore", &self.name])
            .output();
        let _ = podman()
            .args(["kube", "down"])
            .arg(self.dir.path().join("pod.yaml"))
            .output();
        // A pod kube down could not find (a failed play) must not outlive the test either.
        let _ = Command::new("podman")
            .args(["pod", "rm", "--force", "--ignore", &self.name])
            .output();
    }
}

impl Drop for Played {
    fn drop(&mut self) {
        self.take_down();
    }
}

/// VmRSS and RssAnon of a process, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("RssAnon:"))
}
