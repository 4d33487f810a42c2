//! Keys for `s3://` requests from the source the environment names (`aws::CredentialSource`):
//! as given, or asked for — STS for a web identity, the container credentials endpoint. Temporary
//! keys carry their expiry; `fetch` asks again before they run out.

use super::aws::{self, CredentialSource, Credentials};
use super::http_client::{self, error_chain};
use super::tries::Tries;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// How to ask: the region (for STS's endpoint), the CA file trusted besides the public roots, and
/// the tries (connection trouble, 429 and 5xx are tried again, waiting `backoff`, then double).
pub struct Asking<'a> {
    pub region: &'a str,
    pub ca_file: Option<&'a Path>,
    pub attempts: u32,
    pub backoff: Duration,
}

/// Why there are no keys; `passing` when it may pass (the endpoint could not be reached, or
/// answered 429/5xx/throttling, through every try).
#[derive(Debug)]
pub struct NoKeys {
    pub message: String,
    pub passing: bool,
}

impl From<String> for NoKeys {
    fn from(message: String) -> Self {
        NoKeys {
            message,
            passing: false,
        }
    }
}

/// The keys `source` gives (`None`: anonymous), or why there are none.
pub fn resolve(source: &CredentialSource, ask: &Asking) -> Result<Option<Credentials>, NoKeys> {
    match source {
        CredentialSource::Anonymous => Ok(None),
        CredentialSource::Static(keys) => Ok(Some(keys.clone())),
        CredentialSource::WebIdentity(web) => {
            let token = read_token(&web.token_file, "the web identity token")?;
            let url = aws::sts_url(web, ask.region);
            let form = aws::assume_role_form(web, &token);
            let client = http_client::blocking_client(ask.ca_file, url.starts_with("https://"), 0)
                .map_err(|e| e.to_string())?;
            let body = ask_with_tries(ask, &client, &url, |client| client.post(&url).form(&form))?;
            Ok(aws::parse_sts_credentials(&body).map(Some)?)
        }
        CredentialSource::Container(endpoint) => {
            // Read at each use: the agent rotates it.
            let token = match (&endpoint.token_file, &endpoint.token) {
                (Some(file), _) => Some(read_token(file, "the container authorization token")?),
                (None, token) => token.clone(),
            };
            let client =
                http_client::agent_client(ask.ca_file, endpoint.url.starts_with("https://"))
                    .map_err(|e| e.to_string())?;
            let shown = endpoint.shown();
            // Checked here, not dropped: a request without it would only say 401.
            let authorization = token
                .as_deref()
                .map(|t| {
                    reqwest::header::HeaderValue::from_str(t).map_err(|_| {
                        "the container authorization token holds characters an HTTP header \
                         cannot carry"
                            .to_string()
                    })
                })
                .transpose()?
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                });
            let body = ask_with_tries(ask, &client, &shown, |client| {
                let request = client.get(&endpoint.url);
                match &authorization {
                    Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
                    None => request,
                }
            })
            .map_err(|e| NoKeys {
                // The usual cause on EKS: the Pod Identity agent add-on is not installed.
                message: format!("{} (is the credentials agent running on the node? on EKS, the eks-pod-identity-agent add-on)", e.message),
                passing: e.passing,
            })?;
            Ok(aws::parse_container_credentials(&body).map(Some)?)
        }
    }
}

fn read_token(file: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(file)
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("cannot read {what} {}: {e}", file.display()))
}

/// The answer's body to a request `build` makes, tried again while the trouble may pass (a
/// connection, a timeout, 429, 5xx, and STS's throttling and identity-provider codes, which come
/// with 400). `shown` names the endpoint in messages.
fn ask_with_tries(
    ask: &Asking,
    client: &reqwest::blocking::Client,
    shown: &str,
    build: impl Fn(&reqwest::blocking::Client) -> reqwest::blocking::RequestBuilder,
) -> Result<String, NoKeys> {
    let mut tries = Tries::new(ask.attempts, ask.backoff);
    loop {
        let try_number = tries.start();
        let (transient, message) = match build(client).send() {
            Err(e) => (http_client::is_transient(&e), error_chain(&e.without_url())),
            Ok(response) => {
                let status = response.status();
                // Keys are a few hundred bytes: a larger answer is not one.
                let mut body = String::new();
                let read = response.take(64 * 1024).read_to_string(&mut body);
                if status.is_success() && read.is_ok() {
                    return Ok(body);
                }
                let why = aws::error_summary(&body)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                let code = aws::xml_element(&body, "Code").unwrap_or_default();
                (
                    status.as_u16() == 429
                        || status.is_server_error()
                        || read.is_err()
                        || aws::sts_code_is_transient(&code),
                    format!("{shown} answered {status}{why}"),
                )
            }
        };
        let Some(wait) = tries.next_wait().filter(|_| transient) else {
            return Err(NoKeys {
                message: tries.gave_up(&message),
                passing: transient,
            });
        };
        tracing::warn!(
            endpoint = shown,
            tries = try_number,
            "asking for keys failed, trying again in {wait:?}: {message}"
        );
        std::thread::sleep(wait);
    }
}
