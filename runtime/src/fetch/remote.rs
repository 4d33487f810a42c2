//! What a download reads from: a URL as given, or an S3 object with where the keys its requests
//! are signed with come from — how each try's request is made, and how a refusal reads.

use super::aws::{self, CredentialSource, Credentials};
use super::credentials;
use super::http_client;
use super::redact::{fetch_error, redacted, unreachable_error};
use super::s3::{self, S3Config, S3Object};
use super::settings::FetchSettings;
use crate::error::{Result, RuntimeError};
use greenbatch_crds::model::s3_region_problem;
use std::io::Read;

/// What is downloaded: a URL as given, or an S3 object with where the keys its requests are
/// signed with come from.
// One per download: the S3 variant's size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Remote<'a> {
    Http(&'a str),
    S3 {
        uri: &'a str,
        object: S3Object,
        config: S3Config,
        source: CredentialSource,
        /// The pod's AWS identity was there but not sent (a non-AWS endpoint).
        identity_withheld: bool,
    },
}

/// Temporary keys are asked for again when this close to running out (a request signed with them
/// may wait and then stream for minutes).
const KEYS_REFRESH_MARGIN_MINUTES: i64 = 5;

impl<'a> Remote<'a> {
    pub fn parse(model: &'a str, s: &FetchSettings) -> Result<Self> {
        if !model.starts_with("s3://") {
            return Ok(Remote::Http(model));
        }
        let object = S3Object::parse(model).map_err(|message| fetch_error(model, message))?;
        let endpoint = s
            .s3_endpoint
            .as_deref()
            .map(s3::endpoint_base)
            .transpose()
            .map_err(|message| RuntimeError::Usage {
                arg: "--s3-endpoint",
                message,
            })?;
        let source = s
            .s3_credentials
            .clone()
            .map_err(|message| fetch_error(model, message))?;
        if let Some(problem) = s3_region_problem(&s.s3_region) {
            return Err(RuntimeError::Usage {
                arg: "--s3-region",
                message: format!("{problem} (from the flag, AWS_REGION or AWS_DEFAULT_REGION)"),
            });
        }
        // The pod's AWS identity is for AWS (its VPC endpoints included): another store (MinIO,
        // R2, …) would refuse its keys, and should not be sent them.
        let elsewhere = endpoint.as_deref().is_some_and(|e| !s3::is_aws_endpoint(e));
        let identity_withheld = elsewhere && source.is_ambient() && !s.s3_send_pod_identity;
        let source = if identity_withheld {
            tracing::info!(
                keys = source.kind(),
                "the pod's AWS identity is not sent to a non-AWS S3 endpoint: give that store's keys by a Secret (credentialsSecret), or --s3-send-pod-identity"
            );
            CredentialSource::Anonymous
        } else {
            source
        };
        tracing::info!(uri = %redacted(model), keys = source.kind(), "reading the object");
        Ok(Remote::S3 {
            uri: model,
            object,
            config: S3Config {
                endpoint,
                region: s.s3_region.clone(),
            },
            source,
            identity_withheld,
        })
    }

    /// The keys to sign this try with: those held while they have time left, else asked for
    /// (only now: a model already downloaded needs none).
    pub fn keys(
        &self,
        held: &mut Option<Credentials>,
        s: &FetchSettings,
    ) -> Result<Option<Credentials>> {
        let Remote::S3 { uri, source, .. } = self else {
            return Ok(None);
        };
        let margin = chrono::Duration::minutes(KEYS_REFRESH_MARGIN_MINUTES);
        if let Some(keys) = held
            .as_ref()
            .filter(|k| !k.expiring(chrono::Utc::now(), margin))
        {
            return Ok(Some(keys.clone()));
        }
        *held = credentials::resolve(
            source,
            &credentials::Asking {
                region: &s.s3_region,
                ca_file: s.ca_file.as_deref(),
                attempts: s.attempts,
                backoff: s.retry_backoff,
            },
        )
        .map_err(|e| {
            let message = format!("keys from {}: {}", source.kind(), e.message);
            if e.passing {
                unreachable_error(uri, message)
            } else {
                fetch_error(uri, message)
            }
        })?;
        Ok(held.clone())
    }

    /// The reference as given (a URL only redacted in messages).
    pub fn reference(&self) -> &str {
        match self {
            Remote::Http(url) => url,
            Remote::S3 { uri, .. } => uri,
        }
    }

    /// What names the download in the cache when no digest does: an S3 object with the store
    /// it came from (the same URI on another endpoint is another file).
    pub fn cache_identity(&self) -> String {
        match self {
            Remote::Http(url) => url.to_string(),
            Remote::S3 { uri, config, .. } => format!(
                "{uri} {} {}",
                config.endpoint.as_deref().unwrap_or("aws"),
                config.region
            ),
        }
    }

    /// Whether the requests must stay on https.
    pub fn https_only(&self) -> bool {
        match self {
            Remote::Http(url) => url.starts_with("https://"),
            Remote::S3 { config, .. } => config
                .endpoint
                .as_deref()
                .is_none_or(|e| e.starts_with("https://")),
        }
    }

    /// One try's request; an S3 one signed now (a signature is good for 15 minutes, and a later
    /// try may come after that).
    pub fn request(
        &self,
        client: &reqwest::blocking::Client,
        keys: Option<&Credentials>,
    ) -> std::result::Result<reqwest::blocking::RequestBuilder, String> {
        match self {
            Remote::Http(url) => Ok(client.get(*url)),
            Remote::S3 { object, config, .. } => {
                let signed = s3::object_request(object, config, keys, chrono::Utc::now())?;
                Ok(signed
                    .headers
                    .into_iter()
                    .fold(client.get(signed.url), |r, (name, value)| {
                        r.header(name, value)
                    }))
            }
        }
    }

    /// Why the server refused, from its answer — S3 says it in an XML body (its code returned
    /// too), and where the bucket is when the region was wrong. `signed`: the request carried
    /// keys.
    pub fn refusal(
        &self,
        response: reqwest::blocking::Response,
        signed: bool,
    ) -> (String, Option<String>) {
        let status = response.status();
        let Remote::S3 {
            config,
            identity_withheld,
            ..
        } = self
        else {
            return (format!("the server answered {status}"), None);
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let region_header = header("x-amz-bucket-region");
        let mut body = String::new();
        let _ = response.take(16 * 1024).read_to_string(&mut body);
        // S3 says where the bucket is in a header, or (a wrongly signed region) in its body.
        let bucket_region = region_header.or_else(|| aws::xml_element(&body, "Region"));
        let mut message = format!("S3 answered {status}");
        if let Some(summary) = aws::error_summary(&body) {
            message.push_str(&format!(" ({summary})"));
        }
        if status.is_redirection()
            && let Some(origin) = location
                .as_deref()
                .and_then(|l| reqwest::Url::parse(l).ok())
                .map(|u| u.origin().ascii_serialization())
        {
            // An ingress sending http to https, a store behind another name: the endpoint to use.
            message.push_str(&format!(
                ": the store redirects to {origin} (--s3-endpoint, spec.model.source.s3.endpoint)"
            ));
        }
        match bucket_region {
            Some(region) if region != config.region => message.push_str(&format!(
                ": the bucket is in region {region}, not {} (--s3-region, \
                 spec.model.source.s3.region)",
                config.region
            )),
            _ => {}
        }
        if status == reqwest::StatusCode::FORBIDDEN && !signed && *identity_withheld {
            message.push_str(
                ": read anonymously — the pod's AWS identity is not sent to a non-AWS endpoint; \
                 give this store's keys by spec.model.source.s3.credentialsSecret \
                 (or --s3-send-pod-identity, for a store that takes AWS's keys)",
            );
        } else if status == reqwest::StatusCode::FORBIDDEN && !signed {
            message.push_str(
                ": no keys were given, so the object was read anonymously (give them by \
                 spec.model.source.s3.credentialsSecret, or for AWS S3 the pod's identity: IRSA \
                 or EKS Pod Identity on the runtime service account, in pods made after it was \
                 set up; the node's instance role is not used)",
            );
        }
        (message, aws::xml_element(&body, "Code"))
    }
}

/// The client a download of `remote` uses.
pub fn client(remote: &Remote, s: &FetchSettings) -> Result<reqwest::blocking::Client> {
    // A signed S3 request is good for its one URL: a redirect would need a new signature, and
    // S3's own (a bucket in another region) is answered with where to sign for instead.
    let redirects = match remote {
        Remote::Http(_) => 5,
        Remote::S3 { .. } => 0,
    };
    http_client::blocking_client(s.ca_file.as_deref(), remote.https_only(), redirects)
}
