//! The API budget: a token bucket per (account, region) that every Secrets Manager call
//! draws from, so that thousands of secrets never exceed `apiRateLimit`. When AWS
//! throttles anyway (other clients share the account's quota) the rate is halved, and it
//! grows back by 5 % of the limit with each successful call.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Never slower than one call every two seconds, so a throttled daemon still makes progress.
const MIN_RATE: f64 = 0.5;

pub struct Budget {
    limit: f64,
    state: Mutex<State>,
}

struct State {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.limit)
            .field("rate", &self.rate())
            .finish()
    }
}

impl Budget {
    /// `per_second` calls per second, with a burst of one second's worth.
    pub fn new(per_second: u32) -> Self {
        let limit = f64::from(per_second.max(1));
        Self {
            limit,
            state: Mutex::new(State {
                rate: limit,
                tokens: limit,
                last: Instant::now(),
            }),
        }
    }

    /// Waits until a call may be made.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.lock();
                state.refill(self.limit);
                if state.tokens >= 1.0 {
                    state.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.tokens) / state.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }

    pub fn throttled(&self) {
        let mut state = self.lock();
        state.refill(self.limit);
        state.rate = (state.rate / 2.0).max(MIN_RATE);
        // Drop the burst too: the calls already allowed would only be throttled as well.
        state.tokens = state.tokens.min(1.0);
    }

    pub fn succeeded(&self) {
        let mut state = self.lock();
        state.rate = (state.rate + self.limit * 0.05).min(self.limit);
    }

    /// The current rate, for logs and tests.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state valid, so a panic elsewhere cannot corrupt it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn refill(&mut self, limit: f64) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        // The burst follows the current rate: a throttled budget does not save up.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.min(limit).max(1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn time_for(budget: &Budget, calls: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..calls {
            budget.acquire().await;
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_one_second_then_the_rate() {
        let budget = Budget::new(50);
        assert!(
            time_for(&budget, 50).await < Duration::from_millis(1),
            "the first 50 are immediate"
        );
        let next = time_for(&budget, 100).await;
        assert!(
            next >= Duration::from_millis(1990) && next <= Duration::from_millis(2010),
            "100 more at 50/s take 2 s, took {next:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_and_success_restores_it() {
        let budget = Budget::new(40);
        budget.throttled();
        assert_eq!(budget.rate(), 20.0);
        let took = time_for(&budget, 21).await;
        assert!(
            took >= Duration::from_millis(990),
            "20 calls after the first take 1 s at 20/s, took {took:?}"
        );
        for _ in 0..10 {
            budget.throttled();
        }
        assert_eq!(budget.rate(), MIN_RATE, "never below the floor");
        for _ in 0..100 {
            budget.succeeded();
        }
        assert_eq!(budget.rate(), 40.0, "back to the limit, never above");
    }
}
