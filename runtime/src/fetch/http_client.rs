//! The HTTP client every model download and credentials request goes through: timeouts, the
//! redirect rule, https only where the target is https, the bundled Mozilla roots plus the
//! operator's CA file; and how its errors read.

use crate::error::RuntimeError;
use std::path::Path;
use std::time::Duration;

/// A blocking client: `https_only` refuses any http hop (a redirect down to http included),
/// `redirects` follows at most that many (0: none), `ca_file` adds CA certificates (PEM).
pub fn blocking_client(
    ca_file: Option<&Path>,
    https_only: bool,
    redirects: usize,
) -> Result<reqwest::blocking::Client, RuntimeError> {
    // Per wait, not per download (reqwest's blocking client): two minutes without an answer, or
    // without the next piece of the body, end this try; a large model on a slow link can take as
    // long as it keeps moving.
    client_with(
        ca_file,
        https_only,
        redirects,
        Duration::from_secs(15),
        Duration::from_secs(120),
    )
}

/// A client for a local agent (the container credentials endpoint): an agent that is there answers
/// at once, and one that is not should not cost minutes of tries (the SDKs wait 2 s and 5 s).
pub fn agent_client(
    ca_file: Option<&Path>,
    https_only: bool,
) -> Result<reqwest::blocking::Client, RuntimeError> {
    client_with(
        ca_file,
        https_only,
        0,
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
}

fn client_with(
    ca_file: Option<&Path>,
    https_only: bool,
    redirects: usize,
    connect: Duration,
    wait: Duration,
) -> Result<reqwest::blocking::Client, RuntimeError> {
    let policy = match redirects {
        0 => reqwest::redirect::Policy::none(),
        n => reqwest::redirect::Policy::limited(n),
    };
    let mut builder = reqwest::blocking::Client::builder()
        .connect_timeout(connect)
        .timeout(wait)
        // A model store may redirect (to a CDN, a presigned object URL), but never from https
        // down to http, and never with the original URL (and its query) as the Referer.
        .redirect(policy)
        .referer(false)
        .https_only(https_only)
        .user_agent(concat!("greenbatch-runtime/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| RuntimeError::Usage {
            arg: "--model-ca-file",
            message: format!("cannot read {}: {e}", ca.display()),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RuntimeError::Usage {
                arg: "--model-ca-file",
                message: format!("{}: not PEM certificates: {e}", ca.display()),
            })?;
        if certs.is_empty() {
            return Err(RuntimeError::Usage {
                arg: "--model-ca-file",
                message: format!("{}: no certificate in it", ca.display()),
            });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| RuntimeError::Usage {
        arg: "--model-ca-file",
        message: format!("HTTP client: {e}"),
    })
}

/// Whether a request error may pass with another try: connection trouble — refused, reset,
/// closed before the answer (a keep-alive connection the server had closed, a load balancer's
/// reset); not an untrusted certificate, which would fail the same way again — or a timeout.
/// Only idempotent requests (GETs, STS's AssumeRoleWithWebIdentity) are made here.
pub fn is_transient(e: &reqwest::Error) -> bool {
    ((e.is_connect() || e.is_request()) && !is_certificate_error(e)) || e.is_timeout()
}

/// Whether TLS refused the server's certificate (somewhere in the error's causes).
pub fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        // The TLS error travels inside io::Errors (nested, here), whose `source()` skips the
        // error they wrap: unwrap them by hand.
        let mut wrapped = Some(cause);
        while let Some(inner) = wrapped {
            if matches!(
                inner.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
            ) {
                return true;
            }
            wrapped = inner
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|e| e as &(dyn std::error::Error + 'static));
        }
        source = cause.source();
    }
    false
}

/// An error with its causes: reqwest's own message alone often says only "error sending request".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
