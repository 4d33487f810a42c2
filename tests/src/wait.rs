//! Polling until a condition holds, for tests that wait on a controller or a server.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `probe` every 50 ms until it returns `Ok`, and panics after `timeout` with the last error
/// (a test helper: the panic is the test's failure message).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
