//! The harness's errors: each says what was being done and, for a process that failed, ends with the
//! tail of its log.

use std::path::PathBuf;
use std::time::Duration;

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// The hint every "cannot find the binaries" error ends with.
pub const SETUP_HINT: &str = "run `bash scripts/setup-test-cluster.sh` (it builds or fetches etcd, kube-apiserver, \
     kube-controller-manager, kubectl and helm once and prints the env file it wrote), or set KUBEBUILDER_ASSETS \
     to a folder holding kube-apiserver and etcd";

#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error("test cluster binaries not found: {what}; {SETUP_HINT}")]
    BinariesNotFound { what: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stdout: String,
        stderr: String,
    },

    #[error("`{command}` did not finish within {timeout:?}")]
    CommandTimedOut { command: String, timeout: Duration },

    #[error("{name} exited during startup ({status}); last lines of {}:\n{tail}", log.display())]
    ProcessExited {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{what} not ready after {timeout:?} (last error: {last_error}); last lines of {}:\n{tail}", log.display())]
    NotReady {
        what: String,
        timeout: Duration,
        last_error: String,
        log: PathBuf,
        tail: String,
    },

    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },

    #[error("{context}: {source}")]
    Kubeconfig {
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("{context}: {source}")]
    Yaml {
        context: String,
        #[source]
        source: serde_yaml::Error,
    },

    #[error("unknown identity {name:?}; this cluster has: {known}")]
    UnknownIdentity { name: String, known: String },

    #[error("timed out after {timeout:?}: {what}")]
    Timeout { what: String, timeout: Duration },
}

/// Debug shows the message and its causes, as `Display` does: tests report errors with
/// `expect`/`unwrap`, which print `Debug`, and the message (with the setup hint or the log tail) is the
/// useful part.
impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        HarnessError::Kube {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| HarnessError::io(context(), e))
    }
}
