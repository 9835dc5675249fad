//! Helpers the black-box cluster tests share: waiting for a condition with
//! a generous deadline (never a fixed sleep).
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Polls `f` every `poll` until it yields a value, failing the test with
/// `what` after `deadline`.
pub async fn eventually<T>(
    what: &str,
    deadline: Duration,
    poll: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(poll).await;
    }
}
