//! How often, and after how long, a request that met passing trouble (a connection, a timeout, 429,
//! 5xx) is made again: the model download and the credentials requests share the rule — so many
//! tries in all, the wait doubling from the first.

use std::time::Duration;

#[derive(Debug)]
pub struct Tries {
    made: u32,
    allowed: u32,
    wait: Duration,
}

impl Tries {
    /// `allowed` tries in all (at least one), waiting `first_wait` before the second.
    pub fn new(allowed: u32, first_wait: Duration) -> Self {
        Tries {
            made: 0,
            allowed: allowed.max(1),
            wait: first_wait,
        }
    }

    /// Counts a try about to be made; returns its number (1 for the first).
    pub fn start(&mut self) -> u32 {
        self.made = self.made.saturating_add(1);
        self.made
    }

    /// After a try that failed in a way that may pass: how long to wait before the next one, or
    /// `None` when every try has been made.
    pub fn next_wait(&mut self) -> Option<Duration> {
        if self.made >= self.allowed {
            return None;
        }
        let wait = self.wait;
        self.wait = self.wait.saturating_mul(2);
        Some(wait)
    }

    /// `message` of the last failure, saying how many tries it took when more than one.
    pub fn gave_up(&self, message: &str) -> String {
        if self.made > 1 {
            format!("{message} (after {} tries)", self.made)
        } else {
            message.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tries;
    use std::time::Duration;

    #[test]
    fn waits_double_until_the_tries_run_out() {
        let mut tries = Tries::new(4, Duration::from_millis(100));
        let mut waits = Vec::new();
        loop {
            tries.start();
            match tries.next_wait() {
                Some(wait) => waits.push(wait.as_millis()),
                None => break,
            }
        }
        assert_eq!(waits, [100, 200, 400]);
        assert_eq!(tries.gave_up("503"), "503 (after 4 tries)");
    }

    #[test]
    fn one_try_at_least_and_a_first_failure_is_told_plainly() {
        let mut tries = Tries::new(0, Duration::from_secs(1));
        assert_eq!(tries.start(), 1);
        assert_eq!(tries.next_wait(), None);
        assert_eq!(tries.gave_up("refused"), "refused");
    }
}
