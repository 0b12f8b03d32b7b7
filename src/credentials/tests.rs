//! Schedule and caching behaviour with paused time and a scripted STS: no I/O.

use super::*;
use std::collections::VecDeque;
use std::sync::Mutex as StdMutex;

const HOUR: Duration = Duration::from_secs(3600);
const FIVE_MIN: Duration = Duration::from_secs(300);

/// Answers AssumeRole from a script (`Some(lifetime)` or `None` for a failure) and
/// records when each call happened; once the script runs out every call succeeds.
#[derive(Clone, Default)]
struct Scripted {
    script: Arc<StdMutex<VecDeque<Option<Duration>>>>,
    calls: Arc<StdMutex<Vec<Instant>>>,
}

impl Scripted {
    fn new(script: impl IntoIterator<Item = Option<Duration>>) -> Self {
        Self {
            script: Arc::new(StdMutex::new(script.into_iter().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl AssumeRole for Scripted {
    async fn assume(&self) -> Result<Issued, CredentialsError> {
        // An STS round trip takes time; it also lets concurrent callers pile up.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(Instant::now());
            calls.len()
        };
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Some(HOUR));
        match step {
            Some(valid_for) => Ok(Issued {
                credentials: Credentials::new(
                    format!("ASIA{n}"),
                    "secret",
                    Some("token".into()),
                    None,
                    "test",
                ),
                expires_at: SystemTime::now() + valid_for,
                valid_for,
            }),
            None => Err(CredentialsError::Aws {
                role: "shared".into(),
                role_arn: "arn:aws:iam::111111111111:role/R".into(),
                info: crate::aws::ErrorInfo {
                    class: crate::aws::Class::Server,
                    code: None,
                    status: Some(500),
                    message: None,
                },
                hint: "",
            }),
        }
    }
}

fn session(sts: &Scripted) -> (RoleSession<Scripted>, Metrics) {
    let metrics = Metrics::new().unwrap();
    (
        RoleSession::new("shared", FIVE_MIN, sts.clone(), metrics.clone()),
        metrics,
    )
}

fn offsets(start: Instant, calls: &[Instant]) -> Vec<Duration> {
    calls.iter().map(|t| *t - start).collect()
}

#[test]
fn refresh_delay_is_refresh_before_ahead_of_expiry_with_bounded_jitter() {
    // 55 min ± 10 % of refreshBefore (30 s).
    assert_eq!(
        refresh_delay(HOUR, FIVE_MIN, 0.0),
        Duration::from_secs(55 * 60 - 30)
    );
    assert_eq!(
        refresh_delay(HOUR, FIVE_MIN, 0.5),
        Duration::from_secs(55 * 60)
    );
    assert_eq!(
        refresh_delay(HOUR, FIVE_MIN, 1.0),
        Duration::from_secs(55 * 60 + 30)
    );
    // A short wait is jittered by 10 % of the wait itself: 10 s ± 1 s.
    let fifteen = Duration::from_secs(900);
    let rb = Duration::from_secs(890);
    assert_eq!(refresh_delay(fifteen, rb, 0.0), Duration::from_secs(9));
    assert_eq!(refresh_delay(fifteen, rb, 1.0), Duration::from_secs(11));
    // Issued shorter than refreshBefore: half-way, ± 10 %, never zero.
    let two_min = Duration::from_secs(120);
    assert_eq!(
        refresh_delay(two_min, FIVE_MIN, 0.5),
        Duration::from_secs(60)
    );
    assert_eq!(
        refresh_delay(two_min, FIVE_MIN, 0.0),
        Duration::from_secs(54)
    );
    // Never after expiry, whatever the inputs.
    for unit in [0.0, 0.3, 0.999, 1.0, 7.0, -3.0] {
        for (life, before) in [
            (HOUR, FIVE_MIN),
            (fifteen, rb),
            (two_min, FIVE_MIN),
            (HOUR, HOUR),
        ] {
            let d = refresh_delay(life, before, unit);
            assert!(
                d < life && !d.is_zero(),
                "{life:?} {before:?} {unit} -> {d:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn refreshes_at_expiry_minus_refresh_before() {
    let sts = Scripted::default();
    let (s, metrics) = session(&sts);
    let (trigger, signal) = crate::shutdown::channel();
    let start = Instant::now();
    let task = tokio::spawn(s.clone().run_refresher(signal));

    tokio::time::sleep(2 * HOUR + Duration::from_secs(60)).await;
    let calls = offsets(start, &sts.calls());
    // First call at start (+10 ms STS latency); each next one 55 minutes ± 30 s after the
    // previous credentials arrived.
    let step = Duration::from_millis(10);
    let refresh = HOUR - FIVE_MIN;
    let jitter = Duration::from_secs(30);
    assert_eq!(calls.len(), 3, "AssumeRole calls at {calls:?}");
    assert_eq!(calls[0], step);
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0] - step;
        assert!(
            gap >= refresh - jitter && gap <= refresh + jitter,
            "refresh {gap:?} after the previous credential, expected 55 min ± 30 s"
        );
    }
    trigger.fire();
    task.await.unwrap();
    let text = metrics.render().unwrap();
    assert!(
        text.contains(r#"secret_ferry_credential_refresh_total{result="success",role="shared"} 3"#),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_keeps_old_credentials_and_retries() {
    // Initial success, two failed refreshes, then success.
    let sts = Scripted::new([Some(HOUR), None, None, Some(HOUR)]);
    let (s, metrics) = session(&sts);
    let (trigger, signal) = crate::shutdown::channel();
    let start = Instant::now();
    let task = tokio::spawn(s.clone().run_refresher(signal));

    // Up to just before the earliest jittered refresh time, then step until it failed.
    tokio::time::sleep(HOUR - FIVE_MIN - Duration::from_secs(31)).await;
    assert_eq!(sts.calls().len(), 1);
    while sts.calls().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(Instant::now() - start <= HOUR - FIVE_MIN + Duration::from_secs(31));
    let during = s.get().await.expect("old credentials must still be served");
    assert_eq!(
        during.access_key_id(),
        "ASIA1",
        "must keep the first credential"
    );
    assert_eq!(
        sts.calls().len(),
        2,
        "get() must not call STS while the old credential is valid"
    );

    tokio::time::sleep(Duration::from_secs(30)).await;
    let calls = offsets(start, &sts.calls());
    assert_eq!(
        calls.len(),
        4,
        "expected two retries after the failure: {calls:?}"
    );
    // Back-off: 1 s (+ up to 1 s jitter), then 2 s (+ up to 2 s jitter).
    let gap1 = calls[2] - calls[1];
    let gap2 = calls[3] - calls[2];
    assert!(
        gap1 >= Duration::from_secs(1) && gap1 <= Duration::from_millis(2010),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_secs(2) && gap2 <= Duration::from_millis(4010),
        "{gap2:?}"
    );
    assert_eq!(s.get().await.unwrap().access_key_id(), "ASIA4");

    let text = metrics.render().unwrap();
    assert!(
        text.contains(r#"secret_ferry_credential_refresh_total{result="failure",role="shared"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"secret_ferry_credential_refresh_total{result="success",role="shared"} 2"#),
        "{text}"
    );
    trigger.fire();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_assume_role() {
    let sts = Scripted::default();
    let (s, _) = session(&sts);
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get().await.map(|c| c.access_key_id().to_owned()) })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap(), "ASIA1");
    }
    assert_eq!(sts.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_failure() {
    let sts = Scripted::new([None]);
    let (s, _) = session(&sts);
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get().await.is_err() })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap(), "every waiter must see the shared failure");
    }
    assert_eq!(
        sts.calls().len(),
        1,
        "a failure must not be retried by each waiter"
    );
    // A later caller tries again.
    assert_eq!(s.get().await.unwrap().access_key_id(), "ASIA2");
}

#[tokio::test(start_paused = true)]
async fn expired_credentials_are_not_served() {
    let sts = Scripted::new([Some(Duration::from_secs(900)), None]);
    let (s, _) = session(&sts);
    assert_eq!(s.get().await.unwrap().access_key_id(), "ASIA1");
    assert!(!s.lapsed());
    assert!(s.snapshot().is_some());
    tokio::time::sleep(Duration::from_secs(901)).await;
    assert!(
        s.get().await.is_err(),
        "an expired credential must not be served"
    );
    assert!(
        s.lapsed(),
        "an expired credential with a failed refresh is lapsed"
    );
    assert!(s.snapshot().is_none());
}

#[test]
fn issued_credentials_debug_hides_the_secret_parts() {
    let issued = Issued {
        credentials: Credentials::new(
            "ASIAEXAMPLE",
            "canary-secret-key",
            Some("canary-session-token".into()),
            None,
            "t",
        ),
        expires_at: SystemTime::now(),
        valid_for: HOUR,
    };
    let shown = format!("{issued:?} {issued:#?}");
    assert!(!shown.contains("canary-secret-key"), "{shown}");
    assert!(!shown.contains("canary-session-token"), "{shown}");
}
