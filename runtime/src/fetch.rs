//! Where the model file comes from, made local and checked before anything loads it.
//!
//! An `http(s)://` URL is downloaded into a cache folder. A download lands under a temporary name
//! in that folder and becomes the cached file only once it is complete and, with a digest, has the
//! digest asked for: a cut connection, a size beyond the limit or a wrong file leave nothing
//! behind that a later run could mistake for the model. A local file with a digest is checked the
//! same way before it is loaded, so a profile keyed by that digest measures that content.
//!
//! An `s3://bucket/key` object is downloaded the same way, from AWS or an S3-compatible store
//! (`--s3-endpoint`), signed (`s3`) with keys from where the environment says (`aws`,
//! `credentials`): static keys, the pod's web identity (IRSA), a credentials endpoint (EKS Pod
//! Identity), asked for only on a cache miss and again before temporary ones run out.

mod aws;
mod credentials;
mod http_client;
mod redact;
mod remote;
mod s3;
mod settings;
mod tries;

use crate::error::{Result, RuntimeError};
pub use aws::CredentialSource;
use aws::Credentials;
use http_client::error_chain;
use redact::{fetch_error, is_remote, unreachable_error};
pub use redact::{redacted, redacted_model};
use remote::{Remote, client};
pub use s3::DEFAULT_REGION;
pub use settings::{FetchSettings, default_cache_dir};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tries::Tries;

/// The hex part of a `sha256:<64 lowercase hex>` digest.
fn digest_hex(digest: &str) -> Result<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| RuntimeError::Usage {
            arg: "--model-digest",
            message: format!("{digest:?}: expected sha256:<64 lowercase hex digits>"),
        })
}

/// The local model reference for `model`: a builtin as is; a local file as is, once it has the
/// digest when one is given; an http(s) URL or an `s3://` object as the path of its checked
/// download.
pub fn resolve(model: &str, settings: &FetchSettings) -> Result<String> {
    let expected = settings.digest.as_deref().map(digest_hex).transpose()?;
    if model.starts_with("builtin:") {
        if expected.is_some() {
            return Err(RuntimeError::Usage {
                arg: "--model-digest",
                message: "a builtin model has no file to check".into(),
            });
        }
        return Ok(model.to_string());
    }
    if !is_remote(model) {
        if let Some(expected) = expected {
            let path = Path::new(model.strip_prefix("file://").unwrap_or(model));
            check_file(path, expected)?;
            tracing::info!(path = %path.display(), "model file has the expected digest");
        }
        return Ok(model.to_string());
    }
    let remote = Remote::parse(model, settings)?;
    let path = download(&remote, expected, settings)?;
    Ok(path.to_string_lossy().into_owned())
}

/// The sha256 of a file, hex.
fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_file(path: &Path, expected: &str) -> Result<()> {
    let actual = file_sha256(path).map_err(|e| RuntimeError::ModelMissing {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if actual != expected {
        return Err(RuntimeError::DigestMismatch {
            what: path.display().to_string(),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        });
    }
    Ok(())
}

/// Where a URL's download is kept: by digest when one is given (a later run reuses it after
/// checking it), else by the URL (downloaded again each time: nothing says the content is the same).
fn cache_path(url: &str, expected: Option<&str>, dir: &Path) -> PathBuf {
    let name = match expected {
        Some(hex) => format!("sha256-{hex}.pt"),
        None => format!("url-{}.pt", &hex(&Sha256::digest(url.as_bytes()))[..16]),
    };
    dir.join(name)
}

fn download(remote: &Remote, expected: Option<&str>, s: &FetchSettings) -> Result<PathBuf> {
    let url = remote.reference();
    let target = cache_path(&remote.cache_identity(), expected, &s.cache_dir);
    if let Some(expected) = expected
        && target.is_file()
    {
        match check_file(&target, expected) {
            Ok(()) => {
                tracing::info!(url = %redacted(url), path = %target.display(), "model already downloaded, digest checked");
                return Ok(target);
            }
            // Not removed here: another process may be renaming a good download into its place;
            // this download's rename replaces it atomically either way.
            Err(e) => tracing::warn!(path = %target.display(), "cached model not used: {e}"),
        }
    }
    if expected.is_none() {
        tracing::warn!(url = %redacted(url), "no --model-digest: the download is not verified");
    }
    std::fs::create_dir_all(&s.cache_dir).map_err(|e| {
        fetch_error(
            url,
            format!(
                "cannot create the cache folder {}: {e}",
                s.cache_dir.display()
            ),
        )
    })?;
    let client = client(remote, s)?;
    let mut keys: Option<Credentials> = None;
    let mut asked_again = false;
    let mut tries = Tries::new(s.attempts, s.retry_backoff);
    loop {
        let try_number = tries.start();
        let signing = remote.keys(&mut keys, s)?;
        match download_once(&client, remote, signing.as_ref(), expected, s, &target) {
            Ok(bytes) => {
                tracing::info!(url = %redacted(url), path = %target.display(), bytes, tries = try_number, "model downloaded");
                return Ok(target);
            }
            Err(Attempt::Retry(message)) => match tries.next_wait() {
                Some(wait) => {
                    tracing::warn!(url = %redacted(url), tries = try_number, "model download failed, trying again in {wait:?}: {message}");
                    std::thread::sleep(wait);
                }
                None => return Err(unreachable_error(url, tries.gave_up(&message))),
            },
            // Temporary keys that ran out sooner than they said: asked for again, once. Static
            // keys (an expired session token in a Secret) would come back the same.
            Err(Attempt::Expired(message))
                if !asked_again && keys.as_ref().is_some_and(|k| k.expires_at.is_some()) =>
            {
                tracing::warn!(url = %redacted(url), tries = try_number, "the keys expired, asking for new ones: {message}");
                keys = None;
                asked_again = true;
            }
            Err(Attempt::Expired(message)) => return Err(fetch_error(url, message)),
            Err(Attempt::Fail(e)) => return Err(e),
        }
    }
}

enum Attempt {
    /// Worth another try (connection trouble, 429, 5xx).
    Retry(String),
    /// S3 says the (temporary) keys expired: another try with new ones.
    Expired(String),
    Fail(RuntimeError),
}

/// One download into a temporary file beside `target`, renamed to `target` once complete and
/// checked. Returns the bytes written.
fn download_once(
    client: &reqwest::blocking::Client,
    remote: &Remote,
    keys: Option<&Credentials>,
    expected: Option<&str>,
    s: &FetchSettings,
    target: &Path,
) -> std::result::Result<u64, Attempt> {
    let url = remote.reference();
    let request = remote
        .request(client, keys)
        .map_err(|message| Attempt::Fail(fetch_error(url, message)))?;
    let mut response = request.send().map_err(|e| {
        // Connection trouble and timeouts may pass; anything else (an untrusted certificate, a
        // redirect refused, a malformed URL) would fail the same way again.
        let transient = http_client::is_transient(&e);
        // reqwest's message ends with the full URL, query and credentials included.
        let message = error_chain(&e.without_url());
        if transient {
            Attempt::Retry(message)
        } else {
            Attempt::Fail(fetch_error(url, message))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        let (message, code) = remote.refusal(response, keys.is_some());
        return Err(match code.as_deref() {
            Some("ExpiredToken" | "TokenRefreshRequired") => Attempt::Expired(message),
            _ if status.as_u16() == 429 || status.is_server_error() => Attempt::Retry(message),
            _ => Attempt::Fail(fetch_error(url, message)),
        });
    }
    if let Some(length) = response.content_length()
        && length > s.max_bytes
    {
        return Err(Attempt::Fail(too_large(url, s.max_bytes)));
    }
    let mut partial = tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(&s.cache_dir)
        .map_err(|e| {
            Attempt::Fail(fetch_error(
                url,
                format!("cannot write to {}: {e}", s.cache_dir.display()),
            ))
        })?;
    let mut sink = Counted {
        inner: partial.as_file_mut(),
        hasher: Sha256::new(),
        written: 0,
        limit: s.max_bytes,
        write_failed: false,
    };
    if let Err(e) = response.copy_to(&mut sink) {
        let e = e.without_url();
        return Err(if sink.written > s.max_bytes {
            Attempt::Fail(too_large(url, s.max_bytes))
        } else if sink.write_failed {
            // Our side (e.g. the disk is full): another try would fail the same way.
            Attempt::Fail(fetch_error(
                url,
                format!(
                    "cannot write the download to {}: {}",
                    s.cache_dir.display(),
                    error_chain(&e)
                ),
            ))
        } else {
            Attempt::Retry(format!(
                "the download broke off after {} bytes: {}",
                sink.written,
                error_chain(&e)
            ))
        });
    }
    let written = sink.written;
    let actual = hex(&sink.hasher.finalize());
    if let Some(expected) = expected
        && actual != expected
    {
        return Err(Attempt::Fail(RuntimeError::DigestMismatch {
            what: redacted(url),
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        }));
    }
    partial
        .as_file()
        .sync_all()
        .and_then(|()| partial.persist(target).map(|_| ()).map_err(|e| e.error))
        .map_err(|e| {
            Attempt::Fail(fetch_error(
                url,
                format!("cannot keep the download at {}: {e}", target.display()),
            ))
        })?;
    Ok(written)
}

fn too_large(url: &str, limit: u64) -> RuntimeError {
    fetch_error(
        url,
        format!(
            "larger than the {} MiB limit (--model-max-mib)",
            limit / (1024 * 1024)
        ),
    )
}

/// Writes through to the file, hashing and counting, and refuses to go past the size limit.
struct Counted<'a> {
    inner: &'a mut std::fs::File,
    hasher: Sha256,
    written: u64,
    limit: u64,
    /// The file refused a write (the error is ours, not the connection's).
    write_failed: bool,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.written += buf.len() as u64;
            return Err(std::io::Error::other("size limit reached"));
        }
        let n = self
            .inner
            .write(buf)
            .inspect_err(|_| self.write_failed = true)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A one-file HTTP/1.1 server on a loopback port, answering each connection from `answers`
    /// in turn (the last one repeats): status, and the body (or a Content-Length without a body).
    struct TestServer {
        url: String,
        requests: Arc<Mutex<u32>>,
    }

    #[derive(Clone)]
    enum Answer {
        Ok(Vec<u8>),
        Status(u16),
        ClaimsLength(u64),
        CutAfter(Vec<u8>, usize),
        /// The body, then the connection closes: no Content-Length to refuse it by.
        Unsized(Vec<u8>),
        /// A status with a body (S3's XML error, a credentials endpoint's JSON).
        Body(u16, String),
        /// The request read, then the connection closed with no answer (a load balancer's
        /// reset, a keep-alive connection the server had closed).
        Hangup,
    }

    fn serve(answers: Vec<Answer>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/models/tiny.pt", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(0u32));
        let counter = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let n = {
                    let mut c = counter.lock().unwrap();
                    *c += 1;
                    *c as usize
                };
                let answer = answers[(n - 1).min(answers.len() - 1)].clone();
                let _ = match answer {
                    Answer::Ok(body) => stream
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes())
                        .and_then(|()| stream.write_all(&body)),
                    Answer::Status(code) => stream.write_all(
                        format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                    ),
                    Answer::Body(code, body) => stream.write_all(
                        format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                    ),
                    Answer::ClaimsLength(n) => stream.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n").as_bytes(),
                    ),
                    Answer::CutAfter(body, keep) => stream
                        .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes())
                        .and_then(|()| stream.write_all(&body[..keep])),
                    Answer::Unsized(body) => stream
                        .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                        .and_then(|()| stream.write_all(&body)),
                    Answer::Hangup => Ok(()),
                };
            }
        });
        TestServer { url, requests }
    }

    fn digest_of(bytes: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(bytes)))
    }

    fn settings(digest: Option<String>, dir: &Path) -> FetchSettings {
        FetchSettings {
            retry_backoff: Duration::from_millis(10),
            ..FetchSettings::new(digest, dir.to_path_buf())
        }
    }

    /// The cache folder's entries (a partial download left behind would show here).
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_download_with_its_digest_is_kept_and_reused() {
        let body = b"not really torchscript, but bytes with a digest".to_vec();
        let server = serve(vec![Answer::Ok(body.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let s = settings(Some(digest_of(&body)), dir.path());
        let path = resolve(&server.url, &s).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert!(
            path.ends_with(&format!("sha256-{}.pt", &digest_of(&body)[7..])),
            "{path}"
        );
        // A second run finds it, checks it, and does not download again.
        assert_eq!(resolve(&server.url, &s).unwrap(), path);
        assert_eq!(*server.requests.lock().unwrap(), 1);
        // A cached file that no longer has the digest is replaced by a fresh download.
        std::fs::write(&path, b"tampered").unwrap();
        assert_eq!(resolve(&server.url, &s).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), body);
        assert_eq!(*server.requests.lock().unwrap(), 2);
    }

    #[test]
    fn a_download_with_another_digest_leaves_nothing() {
        let server = serve(vec![Answer::Ok(b"the wrong file".to_vec())]);
        let dir = tempfile::tempdir().unwrap();
        let wanted = digest_of(b"the right file");
        let err = resolve(&server.url, &settings(Some(wanted.clone()), dir.path())).unwrap_err();
        assert_eq!(err.exit_code(), 14, "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&wanted) && message.contains(&digest_of(b"the wrong file")),
            "{message}"
        );
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
        // Not worth another try: the server answered, with other content.
        assert_eq!(*server.requests.lock().unwrap(), 1);
    }

    #[test]
    fn server_errors_are_tried_again_client_errors_are_not() {
        let body = b"model".to_vec();
        let server = serve(vec![
            Answer::Status(503),
            Answer::Status(500),
            Answer::Ok(body.clone()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = resolve(&server.url, &settings(Some(digest_of(&body)), dir.path())).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), body);
        assert_eq!(*server.requests.lock().unwrap(), 3);

        let gone = serve(vec![Answer::Status(404)]);
        let err = resolve(&gone.url, &settings(None, dir.path())).unwrap_err();
        assert_eq!(err.exit_code(), 13, "{err}");
        assert!(err.to_string().contains("404"), "{err}");
        assert_eq!(*gone.requests.lock().unwrap(), 1);

        // Still down after every try: trouble that may pass, told apart (exit code 15) from a
        // refusal, so a profiling Job tries again with a new pod instead of failing for good.
        let down = serve(vec![Answer::Status(503)]);
        let err = resolve(&down.url, &settings(None, dir.path())).unwrap_err();
        assert!(
            err.to_string().contains("503") && err.to_string().contains("after 6 tries"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 15, "{err}");
    }

    #[test]
    fn a_connection_closed_before_the_answer_is_tried_again() {
        let body = b"model".to_vec();
        let server = serve(vec![Answer::Hangup, Answer::Ok(body.clone())]);
        let dir = tempfile::tempdir().unwrap();
        let path = resolve(&server.url, &settings(Some(digest_of(&body)), dir.path())).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), body);
        assert_eq!(*server.requests.lock().unwrap(), 2);
    }

    #[test]
    fn too_large_or_cut_downloads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(None, dir.path());
        s.max_bytes = 1000;
        let claims = serve(vec![Answer::ClaimsLength(5000)]);
        let err = resolve(&claims.url, &s).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        let unsized_body = serve(vec![Answer::Unsized(vec![1u8; 5000])]);
        let err = resolve(&unsized_body.url, &s).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        assert_eq!(*unsized_body.requests.lock().unwrap(), 1, "not tried again");
        let cut = serve(vec![Answer::CutAfter(vec![7u8; 800], 300)]);
        let err = resolve(&cut.url, &s).unwrap_err();
        assert!(
            err.to_string().contains("broke off") && err.to_string().contains("after 6 tries"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 15, "{err}");
        assert_eq!(*cut.requests.lock().unwrap(), 6);
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
        let refused = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/m.pt", l.local_addr().unwrap());
            drop(l);
            url
        };
        let err = resolve(&refused, &s).unwrap_err();
        assert_eq!(err.exit_code(), 15, "{err}");
    }

    #[test]
    fn local_files_are_checked_against_the_digest_and_builtins_refuse_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.pt");
        std::fs::write(&file, b"weights").unwrap();
        let path = file.to_string_lossy().into_owned();
        let s = settings(Some(digest_of(b"weights")), dir.path());
        assert_eq!(resolve(&path, &s).unwrap(), path);
        assert_eq!(
            resolve(&format!("file://{path}"), &s).unwrap(),
            format!("file://{path}")
        );
        let other = settings(Some(digest_of(b"other weights")), dir.path());
        assert_eq!(resolve(&path, &other).unwrap_err().exit_code(), 14);
        let missing = dir.path().join("gone.pt").to_string_lossy().into_owned();
        assert_eq!(resolve(&missing, &s).unwrap_err().exit_code(), 3);
        // Without a digest a local path is passed on untouched (the loader reports what is wrong).
        assert_eq!(
            resolve(&missing, &settings(None, dir.path())).unwrap(),
            missing
        );
        assert_eq!(resolve("builtin:resnet18", &s).unwrap_err().exit_code(), 2);
        assert_eq!(
            resolve("builtin:resnet18", &settings(None, dir.path())).unwrap(),
            "builtin:resnet18"
        );
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            let e = resolve(&path, &settings(Some(bad.to_string()), dir.path())).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
    }

    #[test]
    fn a_failed_download_s_message_carries_no_query_or_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let refused = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!(
                "http://user:hunter2@{}/m.pt?X-Amz-Signature=s3cr3t",
                l.local_addr().unwrap()
            );
            drop(l);
            url
        };
        let err = resolve(&refused, &settings(None, dir.path())).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("after 6 tries"),
            "connection refused is tried again: {message}"
        );
        assert!(
            !message.contains("s3cr3t") && !message.contains("hunter2"),
            "{message}"
        );
        // An answer that is not worth trying again says so at once, also without secrets.
        let gone = serve(vec![Answer::Status(404)]);
        let url = format!("{}?sig=s3cr3t", gone.url);
        let message = resolve(&url, &settings(None, dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("404") && !message.contains("s3cr3t"),
            "{message}"
        );
    }

    #[test]
    fn urls_in_messages_carry_no_secrets() {
        assert_eq!(
            redacted("https://models.example/r50.pt"),
            "https://models.example/r50.pt"
        );
        assert_eq!(
            redacted("https://user:pw@models.example/r50.pt?X-Amz-Signature=abc#x"),
            "https://models.example/r50.pt (query or credentials hidden)"
        );
        // An S3 key's `?`, `#` and `@` are the key's; credentials before the bucket are not.
        assert_eq!(redacted("s3://models/a?b#c@d.pt"), "s3://models/a?b#c@d.pt");
        assert_eq!(
            redacted("s3://AKIA1:s3cr3t@models/r50.pt"),
            "s3://models/r50.pt (credentials hidden)"
        );
        assert_eq!(
            redacted("s3://AKIA1:s3cr3t@models"),
            "s3://… (credentials hidden)"
        );
        // Secrets holding `/`, `?` or `#` cut the authority short: still hidden, whole.
        assert_eq!(
            redacted("s3://AKIA1:se/cr3t@models/r50.pt"),
            "s3://models/r50.pt (credentials hidden)"
        );
        assert_eq!(
            redacted("https://u:pa/ss@h.example/m.pt"),
            "https://h.example/m.pt (query or credentials hidden)"
        );
        assert_eq!(
            redacted("https://u:p?ss@h.example/m.pt?sig=1"),
            "https://h.example/m.pt (query or credentials hidden)"
        );
        assert_eq!(
            redacted("https://u:p#ss@h.example/m.pt"),
            "https://h.example/m.pt (query or credentials hidden)"
        );
        assert_eq!(
            redacted("https://u:pa/ss"),
            "https://… (credentials hidden)"
        );
        // A secret whose part before its `/`, `?` or `#` is digits reads like a port: with an `@`
        // after it nothing is shown (a port with an `@` in its path is hidden too, rather than
        // shown with the wrong host).
        for ambiguous in [
            "https://user:1234/abcd@host.example/m.pt",
            "https://u:12?ss@h.example/m.pt",
            "https://h.example:8443/models/v1@2.pt",
        ] {
            assert_eq!(
                redacted(ambiguous),
                "https://… (credentials hidden)",
                "{ambiguous}"
            );
        }
        assert_eq!(
            redacted("s3://AKIA:7/x@bucket/key.pt"),
            "s3://bucket/key.pt (credentials hidden)"
        );
        // Ports, IPv6 literals and an `@` in a path are no credentials.
        for plain in [
            "https://h.example:8443/m.pt",
            "http://[::1]/m.pt",
            "http://[::1]:8080/m.pt",
            "https://h.example/models/v1@2.pt",
            "s3://models/user@x.pt",
        ] {
            assert_eq!(redacted(plain), plain);
        }
    }

    /// An S3 stand-in at `server`'s address (its path ignored): the endpoint and the model URI.
    fn s3_at(server: &TestServer) -> (String, String) {
        let base = server.url.trim_end_matches("/models/tiny.pt").to_string();
        (base, "s3://models/tiny.pt".to_string())
    }

    const EXPIRED: &str = "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>";

    #[test]
    fn expired_temporary_keys_are_asked_for_again_once_and_static_ones_fail_at_once() {
        let body = b"model bytes".to_vec();
        let dir = tempfile::tempdir().unwrap();
        // Static keys (an expired session token in a Secret): refused at once, one request.
        let store = serve(vec![Answer::Body(400, EXPIRED.into())]);
        let (endpoint, uri) = s3_at(&store);
        let keys = Credentials {
            access_key_id: "ASIA1".into(),
            secret_access_key: "s".into(),
            session_token: Some("t".into()),
            expires_at: None,
        };
        let s = FetchSettings {
            s3_endpoint: Some(endpoint),
            s3_credentials: Ok(CredentialSource::Static(keys)),
            ..settings(Some(digest_of(&body)), dir.path())
        };
        let err = resolve(&uri, &s).unwrap_err();
        assert!(err.to_string().contains("ExpiredToken"), "{err}");
        assert_eq!(*store.requests.lock().unwrap(), 1);

        // Keys from a credentials endpoint (a stand-in handing out keys good for ages), to
        // a store (a stand-in answering `answers`) with the `digest` given.
        let through_agent = |answers: Vec<Answer>, digest: Option<String>, cache: &Path| {
            let agent = serve(vec![Answer::Body(
                200,
                r#"{"AccessKeyId":"ASIA2","SecretAccessKey":"s","Token":"t","Expiration":"2999-01-01T00:00:00Z"}"#.into(),
            )]);
            let store = serve(answers);
            let (endpoint, uri) = s3_at(&store);
            let s = FetchSettings {
                s3_endpoint: Some(endpoint),
                s3_credentials: Ok(CredentialSource::Container(aws::ContainerEndpoint {
                    url: agent.url.clone(),
                    token_file: None,
                    token: None,
                })),
                s3_send_pod_identity: true,
                ..settings(digest, cache)
            };
            (resolve(&uri, &s), store, agent)
        };
        // S3 finds them expired: asked for again, once, and the download goes on with new ones.
        let (path, store, agent) = through_agent(
            vec![Answer::Body(400, EXPIRED.into()), Answer::Ok(body.clone())],
            Some(digest_of(&body)),
            dir.path(),
        );
        assert_eq!(std::fs::read(path.unwrap()).unwrap(), body);
        assert_eq!(*store.requests.lock().unwrap(), 2);
        assert_eq!(
            *agent.requests.lock().unwrap(),
            2,
            "asked again after ExpiredToken"
        );
        // Expired again with the new keys: not a loop.
        let (err, store, _) = through_agent(
            vec![Answer::Body(400, EXPIRED.into())],
            None,
            &dir.path().join("again"),
        );
        assert!(err.unwrap_err().to_string().contains("ExpiredToken"));
        assert_eq!(*store.requests.lock().unwrap(), 2);
    }
}
