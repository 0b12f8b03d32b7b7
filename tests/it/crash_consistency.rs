//! Crash consistency of the file target: the daemon is killed with SIGKILL at random
//! points while it rotates a multi-key secret. After every kill the directory must hold
//! one complete rotation (the old or the new one, never a mix, never part of one), and a
//! restart must clean up whatever the killed writer left behind.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const SECRET: &str = "app/multi";
const ROTATIONS: u32 = 200;
/// Each rotation uses 40 of these; which 4 are left out changes every second rotation, so
/// half of the rotations add and drop keys.
const KEY_SLOTS: u32 = 44;

fn keys(rotation: u32) -> BTreeSet<String> {
    (0..KEY_SLOTS)
        .filter(|slot| slot % 11 != (rotation / 2) % 11)
        .map(|slot| format!("k{slot:02}"))
        .collect()
}

/// 100–500 bytes, so that staging 40 files (each fsynced) takes long enough for kills to
/// land inside it; the rotation number is in every value, so a mixed set is visible.
fn value(prefix: &str, rotation: u32, key: &str) -> String {
    let slot: u32 = key[1..].parse().unwrap();
    let len = 100 + ((slot * 37 + rotation * 13) % 400) as usize;
    let fill = char::from(b'a' + (rotation % 26) as u8);
    let mut v = format!("{prefix}-r{rotation:04}-{key}-");
    while v.len() < len {
        v.push(fill);
    }
    v
}

fn secret_json(prefix: &str, rotation: u32) -> String {
    let map: serde_json::Map<String, serde_json::Value> = keys(rotation)
        .into_iter()
        .map(|k| {
            let v = value(prefix, rotation, &k);
            (k, serde_json::Value::String(v))
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn config_yaml(role_arn: &str, external_id_file: &Path, dir: &Path) -> String {
    ConfigYaml::new()
        .region(REGION)
        .role("shared", role_arn, external_id_file)
        .role_option("sessionName", "secret-ferry-crash")
        .secret("multi", SECRET)
        .uses_role("shared")
        .option("refreshInterval", "1s")
        .file_target_with(dir, &[("mode", "\"0440\"")])
        .build()
}

/// One daemon process and its admin address; `Running` hands the output of every run,
/// killed ones included, to the leak scan.
struct Daemon {
    running: Running,
    admin: SocketAddr,
}

impl Daemon {
    /// Returns once the admin server answers: a restart can find the dir already settled
    /// (the kill landed after the write), and a `POST /refresh` sent before the listener is
    /// bound would be refused.
    fn start(config: &Path, endpoint: &str) -> Self {
        let port = free_port();
        let d = Daemon {
            running: Running::start(&mut daemon(config, endpoint, port)),
            admin: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http("GET", d.admin, "/healthz", None).map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the admin server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        d
    }

    fn refresh(&self) {
        let resp = http("POST", self.admin, "/refresh", None);
        assert_eq!(resp.as_ref().map(|r| r.0), Some(202), "{resp:?}");
    }

    /// SIGKILL; returns once the process has been reaped, so nothing of it runs any more.
    fn kill9(self) -> Output {
        self.running.kill()
    }

    fn stop(self) -> Output {
        self.running.stop()
    }
}

/// Everything in the target dir, classified by the names the file sink uses.
#[derive(Debug, Default)]
struct Snapshot {
    /// Where `..data` points.
    data: Option<String>,
    /// `..<timestamp>` directories (the sink's and kubelet's naming).
    stamped: Vec<String>,
    /// The sink's only temporary names (src/sink/file.rs: DATA_TMP, LINK_TMP).
    temps: Vec<String>,
    /// Visible symlinks and, if the link resolves, what reading through it gives.
    links: BTreeMap<String, Option<String>>,
    /// Anything else; the sink never creates such entries.
    other: Vec<String>,
}

fn snapshot(dir: &Path) -> std::io::Result<Snapshot> {
    let mut snap = Snapshot::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name == "..data" {
            snap.data = Some(std::fs::read_link(&path)?.to_string_lossy().into_owned());
        } else if name == "..data_tmp" || name == "..link_tmp" {
            snap.temps.push(name);
        } else if name.starts_with("..") && name.as_bytes().get(2).is_some_and(u8::is_ascii_digit) {
            snap.stamped.push(name);
        } else if !name.starts_with("..") && entry.file_type()?.is_symlink() {
            snap.links.insert(name, std::fs::read_to_string(&path).ok());
        } else {
            snap.other.push(name);
        }
    }
    snap.stamped.sort();
    snap.temps.sort();
    snap.other.sort();
    Ok(snap)
}

/// The files of one directory, by name.
fn files_in(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(entry.path())?,
        );
    }
    Ok(files)
}

/// The rotation `files` hold completely (exactly its keys, each with its exact value).
fn complete_rotation(prefix: &str, files: &BTreeMap<String, String>) -> Result<u32, String> {
    let (first_key, first) = files.iter().next().ok_or("no files at all")?;
    let rotation: u32 = first
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix("-r"))
        .and_then(|rest| rest.get(..4))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{first_key} holds no rotation number"))?;
    let names: BTreeSet<String> = files.keys().cloned().collect();
    if names != keys(rotation) {
        return Err(format!(
            "rotation {rotation} with the wrong keys: missing {:?}, extra {:?}",
            keys(rotation).difference(&names).collect::<Vec<_>>(),
            names.difference(&keys(rotation)).collect::<Vec<_>>()
        ));
    }
    for (key, got) in files {
        if *got != value(prefix, rotation, key) {
            // Only the rotation marker is printed: the rest of a value is secret.
            let marker = got
                .strip_prefix(prefix)
                .and_then(|rest| rest.get(..6))
                .unwrap_or("?");
            return Err(format!(
                "{key} is not rotation {rotation}'s value (it carries {marker:?}, {} bytes)",
                got.len()
            ));
        }
    }
    Ok(rotation)
}

/// What a reader sees in the dir, judged after the writer is gone (or while it runs,
/// for the waits, which then simply retry).
#[derive(Debug)]
struct Verdict {
    /// The complete rotation behind `..data`.
    rotation: u32,
    /// Names a restart has to remove: temps, stamped dirs other than the live one, strays.
    leftovers: Vec<String>,
    /// A stamped leftover that holds no complete rotation: the kill hit file staging.
    partial_staging: bool,
    /// Keys of `rotation` without a visible link: a reader opening them by name finds
    /// them absent although `..data` holds them.
    missing_links: Vec<String>,
    /// Visible links that do not resolve (keys `rotation` dropped); readers see them as
    /// absent, so they only have to go by the next start.
    dangling_links: Vec<String>,
}

impl Verdict {
    fn settled(&self, rotation: u32) -> bool {
        self.rotation == rotation
            && self.leftovers.is_empty()
            && self.missing_links.is_empty()
            && self.dangling_links.is_empty()
    }
}

/// `Err` is a consistency violation: no complete rotation behind `..data`, or a visible
/// name that reads as a different rotation's value.
fn judge(dir: &Path, prefix: &str) -> Result<Verdict, String> {
    let snap = snapshot(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let data = snap
        .data
        .clone()
        .ok_or_else(|| format!("no ..data: {snap:?}"))?;
    if !snap.stamped.contains(&data) {
        return Err(format!(
            "..data points at {data:?}, not a stamped dir: {snap:?}"
        ));
    }
    let files = files_in(&dir.join(&data)).map_err(|e| format!("cannot read {data}: {e}"))?;
    let rotation =
        complete_rotation(prefix, &files).map_err(|e| format!("..data -> {data}: {e}"))?;
    let expected = keys(rotation);
    let mut missing_links = Vec::new();
    let mut dangling_links = Vec::new();
    for key in &expected {
        if !snap.links.contains_key(key) {
            missing_links.push(key.clone());
        }
    }
    for (name, read) in &snap.links {
        match read {
            Some(got) if expected.contains(name) && *got == value(prefix, rotation, name) => {}
            Some(_) => {
                return Err(format!(
                    "{name} reads as something other than rotation {rotation}'s value"
                ))
            }
            None => dangling_links.push(name.clone()),
        }
    }
    let mut partial_staging = false;
    let mut leftovers: Vec<String> = snap.temps.clone();
    for stamped in snap.stamped.iter().filter(|s| **s != data) {
        let complete = files_in(&dir.join(stamped))
            .ok()
            .is_some_and(|f| complete_rotation(prefix, &f).is_ok());
        partial_staging |= !complete;
        leftovers.push(stamped.clone());
    }
    leftovers.extend(snap.other.iter().cloned());
    Ok(Verdict {
        rotation,
        leftovers,
        partial_staging,
        missing_links,
        dangling_links,
    })
}

/// Polls (tightly: a restart or a write takes tens of milliseconds) until the dir holds
/// exactly `rotation` and nothing else.
fn wait_settled(dir: &Path, prefix: &str, rotation: u32, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let verdict = judge(dir, prefix);
        if verdict.as_ref().is_ok_and(|v| v.settled(rotation)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "rotation {rotation} not settled after {timeout:?}: {verdict:?}; {:?}",
                layout(dir)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How a kill is timed after `POST /refresh`.
#[derive(Debug, Clone, Copy)]
enum Aim {
    /// A random 0–30 ms (a fifth of the time at once): anywhere in fetch, render or write.
    Blind,
    /// As soon as a new stamped dir shows up: inside file staging.
    Staging,
    /// As soon as `..data` moved: between the swap and the link/prune/cleanup steps.
    Swap,
}

/// Names only (no reads), so the loop is quick enough to catch a write in progress.
fn stamped_and_data(dir: &Path) -> (Vec<String>, Option<PathBuf>) {
    let names = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with("..") && n.as_bytes().get(2).is_some_and(u8::is_ascii_digit)
                })
                .collect()
        })
        .unwrap_or_default();
    (names, std::fs::read_link(dir.join("..data")).ok())
}

/// Waits (at most 3 s) for the moment `aim` names; false if it never came, e.g. because
/// the whole write happened between two looks.
fn wait_for_aim(dir: &Path, aim: Aim, live: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let (stamped, data) = stamped_and_data(dir);
        let hit = match aim {
            Aim::Blind => true,
            Aim::Staging => stamped.iter().any(|s| Path::new(s) != live),
            Aim::Swap => data.as_deref().is_some_and(|d| d != live),
        };
        if hit {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_rotations_leaves_old_or_new_complete_set() {
    // Timing- and resource-sensitive: never beside another heavy test (common::heavy).
    let _heavy = heavy();
    let started = Instant::now();
    // Its own generator: the thread-local one would change with the worker thread the test
    // resumes on after an await. The timing still varies, so a seed only roughly replays.
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash_consistency seed {seed} (CRASH_SEED replays the choices)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let prefix = canary("crash");
    let fx = cross_account(SECRET, &secret_json(&prefix, 0)).await;

    // Under the target dir rather than $TMPDIR, which may be tmpfs: on a real disk every
    // fsync of the staging files takes time, which is where kills should land.
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ext_file = tmp.path().join("external-id");
    std::fs::write(&ext_file, &fx.external_id).unwrap();
    let dir = tmp.path().join("out/multi");
    let config = write_config(tmp.path(), &config_yaml(&fx.role_arn, &ext_file, &dir));
    let endpoint = fx.moto.endpoint();

    let mut running = Daemon::start(&config, &endpoint);
    wait_settled(&dir, &prefix, 0, Duration::from_secs(30)).unwrap();

    let mut last_seen = 0;
    let (mut kills, mut kills_mid_write, mut restarts) = (0u32, 0u32, 0u32);
    let (mut invariant_checks, mut leftovers_cleaned) = (0u32, 0u32);
    let mut kills_by_aim: BTreeMap<String, u32> = BTreeMap::new();
    let mut aim_missed = 0u32;
    let (mut partial_staging, mut kills_after_swap) = (0u32, 0u32);
    let mut violations: Vec<String> = Vec::new();
    let mut kills_with_missing_links = 0u32;
    let mut restart_time = Duration::ZERO;

    let (mut put_time, mut settle_time) = (Duration::ZERO, Duration::ZERO);
    for rotation in 1..=ROTATIONS {
        let live = std::fs::read_link(dir.join("..data")).unwrap();
        let t = Instant::now();
        put_secret(&fx.admin, SECRET, &secret_json(&prefix, rotation)).await;
        put_time += t.elapsed();
        running.refresh();

        if rng.u8(..4) != 0 {
            let t = Instant::now();
            wait_settled(&dir, &prefix, rotation, Duration::from_secs(15)).unwrap();
            settle_time += t.elapsed();
            last_seen = rotation;
            continue;
        }

        let aim = match rng.u8(..3) {
            0 => Aim::Blind,
            1 => Aim::Staging,
            _ => Aim::Swap,
        };
        if let Aim::Blind = aim {
            if rng.u8(..5) != 0 {
                std::thread::sleep(Duration::from_millis(rng.u64(0..=30)));
            }
        } else if !wait_for_aim(&dir, aim, &live) {
            aim_missed += 1;
        }
        let exited = running.kill9();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&exited.status),
            Some(9),
            "the daemon must have died of the SIGKILL, not before: {:?}\n{}",
            exited.status,
            String::from_utf8_lossy(&exited.stderr)
        );
        kills += 1;
        *kills_by_aim.entry(format!("{aim:?}")).or_default() += 1;

        invariant_checks += 1;
        let verdict = match judge(&dir, &prefix) {
            Ok(v) => v,
            Err(e) => panic!(
                "after kill {kills} (rotation {rotation}, aimed {aim:?}) the dir holds no \
                 complete rotation: {e}; {:?}",
                layout(&dir)
            ),
        };
        assert!(
            (last_seen..=rotation).contains(&verdict.rotation),
            "after kill {kills} the dir holds rotation {}, expected {last_seen} or {rotation}",
            verdict.rotation
        );
        let mid_write = !verdict.leftovers.is_empty()
            || !verdict.missing_links.is_empty()
            || !verdict.dangling_links.is_empty();
        kills_mid_write += u32::from(mid_write);
        partial_staging += u32::from(verdict.partial_staging);
        kills_after_swap += u32::from(verdict.rotation == rotation && mid_write);
        // A dangling link reads as an absent key, which is what a key the rotation dropped
        // is; a rotation's key without a link is part of that rotation missing.
        if !verdict.missing_links.is_empty() {
            kills_with_missing_links += 1;
            violations.push(format!(
                "kill {kills} (rotation {rotation}, aimed {aim:?}): ..data holds rotation {} but \
                 keys without a link {:?}, dangling links {:?}",
                verdict.rotation, verdict.missing_links, verdict.dangling_links
            ));
            if violations.len() == 1 {
                violations.push(format!("  the dir after that kill: {:?}", layout(&dir)));
            }
        }

        let restarted = Instant::now();
        running = Daemon::start(&config, &endpoint);
        restarts += 1;
        if let Err(e) = wait_settled(&dir, &prefix, rotation, Duration::from_secs(20)) {
            panic!(
                "after restart {restarts} (kill {kills}, {verdict:?}): {e}\n{}",
                String::from_utf8_lossy(&running.stop().stderr)
            );
        }
        restart_time += restarted.elapsed();
        leftovers_cleaned += u32::from(mid_write);
        last_seen = rotation;
    }

    let exited = running.stop();
    assert!(
        exited.status.success(),
        "exit status {:?}\n{}",
        exited.status,
        String::from_utf8_lossy(&exited.stderr)
    );
    wait_settled(&dir, &prefix, ROTATIONS, Duration::ZERO).unwrap();

    let wall = started.elapsed();
    record_figures(
        "crash_consistency",
        serde_json::json!({
            "rotations": ROTATIONS,
            "kills": kills,
            "kills_mid_write": kills_mid_write,
            "kills_in_staging": partial_staging,
            "kills_after_swap": kills_after_swap,
            "kills_by_aim": kills_by_aim,
            "aim_missed": aim_missed,
            "restarts": restarts,
            "invariant_checks": invariant_checks,
            "leftovers_cleaned": leftovers_cleaned,
            "kills_with_missing_links": kills_with_missing_links,
            "mean_restart_ms": restart_time.as_millis() / u128::from(restarts.max(1)),
            "wall_seconds": wall.as_secs_f64(),
            "mean_put_ms": put_time.as_millis() / u128::from(ROTATIONS),
            "mean_settle_ms": settle_time.as_millis() / u128::from((ROTATIONS - kills).max(1)),
            "seed": seed,
        }),
    );
    // Otherwise the kills all landed between writes and the invariant checks prove little.
    assert!(
        partial_staging >= 1 && kills_after_swap >= 1,
        "no kill landed inside a write (in staging: {partial_staging}, after the swap: \
         {kills_after_swap}, aimed kills that missed: {aim_missed})"
    );
    assert!(
        violations.is_empty(),
        "kills left keys of the rotation behind ..data without their visible link, so \
         readers opening them by name saw part of that rotation until the restart:\n{}",
        violations.join("\n")
    );
}
