//! The operator's errors: each says what was being done.

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(
        "the greenbatch CRDs are not installed (API group greenbatch.dev/v1alpha1 lacks {missing}): install the chart with crds.install=true, or run `kubectl apply -f crds/`"
    )]
    CrdsMissing { missing: String },
    #[error("{context}: {source}")]
    Kube {
        context: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid leader-election settings: {reason}")]
    InvalidLeaseSettings { reason: String },
    #[error("invalid settings: {0}")]
    Config(String),
    #[error(
        "lost leadership of Lease {lease}: {reason}; exiting so that this replica restarts as a standby"
    )]
    LeadershipLost { lease: String, reason: String },
    #[error("no answer about Lease {lease} within {after:?}")]
    LeaseTimeout {
        lease: String,
        after: std::time::Duration,
    },
    #[error("cannot build the HTTP client that reads serving pods' metrics: {0}")]
    ScrapeClient(#[source] reqwest::Error),
    #[error("the controller task failed: {0}")]
    Task(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why one reconcile failed; the controller retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("InferenceService has no {0}")]
    MissingMetadata(&'static str),
    #[error("{action} {kind} {namespace}/{name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// The API server said 409 Conflict: the object changed (or went) between what this reconcile
    /// read and what it wrote — an owner deleted while its Service was applied, say. Not a
    /// failure: the next look sees the cluster as it is now.
    /// (Not `AlreadyExists`, also a 409: that one says something else.)
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ReconcileError::Api { source: kube::Error::Api(s), .. }
                if s.code == 409 && s.reason == "Conflict"
        )
    }

    /// A label for the errors metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::MissingMetadata(_) => "metadata",
            ReconcileError::Api { kind, .. } => kind,
        }
    }
}
