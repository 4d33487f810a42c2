//! `s3://bucket/key`: the object's URL and, with credentials, the AWS Signature Version 4 headers
//! of one GET. Pure: the clock and the environment come in as arguments, so the signature is
//! tested against vectors that botocore computed (`runtime/tests/fixtures/sigv4_vectors.json`).
//!
//! Addressing: with an endpoint (MinIO, Ceph, R2, GCS interoperability…) path-style
//! `{endpoint}/{bucket}/{key}`, which every S3-compatible store answers; without one, AWS itself,
//! virtual-hosted `https://{bucket}.s3.{region}.amazonaws.com/{key}` (path-style for a bucket
//! name with dots, which a virtual host's TLS certificate cannot cover).

use super::aws::{Credentials, aws_domain};
use chrono::{DateTime, Utc};
use greenbatch_crds::model::{s3_endpoint_problem, split_s3_uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The sha256 of an empty body: a GET's payload hash.
const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The region signed for when neither the flag nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// A bucket and an object key, from `s3://bucket/key`. The key is taken literally, as the AWS CLI
/// takes it (no percent-decoding): `s3://models/a b.pt` is the object `a b.pt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

impl S3Object {
    pub fn parse(uri: &str) -> Result<Self, String> {
        let (bucket, key) = split_s3_uri(uri)?;
        Ok(S3Object {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// Where the store is and which region requests are signed for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    /// `http(s)://host[:port]` of an S3-compatible store; `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
}

/// One GET of the object: its URL and the headers to send with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// The URL of `object` and, with credentials, the SigV4 headers signed at `now`.
pub fn object_request(
    object: &S3Object,
    config: &S3Config,
    credentials: Option<&Credentials>,
    now: DateTime<Utc>,
) -> Result<ObjectRequest, String> {
    let key = uri_encode(&object.key, false);
    let (base, path) = match &config.endpoint {
        Some(endpoint) => (
            endpoint_base(endpoint)?,
            format!("/{}/{key}", object.bucket),
        ),
        None if object.bucket.contains('.') => (
            format!(
                "https://s3.{}.{}",
                config.region,
                aws_domain(&config.region)
            ),
            format!("/{}/{key}", object.bucket),
        ),
        None => (
            format!(
                "https://{}.s3.{}.{}",
                object.bucket,
                config.region,
                aws_domain(&config.region)
            ),
            format!("/{key}"),
        ),
    };
    let url = format!("{base}{path}");
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}"))?;
    // What is sent is what is signed: a URL parser that resolved a segment would name another
    // object (the key rules refuse such keys; this keeps the promise if they change).
    if parsed.path() != path {
        return Err(format!(
            "the object key does not survive as a URL path ({path} became {})",
            parsed.path()
        ));
    }
    let Some(credentials) = credentials else {
        return Ok(ObjectRequest {
            url,
            headers: Vec::new(),
        });
    };
    // As the client will send it: the port only when it is not the scheme's default.
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(format!("{url} has no host")),
    };
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let mut headers = vec![
        ("host", host),
        ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256.to_string()),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = &credentials.session_token {
        headers.push(("x-amz-security-token", token.clone()));
    }
    let signed_headers = headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{}\n", value.trim()))
        .collect();
    let canonical_request =
        format!("GET\n{path}\n\n{canonical_headers}\n{signed_headers}\n{EMPTY_PAYLOAD_SHA256}");
    let scope = format!("{date}/{}/s3/aws4_request", config.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date,
    );
    for part in [config.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part);
    }
    let signature = hex(&hmac(&key, &string_to_sign));
    // The client sets Host itself, from the URL: it was signed above as it will be sent.
    headers.retain(|(name, _)| *name != "host");
    headers.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            credentials.access_key_id
        ),
    ));
    Ok(ObjectRequest { url, headers })
}

/// `http(s)://host[:port]` as written, without a trailing slash; anything more is refused (a
/// path prefix would have to be signed and is not what S3-compatible stores expect). The same
/// rule as the API's (`spec.model.source.s3.endpoint`).
pub fn endpoint_base(endpoint: &str) -> Result<String, String> {
    if let Some(problem) = s3_endpoint_problem(endpoint) {
        return Err(format!("S3 endpoint {problem}"));
    }
    reqwest::Url::parse(endpoint).map_err(|e| format!("S3 endpoint {endpoint:?}: {e}"))?;
    Ok(endpoint.trim_end_matches('/').to_string())
}

/// Whether `endpoint` is AWS's own (a VPC or FIPS endpoint of S3, say): the pod's AWS identity
/// may sign for it.
pub fn is_aws_endpoint(endpoint: &str) -> bool {
    reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn"))
}

/// RFC 3986 unreserved characters kept, everything else `%XX` (upper case), as SigV4 wants it;
/// `/` kept in a path unless `encode_slash`.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Requests signed by botocore's `S3SigV4Auth` (`runtime/tests/fixtures/make_sigv4_vectors.py`).
    #[derive(Deserialize)]
    struct Vector {
        name: String,
        bucket: String,
        key: String,
        endpoint: Option<String>,
        region: String,
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        time: String,
        url: String,
        authorization: String,
        x_amz_date: String,
    }

    #[test]
    fn signatures_match_botocore() {
        let vectors: Vec<Vector> =
            serde_json::from_str(include_str!("../../tests/fixtures/sigv4_vectors.json")).unwrap();
        assert!(vectors.len() >= 4);
        for v in vectors {
            let request = object_request(
                &S3Object {
                    bucket: v.bucket.clone(),
                    key: v.key.clone(),
                },
                &S3Config {
                    endpoint: v.endpoint.clone(),
                    region: v.region.clone(),
                },
                Some(&Credentials {
                    access_key_id: v.access_key_id.clone(),
                    secret_access_key: v.secret_access_key.clone(),
                    session_token: v.session_token.clone(),
                    expires_at: None,
                }),
                DateTime::parse_from_rfc3339(&v.time).unwrap().to_utc(),
            )
            .unwrap();
            assert_eq!(request.url, v.url, "{}", v.name);
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, value)| value.clone())
            };
            assert_eq!(
                header("authorization").as_deref(),
                Some(v.authorization.as_str()),
                "{}",
                v.name
            );
            assert_eq!(
                header("x-amz-date").as_deref(),
                Some(v.x_amz_date.as_str()),
                "{}",
                v.name
            );
            assert_eq!(
                header("x-amz-security-token"),
                v.session_token,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn without_credentials_the_request_is_unsigned() {
        let object = S3Object::parse("s3://public-models/r50.pt").unwrap();
        let config = S3Config {
            endpoint: None,
            region: "eu-west-1".into(),
        };
        let request = object_request(&object, &config, None, Utc::now()).unwrap();
        assert_eq!(
            request.url,
            "https://public-models.s3.eu-west-1.amazonaws.com/r50.pt"
        );
        assert!(request.headers.is_empty());
    }

    #[test]
    fn uris_and_buckets_are_checked() {
        assert_eq!(
            S3Object::parse("s3://models/dir/r50.pt").unwrap(),
            S3Object {
                bucket: "models".into(),
                key: "dir/r50.pt".into()
            }
        );
        for bad in [
            "https://models/r50.pt",
            "s3://models",
            "s3://models/",
            "s3://models/dir/",
            "s3://Models/r50.pt",
            "s3://ab/r50.pt",
            "s3://-models/r50.pt",
            "s3://models-/r50.pt",
            "s3://mod_els/r50.pt",
            "s3://models/r50\n.pt",
            "s3://models/../other/r50.pt",
            "s3://models/.",
            "s3://models/a/./b.pt",
        ] {
            assert!(S3Object::parse(bad).is_err(), "{bad}");
        }
        // Keys a URL could mistake for more are taken literally (the botocore vectors sign them).
        for fine in [
            "s3://models/a?b#c%d.pt",
            "s3://models//lead.pt",
            "s3://models/..x/y..pt",
        ] {
            let object = S3Object::parse(fine).unwrap();
            let config = S3Config {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: DEFAULT_REGION.into(),
            };
            object_request(&object, &config, None, Utc::now()).unwrap();
        }
        // Credentials before the bucket are refused without being shown.
        let e = S3Object::parse("s3://AKIA1:s3cr3t@models/r50.pt").unwrap_err();
        assert!(
            e.contains("credentialsSecret") && !e.contains("s3cr3t"),
            "{e}"
        );
        assert!(S3Object::parse(&format!("s3://models/{}", "k".repeat(1025))).is_err());
    }

    #[test]
    fn endpoints_are_plain_origins() {
        assert_eq!(
            endpoint_base("http://minio.storage:9000/").unwrap(),
            "http://minio.storage:9000"
        );
        assert_eq!(
            endpoint_base("https://s3.example").unwrap(),
            "https://s3.example"
        );
        assert_eq!(
            endpoint_base("https://minio.storage.svc:443").unwrap(),
            "https://minio.storage.svc:443",
            "as written: the URL boto3 sends keeps the port (the signed host does not)"
        );
        assert_eq!(
            endpoint_base("http://[::1]:9000/").unwrap(),
            "http://[::1]:9000"
        );
        for bad in [
            "minio:9000",
            "ftp://minio",
            "http://minio:9000/prefix",
            "http://user:pw@minio",
            "http://minio/?x=1",
            "http://:9000",
            "http://minio:abc",
            "http://minio:70000",
            "http://minio:0",
            "http://minio:1:2",
            "http://[::1",
            "http://mi nio",
        ] {
            assert!(endpoint_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aws_endpoints_are_told_from_other_stores() {
        assert!(is_aws_endpoint(
            "https://bucket.vpce-0a1b2c3d-4e5f6a7b.s3.us-east-1.vpce.amazonaws.com"
        ));
        assert!(is_aws_endpoint(
            "https://s3-fips.us-gov-west-1.amazonaws.com"
        ));
        assert!(!is_aws_endpoint("http://minio.storage:9000"));
        assert!(!is_aws_endpoint("https://amazonaws.com.evil.example"));
    }

    #[test]
    fn keys_are_encoded_as_sigv4_wants() {
        assert_eq!(
            uri_encode("dir/a b+c~é.pt", false),
            "dir/a%20b%2Bc~%C3%A9.pt"
        );
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
    }
}
