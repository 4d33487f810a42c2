//! `s3://` models against a real S3 API: moto's server with request authentication on
//! (`greenbatch_tests::s3_store`, installed by `scripts/setup-s3-test.sh`), which checks SigV4
//! signatures as AWS does. The runtime downloads the object signed with keys from its
//! environment, checks its digest and profiles it; a wrong key, a missing object, no keys, or half
//! a key pair each end in a clear message, exit code 13, and nothing kept. With no keys, an object
//! anyone may read is read unsigned (moto with its checks off standing in for a public bucket).
//! Without moto the test says so and passes, unless `GREENBATCH_REQUIRE_S3_STORE` is set (as
//! `scripts/test.sh` does), so CI cannot silently skip it.

mod common;
use common::{FAST, dir_is_empty, fixture, output_text as text};
use greenbatch_crds::{EnergyProfileStatus, ProfilePhase};
use greenbatch_tests::s3_store::{S3Store, stand_in};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `profile` of an s3:// model with exactly the AWS variables given (none inherited).
fn profile(uri: &str, digest: &str, cache: &Path, json: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            c.env_remove(name);
        }
    }
    c.env("GREENBATCH_LOG", "warn")
        .env_remove("GREENBATCH_METER")
        .envs(env.iter().copied())
        .arg("profile")
        .args([
            "--model",
            uri,
            "--model-digest",
            digest,
            "--shape",
            "3,16,16",
        ])
        .args(FAST)
        .args(["--candidates", "1,2", "--meter", "synthetic"])
        .arg("--model-cache")
        .arg(cache)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap()
}

#[test]
fn an_s3_model_is_downloaded_signed_checked_and_profiled() {
    let model = PathBuf::from(fixture("tiny_cnn.pt"));
    let digest = greenbatch_tests::workspace::file_digest(&model);
    // A key that must be percent-encoded in the URL and in the signature alike.
    let Some(store) = S3Store::start(&model, "vision/tiny cnn+v1.pt") else {
        return; // no moto: S3Store said the test is skipped
    };
    let dir = tempfile::tempdir().unwrap();
    let uri = store.uri();
    let (endpoint, region) = (store.endpoint.clone(), store.region.clone());
    let (id, secret) = (store.access_key_id.clone(), store.secret_access_key.clone());
    let json = dir.path().join("profile.json");
    let cache = |n: &str| dir.path().join(n);

    let o = profile(
        &uri,
        &digest,
        &cache("a"),
        &json,
        &[
            ("AWS_ENDPOINT_URL_S3", endpoint.as_str()),
            ("AWS_REGION", region.as_str()),
            ("AWS_ACCESS_KEY_ID", id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let status: EnergyProfileStatus =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(status.phase, Some(ProfilePhase::Complete));
    let kept = cache("a").join(format!("sha256-{}.pt", &digest["sha256:".len()..]));
    assert_eq!(greenbatch_tests::workspace::file_digest(&kept), digest);
    std::fs::remove_file(&json).unwrap();

    let with = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("AWS_ENDPOINT_URL_S3", endpoint.clone()),
            ("AWS_REGION", region.clone()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let refused = |name: &str, uri: &str, env: Vec<(&'static str, String)>, says: &[&str]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = profile(uri, &digest, &cache(name), &json, &env);
        assert_eq!(o.status.code(), Some(13), "{name}: {}", text(&o));
        let stderr = String::from_utf8_lossy(&o.stderr);
        for s in says {
            assert!(stderr.contains(s), "{name}: expected {s:?} in {stderr}");
        }
        assert!(
            !stderr.contains("tries"),
            "{name}: refused at once: {stderr}"
        );
        assert!(
            !stderr.contains(&secret),
            "{name}: the secret leaked: {stderr}"
        );
        assert!(
            dir_is_empty(&cache(name)),
            "{name}: a refused download left files"
        );
        assert!(!json.exists(), "{name}: a profile was written");
    };
    let wrong_secret = format!("{secret}x");
    refused(
        "wrong-secret",
        &uri,
        with(&[
            ("AWS_ACCESS_KEY_ID", id.clone()),
            ("AWS_SECRET_ACCESS_KEY", wrong_secret),
        ]),
        &["403", "SignatureDoesNotMatch", &uri],
    );
    refused(
        "unknown-key-id",
        &uri,
        with(&[
            ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000".into()),
            ("AWS_SECRET_ACCESS_KEY", secret.clone()),
        ]),
        &["403", "InvalidAccessKeyId"],
    );
    refused(
        "missing-object",
        &format!("s3://{}/vision/absent.pt", store.bucket),
        with(&[
            ("AWS_ACCESS_KEY_ID", id.clone()),
            ("AWS_SECRET_ACCESS_KEY", secret.clone()),
        ]),
        &["404", "NoSuchKey"],
    );
    refused("anonymous", &uri, with(&[]), &["403", "read anonymously"]);
    refused(
        "secret-from-a-file",
        &uri,
        with(&[
            ("AWS_ACCESS_KEY_ID", id.clone()),
            ("AWS_SECRET_ACCESS_KEY", format!("{secret}\n")),
        ]),
        &["AWS_SECRET_ACCESS_KEY", "newline"],
    );
    refused(
        "half-a-key",
        &uri,
        with(&[("AWS_ACCESS_KEY_ID", id.clone())]),
        &["go together"],
    );

    // The right object with another digest: exit 14, nothing kept.
    let other = format!("sha256:{}", "0".repeat(64));
    let env = with(&[
        ("AWS_ACCESS_KEY_ID", id.clone()),
        ("AWS_SECRET_ACCESS_KEY", secret.clone()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = profile(&uri, &other, &cache("other-digest"), &json, &env);
    assert_eq!(o.status.code(), Some(14), "{}", text(&o));
    assert!(dir_is_empty(&cache("other-digest")));

    // A malformed endpoint is a usage error naming its flag, before anything is sent.
    let o = Command::new(env!("CARGO_BIN_EXE_greenbatch-runtime"))
        .env("GREENBATCH_LOG", "warn")
        .args(["profile", "--model", &uri, "--shape", "3,16,16"])
        .args(["--s3-endpoint", "minio:9000/models"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--s3-endpoint"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_public_object_is_read_anonymously() {
    let model = PathBuf::from(fixture("tiny_cnn.pt"));
    let digest = greenbatch_tests::workspace::file_digest(&model);
    let Some(store) = S3Store::start_public(&model, "vision/tiny.pt") else {
        return; // no moto: S3Store said the test is skipped
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("profile.json");
    let env = [
        ("AWS_ENDPOINT_URL_S3", store.endpoint.as_str()),
        ("AWS_REGION", store.region.as_str()),
        ("GREENBATCH_LOG", "info"),
        ("GREENBATCH_LOG_FORMAT", "text"),
    ];
    let o = profile(&store.uri(), &digest, dir.path(), &json, &env);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            r#"reading the object uri=s3://models/vision/tiny.pt keys="none (anonymous)""#
        ),
        "the read says it was anonymous: {}",
        text(&o)
    );
    let status: EnergyProfileStatus =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(status.phase, Some(ProfilePhase::Complete));
}

/// The text of `<name>` in an XML body.
fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let start = xml.find(&format!("<{name}>")).unwrap() + name.len() + 2;
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    &xml[start..end]
}

#[test]
fn keys_come_from_a_web_identity_or_a_container_endpoint() {
    let model = PathBuf::from(fixture("tiny_cnn.pt"));
    let digest = greenbatch_tests::workspace::file_digest(&model);
    let Some(store) = S3Store::start(&model, "vision/tiny.pt") else {
        return; // no moto: S3Store said the test is skipped
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("profile.json");
    let uri = store.uri();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "test-oidc-token\n").unwrap();
    let token_path = token_file.to_str().unwrap().to_string();

    // STS: throttles the first call (a 400 the runtime must try again), then wants the role and
    // the token the pod was given, form-encoded; AccessDenied (a trust policy that does not name
    // this role) else.
    let (sts_answer, role) = (store.sts_response.clone(), store.role_arn.clone());
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let sts_calls = calls.clone();
    let sts = stand_in(move |request| {
        if sts_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return (400, "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>".into());
        }
        let arn = role.replace(':', "%3A").replace('/', "%2F");
        let ok = request.starts_with("POST / ")
            && request.contains("Action=AssumeRoleWithWebIdentity")
            && request.contains(&format!("RoleArn={arn}"))
            && request.contains("WebIdentityToken=test-oidc-token");
        if ok {
            (200, sts_answer.clone())
        } else {
            (403, "<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>".into())
        }
    });
    let base = [
        ("AWS_ENDPOINT_URL_S3", store.endpoint.clone()),
        ("AWS_REGION", store.region.clone()),
    ];
    let run = |name: &str, extra: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = base
            .iter()
            .chain(extra)
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let o = profile(&uri, &digest, &dir.path().join(name), &json, &env);
        let _ = std::fs::remove_file(&json);
        o
    };
    // moto is not AWS: the pod's AWS identity goes to it only when asked (as to LocalStack).
    let web = |role: &str| {
        vec![
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.clone()),
            ("AWS_ROLE_ARN", role.to_string()),
            ("AWS_ENDPOINT_URL_STS", sts.clone()),
            ("GREENBATCH_S3_SEND_POD_IDENTITY", "true".to_string()),
        ]
    };
    let secret_free = |o: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            !stderr.contains("test-oidc-token") && !stderr.contains(&store.secret_access_key),
            "{stderr}"
        );
        stderr
    };
    let o = run("web", &web(&store.role_arn));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "throttled once, then answered"
    );
    let o = run(
        "web-other-role",
        &web("arn:aws:iam::123456789012:role/other"),
    );
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let stderr = secret_free(&o);
    assert!(
        stderr.contains("web identity")
            && stderr.contains("AccessDenied")
            && !stderr.contains("tries"),
        "refused at once: {stderr}"
    );
    // Without the opt-in, a non-AWS endpoint is read without the pod's AWS identity.
    let mut not_sent = web(&store.role_arn);
    not_sent.pop();
    let o = run("web-not-sent", &not_sent);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    assert!(secret_free(&o).contains("read anonymously"), "{}", text(&o));

    // A container credentials endpoint (EKS Pod Identity's agent): the token file's content in
    // Authorization; 401 else.
    let keys = &store.sts_response;
    let container_answer = serde_json::json!({
        "AccessKeyId": element(keys, "AccessKeyId"),
        "SecretAccessKey": element(keys, "SecretAccessKey"),
        "Token": element(keys, "SessionToken"),
        "Expiration": element(keys, "Expiration"),
    })
    .to_string();
    let agent = stand_in(move |request| {
        if request
            .to_ascii_lowercase()
            .contains("authorization: test-oidc-token\r\n")
        {
            (200, container_answer.clone())
        } else {
            (401, "{\"message\":\"unauthorized\"}".into())
        }
    });
    let endpoint = |token: (&'static str, String)| {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{agent}/v1/credentials"),
            ),
            token,
            ("GREENBATCH_S3_SEND_POD_IDENTITY", "true".to_string()),
        ]
    };
    let o = run(
        "pod-identity",
        &endpoint(("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_path.clone())),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        "ecs-token",
        &endpoint((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            "test-oidc-token".into(),
        )),
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        "wrong-token",
        &endpoint(("AWS_CONTAINER_AUTHORIZATION_TOKEN", "another-token".into())),
    );
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let stderr = secret_free(&o);
    assert!(
        stderr.contains("container credentials")
            && stderr.contains("401")
            && !stderr.contains("another-token")
            && !stderr.contains("/v1/credentials"),
        "{stderr}"
    );
}

#[test]
fn an_s3_store_with_a_private_ca_is_trusted_through_the_ca_file_only() {
    let model = PathBuf::from(fixture("tiny_cnn.pt"));
    let digest = greenbatch_tests::workspace::file_digest(&model);
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = greenbatch_tests::pki::Pki::generate(&pki_dir).unwrap();
    let Some(store) = S3Store::start_tls(&model, "vision/tiny.pt", &pki) else {
        return; // no moto: S3Store said the test is skipped
    };
    assert!(store.endpoint.starts_with("https://"), "{}", store.endpoint);
    let json = dir.path().join("profile.json");
    let ca = pki.ca_cert.to_str().unwrap().to_string();
    let env = [
        ("AWS_ENDPOINT_URL_S3", store.endpoint.as_str()),
        ("AWS_REGION", store.region.as_str()),
        ("AWS_ACCESS_KEY_ID", store.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", store.secret_access_key.as_str()),
    ];
    let with_ca = [env.as_slice(), &[("GREENBATCH_MODEL_CA_FILE", ca.as_str())]].concat();
    let o = profile(
        &store.uri(),
        &digest,
        &dir.path().join("a"),
        &json,
        &with_ca,
    );
    assert!(o.status.success(), "{}", text(&o));
    // Without the CA the store's certificate is not trusted: refused at once, nothing kept.
    let o = profile(&store.uri(), &digest, &dir.path().join("b"), &json, &env);
    assert_eq!(o.status.code(), Some(13), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        stderr.contains("certificate") && !stderr.contains("tries"),
        "{stderr}"
    );
    assert!(dir_is_empty(&dir.path().join("b")));
}
