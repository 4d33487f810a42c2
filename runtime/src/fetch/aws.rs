//! Where the keys for `s3://` models come from, as the AWS SDKs look for them — the sources this
//! runtime supports, in their order: static keys in the environment; a web identity token
//! exchanged at STS (IRSA on EKS, any OIDC federation); a container credentials endpoint (EKS Pod
//! Identity, ECS task roles). Also what every AWS answer shares: XML error bodies, the partition's
//! domain. Pure: the environment comes in as a function and the answers as text; the requests
//! themselves are `fetch`'s.

use chrono::{DateTime, Utc};
use std::path::PathBuf;

/// Keys to sign with (never taken from arguments: they would show in process listings).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary keys stop working (`None`: static keys).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Credentials {
    /// Whether the keys run out within `margin` of `now` (asked for again before a request).
    pub fn expiring(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.expires_at.is_some_and(|at| at - margin <= now)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A role assumed with a web identity token (IRSA: the EKS pod identity webhook sets
/// `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebIdentity {
    pub token_file: PathBuf,
    pub role_arn: String,
    pub session_name: String,
    /// `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`; `None`: the region's STS.
    pub sts_endpoint: Option<String>,
    /// The pod's own region (`AWS_REGION`, `AWS_DEFAULT_REGION`: the webhook sets them), whose
    /// STS a private cluster reaches (a VPC endpoint); `None`: the bucket's.
    pub sts_region: Option<String>,
}

/// A local endpoint that hands out the pod's or task's keys (EKS Pod Identity's agent, ECS).
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerEndpoint {
    pub url: String,
    /// What the endpoint wants in `Authorization`: read from this file at each use (the agent
    /// rotates it), or given as is.
    pub token_file: Option<PathBuf>,
    pub token: Option<String>,
}

impl ContainerEndpoint {
    /// The endpoint without its path (ECS puts a credential's id there), for logs and messages.
    pub fn shown(&self) -> String {
        reqwest::Url::parse(&self.url)
            .map(|u| format!("{}/…", u.origin().ascii_serialization()))
            .unwrap_or_else(|_| "(the container credentials endpoint)".into())
    }
}

impl std::fmt::Debug for ContainerEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerEndpoint")
            .field("url", &self.shown())
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// Where this run's keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// No keys anywhere: requests go unsigned (a public bucket).
    Anonymous,
    Static(Credentials),
    WebIdentity(WebIdentity),
    Container(ContainerEndpoint),
}

/// The session name a web identity assumes its role with, unless `AWS_ROLE_SESSION_NAME` says or
/// the pod's name (`HOSTNAME`) can tell pods apart in CloudTrail.
pub const DEFAULT_SESSION_NAME: &str = "greenbatch-runtime";

/// `name` as an STS role session name: 2 to 64 of `[A-Za-z0-9+=,.@_-]`.
fn session_name(name: &str) -> Option<String> {
    let kept: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c))
        .take(64)
        .collect();
    (kept.len() >= 2).then_some(kept)
}

impl CredentialSource {
    /// The first source the environment configures, in the SDKs' order. `env` reads a variable
    /// (empty counts as unset). A source half set up is an error naming what is missing, never a
    /// silent fall to anonymous: that would end in an AccessDenied that hides the cause.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        ] {
            // A Secret made from a file (`echo … > key`) ends with a newline: a header that cannot
            // be sent, or a signature S3 refuses without saying why. The value is never shown.
            if var(name).is_some_and(|v| v.chars().any(|c| c.is_whitespace() || c.is_control())) {
                return Err(format!(
                    "{name} holds whitespace (a newline at its end? was its Secret made from a \
                     file?): keys have none"
                ));
            }
        }
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => {
                return Ok(CredentialSource::Static(Credentials {
                    access_key_id,
                    secret_access_key,
                    session_token: var("AWS_SESSION_TOKEN"),
                    expires_at: None,
                }));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY go together: only one is set"
                        .into(),
                );
            }
            (None, None) => {}
        }
        if var("AWS_SESSION_TOKEN").is_some() {
            return Err("AWS_SESSION_TOKEN is set without AWS_ACCESS_KEY_ID and \
                        AWS_SECRET_ACCESS_KEY: the three go together"
                .into());
        }
        if let Some(token_file) = var("AWS_WEB_IDENTITY_TOKEN_FILE") {
            let role_arn = var("AWS_ROLE_ARN").ok_or(
                "AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN: the role to assume \
                 (on EKS, the eks.amazonaws.com/role-arn annotation of the pod's service account)",
            )?;
            return Ok(CredentialSource::WebIdentity(WebIdentity {
                token_file: PathBuf::from(token_file),
                role_arn,
                session_name: var("AWS_ROLE_SESSION_NAME")
                    .or_else(|| var("HOSTNAME"))
                    .as_deref()
                    .and_then(session_name)
                    .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string()),
                sts_endpoint: var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL")),
                sts_region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            }));
        }
        if var("AWS_ROLE_ARN").is_some() {
            return Err(
                "AWS_ROLE_ARN is set without AWS_WEB_IDENTITY_TOKEN_FILE: the token to \
                        assume it with (on EKS, the pod identity webhook mounts it when the pod \
                        is created: restart pods made before the service account was annotated)"
                    .into(),
            );
        }
        let container_url = match (
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
            var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        ) {
            // ECS's fixed link-local address.
            (Some(relative), _) => Some(format!("http://169.254.170.2{relative}")),
            (None, Some(full)) => Some(container_url_problem(&full).map_or(Ok(full), Err)?),
            (None, None) => None,
        };
        if container_url.is_none()
            && let Some(name) = [
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            ]
            .into_iter()
            .find(|name| var(name).is_some())
        {
            return Err(format!(
                "{name} is set without AWS_CONTAINER_CREDENTIALS_FULL_URI (or _RELATIVE_URI): \
                 the endpoint to ask"
            ));
        }
        if let Some(url) = container_url {
            return Ok(CredentialSource::Container(ContainerEndpoint {
                url,
                token_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").map(PathBuf::from),
                token: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            }));
        }
        if var("AWS_PROFILE").is_some() {
            return Err(
                "AWS_PROFILE is set, but shared config and credentials files are not read: \
                        give keys as AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (e.g. from \
                        spec.model.source.s3.credentialsSecret)"
                    .into(),
            );
        }
        Ok(CredentialSource::Anonymous)
    }

    /// Whether the keys are the pod's own cloud identity (IRSA, Pod Identity, ECS): AWS's, not
    /// to be sent to another store.
    pub fn is_ambient(&self) -> bool {
        matches!(
            self,
            CredentialSource::WebIdentity(_) | CredentialSource::Container(_)
        )
    }

    /// What the source is, for logs and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSource::Anonymous => "none (anonymous)",
            CredentialSource::Static(_) => "static keys (AWS_ACCESS_KEY_ID)",
            CredentialSource::WebIdentity(_) => "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, STS)",
            CredentialSource::Container(_) => {
                "container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*)"
            }
        }
    }
}

/// Why the SDKs would refuse `url` as a container credentials endpoint, if they would: over
/// plain http only a loopback address or the ECS / EKS Pod Identity agents' link-local ones.
fn container_url_problem(url: &str) -> Option<String> {
    // Not echoed: the path may hold a credential's id.
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Some("AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL".into());
    };
    let host = parsed.host_str().unwrap_or_default();
    let agents: [std::net::IpAddr; 3] = [
        [169, 254, 170, 2].into(),
        [169, 254, 170, 23].into(),
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23].into(),
    ];
    let local = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || agents.contains(&ip));
    match parsed.scheme() {
        "https" => None,
        "http" if local => None,
        _ => Some(format!(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI (host {host:?}): keys over plain http only from \
             a loopback or the agents' link-local address; use https"
        )),
    }
}

/// The STS endpoint a web identity is exchanged at: the configured one, else the pod's region's,
/// else the bucket's (`bucket_region`).
pub fn sts_url(web: &WebIdentity, bucket_region: &str) -> String {
    match &web.sts_endpoint {
        Some(endpoint) => endpoint.trim_end_matches('/').to_string() + "/",
        None => {
            let region = web.sts_region.as_deref().unwrap_or(bucket_region);
            format!("https://sts.{region}.{}/", aws_domain(region))
        }
    }
}

/// STS error codes that pass with another try (the SDKs retry them), though answered with 400.
pub fn sts_code_is_transient(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "IDPCommunicationError"
    )
}

/// An RFC 3339 expiry as STS and the credentials endpoints write it.
fn expiry(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.to_utc())
}

/// The form of an `AssumeRoleWithWebIdentity` call (unsigned: the token is the proof).
pub fn assume_role_form(web: &WebIdentity, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Action", "AssumeRoleWithWebIdentity".into()),
        ("Version", "2011-06-15".into()),
        ("RoleArn", web.role_arn.clone()),
        ("RoleSessionName", web.session_name.clone()),
        ("WebIdentityToken", token.trim().to_string()),
    ]
}

/// The keys in STS's `AssumeRoleWithWebIdentity` answer.
pub fn parse_sts_credentials(body: &str) -> Result<Credentials, String> {
    let field =
        |name: &str| xml_element(body, name).ok_or_else(|| format!("STS's answer has no {name}"));
    Ok(Credentials {
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
        expires_at: expiry(xml_element(body, "Expiration").as_deref()),
    })
}

/// The keys in a container credentials endpoint's JSON answer.
pub fn parse_container_credentials(body: &str) -> Result<Credentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        access_key_id: String,
        secret_access_key: String,
        token: Option<String>,
        expiration: Option<String>,
    }
    let a: Answer = serde_json::from_str(body)
        .map_err(|e| format!("the container credentials endpoint's answer: {e}"))?;
    Ok(Credentials {
        access_key_id: a.access_key_id,
        secret_access_key: a.secret_access_key,
        session_token: a.token.filter(|t| !t.is_empty()),
        expires_at: expiry(a.expiration.as_deref()),
    })
}

/// The domain of AWS's own endpoints in `region` (the China partition has its own).
pub fn aws_domain(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The text of the first `<name>` element of an AWS XML body, if there is one and it is not
/// empty.
pub fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].trim().to_string()).filter(|s| !s.is_empty())
}

/// What an AWS error body says: `Code: Message` from its XML (`<Error><Code>…`).
pub fn error_summary(body: &str) -> Option<String> {
    let element = |name: &str| xml_element(body, name);
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(code), None) => Some(code),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn static_keys_come_in_pairs_and_are_never_shown() {
        assert_eq!(
            CredentialSource::from_env(env(&[])).unwrap(),
            CredentialSource::Anonymous
        );
        let CredentialSource::Static(both) = CredentialSource::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", ""),
            // Static keys come first, as in the SDKs.
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
        ]))
        .unwrap() else {
            panic!("static keys")
        };
        assert_eq!(both.session_token, None, "empty counts as unset");
        assert!(!format!("{both:?}").contains("s3cr3t"), "{both:?}");
        let one = CredentialSource::from_env(env(&[("AWS_ACCESS_KEY_ID", "AKIA1")])).unwrap_err();
        assert!(one.contains("go together"), "{one}");
        let token_alone =
            CredentialSource::from_env(env(&[("AWS_SESSION_TOKEN", "t")])).unwrap_err();
        assert!(token_alone.contains("go together"), "{token_alone}");
        // A Secret made from a file: its newline is named, the value never shown.
        let newline = CredentialSource::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIA1"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t\n"),
        ]))
        .unwrap_err();
        assert!(
            newline.contains("AWS_SECRET_ACCESS_KEY") && newline.contains("newline"),
            "{newline}"
        );
        assert!(!newline.contains("s3cr3t"), "{newline}");
        let profile = CredentialSource::from_env(env(&[("AWS_PROFILE", "dev")])).unwrap_err();
        assert!(profile.contains("AWS_PROFILE"), "{profile}");
    }

    #[test]
    fn a_web_identity_needs_its_role_and_names_its_sts() {
        let irsa = CredentialSource::from_env(env(&[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/models-reader",
            ),
        ]))
        .unwrap();
        let CredentialSource::WebIdentity(web) = irsa else {
            panic!("{irsa:?}")
        };
        assert_eq!(web.session_name, DEFAULT_SESSION_NAME);
        assert_eq!(
            sts_url(&web, "eu-west-1"),
            "https://sts.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            sts_url(&web, "cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        let form = assume_role_form(&web, "eyJ.token\n");
        assert!(
            form.contains(&("WebIdentityToken", "eyJ.token".to_string())),
            "{form:?}"
        );
        assert!(form.contains(&("Action", "AssumeRoleWithWebIdentity".to_string())));
        let local = WebIdentity {
            sts_endpoint: Some("http://127.0.0.1:4566".into()),
            ..web
        };
        assert_eq!(sts_url(&local, "eu-west-1"), "http://127.0.0.1:4566/");
        let no_role =
            CredentialSource::from_env(env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")])).unwrap_err();
        assert!(no_role.contains("AWS_ROLE_ARN"), "{no_role}");
    }

    #[test]
    fn container_endpoints_are_local_or_https() {
        let ecs = CredentialSource::from_env(env(&[(
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "/v2/credentials/abc",
        )]))
        .unwrap();
        assert!(
            matches!(&ecs, CredentialSource::Container(c) if c.url == "http://169.254.170.2/v2/credentials/abc"),
            "{ecs:?}"
        );
        let pod_identity = CredentialSource::from_env(env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
        ]))
        .unwrap();
        assert!(
            matches!(&pod_identity, CredentialSource::Container(c) if c.token_file.is_some()),
            "{pod_identity:?}"
        );
        for fine in [
            "http://127.0.0.1:8080/creds",
            "http://[fd00:ec2::23]/v1/credentials",
            "https://creds.example/x",
        ] {
            assert_eq!(container_url_problem(fine), None, "{fine}");
        }
        for bad in ["http://creds.example/x", "ftp://127.0.0.1/x", "not a url"] {
            assert!(container_url_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn answers_are_read_and_errors_summarised() {
        let sts = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s3cr3t</SecretAccessKey><SessionToken>FQo=</SessionToken><Expiration>2026-11-27T13:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let keys = parse_sts_credentials(sts).unwrap();
        assert_eq!(
            (keys.access_key_id.as_str(), keys.session_token.as_deref()),
            ("ASIA1", Some("FQo="))
        );
        assert!(parse_sts_credentials("<ErrorResponse/>").is_err());
        let container = r#"{"AccessKeyId":"ASIA2","SecretAccessKey":"s","Token":"t","Expiration":"2026-11-27T13:00:00Z"}"#;
        assert_eq!(
            parse_container_credentials(container)
                .unwrap()
                .session_token
                .as_deref(),
            Some("t")
        );
        assert!(parse_container_credentials("{}").is_err());

        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>r50.pt</Key></Error>";
        assert_eq!(
            error_summary(body).as_deref(),
            Some("NoSuchKey: The specified key does not exist.")
        );
        assert_eq!(
            error_summary("<Error><Code>SlowDown</Code></Error>").as_deref(),
            Some("SlowDown")
        );
        assert_eq!(error_summary("<html>bad gateway</html>"), None);
        assert_eq!(error_summary("<Code>"), None);
        let wrong_region = "<Error><Code>AuthorizationHeaderMalformed</Code><Message>the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region></Error>";
        assert_eq!(
            xml_element(wrong_region, "Region").as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn a_source_half_set_up_is_named_never_read_anonymously() {
        let role_alone =
            CredentialSource::from_env(env(&[("AWS_ROLE_ARN", "arn:aws:iam::1:role/r")]))
                .unwrap_err();
        assert!(
            role_alone.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{role_alone}"
        );
        let token_no_endpoint =
            CredentialSource::from_env(env(&[("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t")]))
                .unwrap_err();
        assert!(
            token_no_endpoint.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            "{token_no_endpoint}"
        );
        let newline_token = CredentialSource::from_env(env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1/creds",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t0k3n\n"),
        ]))
        .unwrap_err();
        assert!(
            newline_token.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN")
                && !newline_token.contains("t0k3n"),
            "{newline_token}"
        );
    }

    #[test]
    fn sts_is_asked_in_the_pod_s_region_as_the_pod_named_session() {
        let named = CredentialSource::from_env(env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("HOSTNAME", "resnet50-7c9f8d/x y"),
            ("AWS_REGION", "us-west-2"),
        ]))
        .unwrap();
        let CredentialSource::WebIdentity(web) = named else {
            panic!("{named:?}")
        };
        // Kept to STS's characters: CloudTrail tells the pods apart.
        assert_eq!(web.session_name, "resnet50-7c9f8dxy");
        // A private cluster reaches STS through a VPC endpoint in its own region.
        assert_eq!(
            sts_url(&web, "eu-west-1"),
            "https://sts.us-west-2.amazonaws.com/"
        );
        let global = CredentialSource::from_env(env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]))
        .unwrap();
        assert!(
            matches!(&global, CredentialSource::WebIdentity(w) if sts_url(w, "eu-west-1") == "http://127.0.0.1:4566/"),
            "{global:?}"
        );
    }

    #[test]
    fn container_endpoints_refuse_look_alike_hosts_and_stay_out_of_logs() {
        for bad in [
            "http://127.0.0.1@evil.example/x",
            "http://169.254.170.2.evil.example/x",
        ] {
            assert!(container_url_problem(bad).is_some(), "{bad}");
        }
        let shown = format!(
            "{:?}",
            ContainerEndpoint {
                url: "http://169.254.170.2/v2/credentials/3f1c".into(),
                token_file: None,
                token: Some("s3cr3t".into()),
            }
        );
        assert!(
            !shown.contains("3f1c") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn temporary_keys_say_when_they_run_out_and_sts_throttling_is_transient() {
        let sts = "<Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2026-11-27T13:00:00Z</Expiration></Credentials>";
        let keys = parse_sts_credentials(sts).unwrap();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        let margin = chrono::Duration::minutes(5);
        assert!(!keys.expiring(at("2026-11-27T12:54:00Z"), margin));
        assert!(keys.expiring(at("2026-11-27T12:56:00Z"), margin));
        let container = r#"{"AccessKeyId":"A","SecretAccessKey":"s","Token":"t","Expiration":"2026-11-27T13:00:00Z"}"#;
        assert!(
            parse_container_credentials(container)
                .unwrap()
                .expiring(at("2026-11-27T12:58:00Z"), margin)
        );
        assert!(
            sts_code_is_transient("Throttling") && sts_code_is_transient("IDPCommunicationError")
        );
        assert!(
            !sts_code_is_transient("AccessDenied")
                && !sts_code_is_transient("InvalidIdentityToken")
        );
    }
}
