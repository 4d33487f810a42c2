//! A real S3 API on a loopback port for the `s3://` tests (the runtime's and the operator's
//! end-to-end): moto's server (PyPI `moto`, installed by `scripts/setup-s3-test.sh`) with request
//! authentication on, so a wrong key or a bad signature is refused as AWS refuses it
//! (`tests/fixtures/s3_store.py`).

use crate::workspace::workspace_root;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The web identity token `tests/fixtures/s3_store.py` assumes its role with (what the IRSA
/// webhook would mount into a pod).
pub const WEB_IDENTITY_TOKEN: &str = "test-oidc-token";

/// Set (as `scripts/test.sh` does), a missing moto fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "GREENBATCH_REQUIRE_S3_STORE";

/// One store holding one object, `s3://<bucket>/<key>`, readable with the keys it made.
pub struct S3Store {
    child: Child,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub key: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A role that may read the object, and moto's answer to `AssumeRoleWithWebIdentity` for
    /// it: keys and a session token moto checks, for a test's STS stand-in to hand out.
    pub role_arn: String,
    pub sts_response: String,
}

impl S3Store {
    /// The Python that has moto: `$GREENBATCH_S3_PYTHON`, else the setup script's venv; `None`,
    /// saying the test is skipped, when it has not been installed (a panic instead when
    /// [`REQUIRE_ENV`] is set).
    pub fn python() -> Option<PathBuf> {
        let python = std::env::var_os("GREENBATCH_S3_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let cache = std::env::var_os("GREENBATCH_CACHE")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var("HOME").unwrap_or_default())
                            .join(".cache/greenbatch")
                    });
                cache.join("s3-venv/bin/python")
            });
        let has_moto = Command::new(&python)
            .args(["-c", "import moto.server, boto3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_moto && std::env::var_os(REQUIRE_ENV).is_some() {
            panic!(
                "{REQUIRE_ENV} is set but {} cannot import moto: run scripts/setup-s3-test.sh",
                python.display()
            );
        }
        if !has_moto {
            eprintln!("skipped: moto is not installed (scripts/setup-s3-test.sh)");
        }
        has_moto.then_some(python)
    }

    /// A store holding `file` at `key` (in bucket `models`); `None` without moto (see
    /// [`S3Store::python`]).
    pub fn start(file: &Path, key: &str) -> Option<Self> {
        Self::start_with(file, key, &[], false)
    }

    /// A store that checks no signature — a labelled stand-in for a public-read bucket (moto's
    /// authentication refuses every unsigned request, bucket policies notwithstanding).
    pub fn start_public(file: &Path, key: &str) -> Option<Self> {
        Self::start_with(file, key, &[], true)
    }

    /// The same store speaking https with `pki`'s serving certificate (SAN 127.0.0.1), signed by
    /// its CA: a store with a private CA.
    pub fn start_tls(file: &Path, key: &str, pki: &crate::pki::Pki) -> Option<Self> {
        Self::start_with(
            file,
            key,
            &[&pki.serving_cert, &pki.serving_key, &pki.ca_cert],
            false,
        )
    }

    fn start_with(file: &Path, key: &str, tls: &[&Path], public: bool) -> Option<Self> {
        let python = Self::python()?;
        let mut child = Command::new(python)
            .env("S3_STORE_PUBLIC", if public { "1" } else { "0" })
            .arg(workspace_root().join("tests/fixtures/s3_store.py"))
            .arg(file)
            .arg(key)
            .args(tls)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the S3 store starts");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line);
        let info: serde_json::Value = match read.ok().and_then(|_| serde_json::from_str(&line).ok())
        {
            Some(info) => info,
            None => {
                let _ = child.kill();
                panic!("the S3 store did not start: it said {line:?}");
            }
        };
        let field = |name: &str| info[name].as_str().unwrap_or_default().to_string();
        Some(S3Store {
            endpoint: field("endpoint"),
            region: field("region"),
            bucket: field("bucket"),
            key: field("key"),
            access_key_id: field("access_key_id"),
            secret_access_key: field("secret_access_key"),
            role_arn: field("role_arn"),
            sts_response: field("sts_response"),
            child,
        })
    }

    /// `s3://<bucket>/<key>` of the object it holds.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for STS or a container credentials endpoint — a labelled test double: it checks the
/// request the runtime makes and hands out keys moto issued (`S3Store::sts_response`), so the
/// store itself checks the signature and session token made with them. `answer` gets the request
/// (head and body) and returns the status and body. Its base URL.
pub fn stand_in(answer: impl Fn(&str) -> (u16, String) + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let request = format!("{head}\r\n{}", String::from_utf8_lossy(&body));
            let (status, reply) = answer(&request);
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    url
}
