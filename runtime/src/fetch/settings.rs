//! How a model reference is made local: the settings `fetch` works with (from the command line and
//! the environment, by `setup`).

use super::aws::CredentialSource;
use super::s3::DEFAULT_REGION;
use std::path::PathBuf;
use std::time::Duration;

/// How a model reference is made local.
#[derive(Clone, Debug)]
pub struct FetchSettings {
    /// `sha256:<64 hex>`: the content the model file must have.
    pub digest: Option<String>,
    /// Where downloads are kept.
    pub cache_dir: PathBuf,
    /// A PEM file of extra CA certificates trusted for https (besides the bundled Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// The largest download accepted.
    pub max_bytes: u64,
    /// Tries per download: connection errors, 429 and 5xx are tried again, other answers are not.
    pub attempts: u32,
    /// Wait before the second try; doubled before each later one.
    pub retry_backoff: Duration,
    /// `http(s)://host[:port]` of an S3-compatible store for `s3://` models; `None`: AWS.
    pub s3_endpoint: Option<String>,
    /// The region `s3://` requests are signed for.
    pub s3_region: String,
    /// Where the keys for `s3://` models come from, or why the environment's are unusable —
    /// an error only once an `s3://` model is asked for.
    pub s3_credentials: std::result::Result<CredentialSource, String>,
    /// Whether a non-AWS endpoint gets the pod's AWS identity too (`--s3-send-pod-identity`).
    pub s3_send_pod_identity: bool,
}

impl FetchSettings {
    pub const DEFAULT_MAX_MIB: u64 = 16 * 1024;

    pub fn new(digest: Option<String>, cache_dir: PathBuf) -> Self {
        FetchSettings {
            digest,
            cache_dir,
            ca_file: None,
            max_bytes: Self::DEFAULT_MAX_MIB * 1024 * 1024,
            attempts: 6,
            retry_backoff: Duration::from_secs(1),
            s3_endpoint: None,
            s3_region: DEFAULT_REGION.to_string(),
            s3_credentials: Ok(CredentialSource::Anonymous),
            s3_send_pod_identity: false,
        }
    }
}

/// The default download folder: `$TMPDIR/greenbatch-models` (`/tmp` is an emptyDir in the
/// operator's pods, whose root filesystem is read-only).
pub fn default_cache_dir() -> PathBuf {
    std::env::temp_dir().join("greenbatch-models")
}
