//! Memory and CPU per secret at scale, against the in-memory fake AWS (moto answers a few
//! hundred calls a second; 100,000 secrets take 5,000 batch calls for the first sync alone).
//!
//! A benchmark, not a timed test: ignored by `cargo test`, run by `bench/run.py --scale`
//! (which builds the release binary, passes it in `SECRET_FERRY_SCALE_BINARY` and reports the
//! figures). One daemon reads `SECRET_FERRY_SCALE_SECRETS` secrets (default 10,000) through one
//! cross-account role at the default `refreshInterval` (60s) with `fetchStrategy`
//! `SECRET_FERRY_SCALE_STRATEGY` (default `auto`), and is polled `SECRET_FERRY_SCALE_POLLS`
//! times (default 60: an hour at that interval) with `POST /refresh`, each poll waited for.
//! It prints RSS after the first sync and after the polls, the peak, CPU per secret per poll
//! and the calls of one poll, and checks that three rotations then land. With
//! `SECRET_FERRY_SCALE_FIND=1` the N secrets are one `find` entry's discoveries instead.
#![allow(clippy::unwrap_used)] // tests fail loudly on unexpected errors

use crate::common;

use crate::resource_bounds::{
    cpu_ticks, many_secrets, memory_dir, proc_status_kib, secret_name, value,
};
use common::fake_aws::FakeAws;
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const SUCCESSES: &str = r#"secret_ferry_sync_duration_seconds_count{result="success"}"#;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: a whole number, not {v:?}"))
    })
}

fn successes(admin: SocketAddr) -> Option<f64> {
    let (status, text) = scrape_uncaptured(admin)?;
    (status == 200).then(|| metric_or_zero(&text, SUCCESSES))
}

#[test]
#[ignore = "a benchmark: bench/run.py --scale runs it with the release binary"]
fn memory_and_cpu_per_secret_at_scale() {
    let _heavy = heavy();
    let n = env_number("SECRET_FERRY_SCALE_SECRETS", 10_000);
    let polls = env_number("SECRET_FERRY_SCALE_POLLS", 60);
    let strategy = std::env::var("SECRET_FERRY_SCALE_STRATEGY").unwrap_or_else(|_| "auto".into());
    let binary = std::env::var("SECRET_FERRY_SCALE_BINARY").unwrap_or_else(|_| binary().into());
    let external_id = canary("extid");
    let marker = canary("scale");
    let aws = FakeAws::start(&external_id);
    for i in 0..n {
        aws.create(&secret_name(i), &value(&marker, i, 0));
    }
    let tmp = tempfile::Builder::new()
        .prefix("secret-ferry-scale-")
        .tempdir_in(memory_dir())
        .unwrap();
    let root = tmp.path().join("targets");
    // `find`: one entry that discovers all N (ListSecrets by name prefix) instead of N entries.
    let find = std::env::var("SECRET_FERRY_SCALE_FIND").is_ok_and(|v| v == "1");
    let yaml = if find {
        format!(
            "region: us-east-1\napiRateLimit: 10000\nroles:\n  shared:\n    roleArn: arn:aws:iam::{}:role/CrossAccountSecretsRole\n    externalIdEnv: SCALE_EXTERNAL_ID\nsecrets:\n  - name: all\n    find: {{namePrefix: {}}}\n    role: shared\n    targets: [{{file: {{dir: \"{}/{{{{ name }}}}\"}}}}]\n",
            common::fake_aws::ACCOUNT,
            secret_name(0).split('/').next().unwrap(),
            root.display()
        )
    } else {
        format!(
            "fetchStrategy: {strategy}\n{}",
            many_secrets(n, "SCALE_EXTERNAL_ID", None, &root)
        )
    };
    // Where secret i's files are.
    let dir_of = |i: usize| {
        if find {
            root.join(secret_name(i))
        } else {
            root.join(format!("s{i:05}"))
        }
    };
    // `SECRET_FERRY_SCALE_EVENTS=1`: with a `changeEvents` queue, so that the router's index
    // of every secret is in the figure. The fake AWS has no SQS: the queue fails and backs
    // off, as a denied one would.
    let yaml = if std::env::var("SECRET_FERRY_SCALE_EVENTS").is_ok_and(|v| v == "1") {
        format!(
            "changeEvents:\n  - queueUrl: https://sqs.us-east-1.amazonaws.com/{}/scale\n{yaml}",
            common::fake_aws::ACCOUNT
        )
    } else {
        yaml
    };
    let strategy = if find { "find".to_owned() } else { strategy };
    let config = write_config(tmp.path(), &yaml);
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = daemon_of(Path::new(&binary), &config, &aws.endpoint(), port);
    // As the image runs it (the Dockerfile's ENV: one malloc arena, a fixed mmap threshold).
    cmd.envs(image_env())
        .env("RUST_LOG", "info")
        .env("SCALE_EXTERNAL_ID", &external_id);
    let started = Instant::now();
    let running = Running::start(&mut cmd);
    let pid = running.pid();
    let first = wait_for(Duration::from_secs(1800), || {
        successes(admin).filter(|&s| s >= n as f64)
    });
    assert!(first.is_some(), "{n} secrets not synced within 30 minutes");
    let first_sync_secs = started.elapsed().as_secs_f64();
    let rss_first = proc_status_kib(pid, "VmRSS:");
    let counts_first = aws.counts();

    let cpu_before = cpu_ticks(pid);
    let polls_started = Instant::now();
    let mut done = successes(admin).unwrap();
    for _ in 0..polls {
        let (status, _) = http("POST", admin, "/refresh", None).expect("POST /refresh");
        assert_eq!(status, 202, "POST /refresh");
        let target = done + n as f64;
        done = wait_for(Duration::from_secs(600), || {
            std::thread::sleep(Duration::from_millis(100));
            successes(admin).filter(|&s| s >= target)
        })
        .expect("a poll of every secret within 10 minutes");
    }
    let poll_secs = polls_started.elapsed().as_secs_f64();
    let cpu_ticks_polls = cpu_ticks(pid) - cpu_before;
    let rss_after = proc_status_kib(pid, "VmRSS:");
    // Heap and stacks apart from the binary's pages: the part that grows with N.
    let rss_anon_after = proc_status_kib(pid, "RssAnon:");
    let rss_file_after = proc_status_kib(pid, "RssFile:");
    let hwm = proc_status_kib(pid, "VmHWM:");
    let counts_after = aws.counts();
    let per_poll: serde_json::Map<String, serde_json::Value> = counts_after
        .iter()
        .map(|(op, &count)| {
            let before = counts_first.get(op).copied().unwrap_or(0);
            (
                op.clone(),
                ((count - before) as f64 / polls.max(1) as f64).into(),
            )
        })
        .collect();

    // Three rotations land with one more poll.
    let rotated = [0, n / 2, n - 1];
    for &i in &rotated {
        aws.rotate(&secret_name(i), &value(&marker, i, 1));
    }
    http("POST", admin, "/refresh", None).expect("POST /refresh");
    let landed = wait_for(Duration::from_secs(600), || {
        std::thread::sleep(Duration::from_millis(100));
        rotated
            .iter()
            .all(|&i| read(&dir_of(i), "password").is_some_and(|p| p.contains("-r1-")))
            .then_some(())
    });
    let output = running.stop();
    let mut log = output.stderr.clone();
    log.extend_from_slice(&output.stdout);
    capture("scale-log", &log);
    assert!(landed.is_some(), "the rotated secrets did not land");
    assert!(output.status.success(), "{:?}", output.status);

    let cpu_us_per_secret_per_poll = cpu_ticks_polls as f64 * 10_000.0 / (polls.max(1) * n) as f64;
    let figures = serde_json::json!({
        "secrets": n,
        "strategy": strategy,
        "polls": polls,
        "first_sync_secs": first_sync_secs,
        "rss_kib_after_first_sync": rss_first,
        "rss_kib_after_polls": rss_after,
        "hwm_kib": hwm,
        "rss_anon_kib_after_polls": rss_anon_after,
        "rss_file_kib_after_polls": rss_file_after,
        "poll_secs": poll_secs,
        "cpu_us_per_secret_per_poll": cpu_us_per_secret_per_poll,
        "calls_per_poll": per_poll,
        "calls_first_sync": counts_first,
    });
    record_figures(&format!("scale-{n}-{strategy}"), figures);
    println!(
        "{n} secrets ({strategy}): first sync {first_sync_secs:.1} s, RSS {:.1} MiB; after {polls} polls {:.1} MiB (peak {:.1} MiB); {cpu_us_per_secret_per_poll:.1} µs CPU per secret per poll; calls per poll {per_poll:?}",
        rss_first as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
}
