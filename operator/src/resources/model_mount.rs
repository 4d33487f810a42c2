//! How runtime pods reach the model a spec names: the runtime's `--model` argument and what goes
//! with it — the digest it checks, a PVC volume, the CA certificates a download trusts, an S3
//! store's settings and the Secret its keys come from. Pure: values in, pod parts out.

use greenbatch_crds::ModelSource;
use greenbatch_crds::model::{S3_OPTIONAL_KEYS, S3_REQUIRED_KEYS};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource,
    SecretKeySelector, Volume, VolumeMount,
};

/// Where model files of `pvc://<claim>/<path>` URIs are mounted: `/models/<claim>`.
pub const MODELS_ROOT: &str = "/models";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("spec.model.source: {0}")]
    ModelSource(String),
}

/// Where the CA certificates of `--model-ca-configmap` are mounted in runtime pods.
pub const MODEL_CA_DIR: &str = "/etc/greenbatch/model-ca";
/// The ConfigMap key holding them (the `kube-root-ca.crt` convention).
pub const MODEL_CA_KEY: &str = "ca.crt";

/// How the runtime reaches the model: its `--model` argument, the digest it checks the file
/// against, for a PVC the volume, for a download the CA certificates it trusts beyond the
/// public ones, and for an S3 object the store's settings and the keys' environment variables.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMount {
    pub arg: String,
    pub digest: Option<String>,
    pub volume: Option<(Volume, VolumeMount)>,
    pub ca: Option<(Volume, VolumeMount)>,
    /// `--s3-endpoint` and `--s3-region`, as the spec sets them.
    pub s3_args: Vec<String>,
    /// The container's environment for the model: an S3 store's keys, from their Secret.
    pub env: Vec<EnvVar>,
}

impl ModelMount {
    /// `--model <arg>`, `--model-digest <digest>` when the spec gives one,
    /// `--model-ca-file` when a CA ConfigMap is mounted, and an S3 store's settings.
    pub fn runtime_args(&self) -> Vec<String> {
        let mut args = vec!["--model".to_string(), self.arg.clone()];
        if let Some(d) = &self.digest {
            args.extend(["--model-digest".to_string(), d.clone()]);
        }
        if self.ca.is_some() {
            args.extend([
                "--model-ca-file".to_string(),
                format!("{MODEL_CA_DIR}/{MODEL_CA_KEY}"),
            ]);
        }
        args.extend(self.s3_args.iter().cloned());
        args
    }
}

/// The keys of an S3 store, each from the Secret's key of the same name. The Secret is the
/// kubelet's to read, not the operator's (it has no access to Secrets): one that is missing, or
/// lacks a required key, keeps the pod in `CreateContainerConfigError`, which the service's
/// conditions quote. The session token is optional.
fn s3_credentials_env(secret: &str) -> Vec<EnvVar> {
    let from_secret = |key: &str, optional: bool| EnvVar {
        name: key.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    S3_REQUIRED_KEYS
        .iter()
        .map(|key| from_secret(key, false))
        .chain(S3_OPTIONAL_KEYS.iter().map(|key| from_secret(key, true)))
        .collect()
}

/// The ConfigMap of CA certificates (key `ca.crt`), mounted read-only for a download.
fn model_ca_volume(config_map: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "model-ca".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_string(),
                // Missing, the pod still starts and the runtime exits naming the file it cannot
                // read (in the service's conditions), instead of waiting in ContainerCreating.
                optional: Some(true),
                items: Some(vec![KeyToPath {
                    key: MODEL_CA_KEY.into(),
                    path: MODEL_CA_KEY.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "model-ca".into(),
            mount_path: MODEL_CA_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// `file:///p` -> `/p`; `pvc://claim/path` -> `/models/claim/path` on a read-only PVC volume;
/// `https://…`/`http://…` and `s3://…` as is (the runtime downloads it into its `/tmp`,
/// trusting the CA certificates of `ca_config_map` too when one is configured; an S3 object with
/// the store's settings and the keys of its Secret); a builtin -> `builtin:<name>`. A file's
/// digest goes with it, for the runtime to check.
pub fn model_mount(
    source: &ModelSource,
    ca_config_map: Option<&str>,
) -> Result<ModelMount, ResourceError> {
    if let Some(b) = source.builtin {
        return Ok(ModelMount {
            arg: format!("builtin:{b}"),
            ..Default::default()
        });
    }
    let uri = source
        .uri
        .as_deref()
        .ok_or_else(|| ResourceError::ModelSource("neither uri nor builtin is set".into()))?;
    let digest = source.digest.clone();
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(ModelMount {
            arg: path.to_string(),
            digest,
            ..Default::default()
        });
    }
    if uri.starts_with("https://") || uri.starts_with("http://") {
        return Ok(ModelMount {
            arg: uri.to_string(),
            digest,
            ca: ca_config_map.map(model_ca_volume),
            ..Default::default()
        });
    }
    if uri.starts_with("s3://") {
        let s3 = source.s3.clone().unwrap_or_default();
        let mut s3_args = Vec::new();
        if let Some(endpoint) = s3.endpoint {
            s3_args.extend(["--s3-endpoint".to_string(), endpoint]);
        }
        if let Some(region) = s3.region {
            s3_args.extend(["--s3-region".to_string(), region]);
        }
        return Ok(ModelMount {
            arg: uri.to_string(),
            digest,
            // A store with a private CA (MinIO inside the cluster) is trusted like an https one.
            ca: ca_config_map.map(model_ca_volume),
            s3_args,
            env: s3
                .credentials_secret
                .as_deref()
                .map(s3_credentials_env)
                .unwrap_or_default(),
            ..Default::default()
        });
    }
    let rest = uri
        .strip_prefix("pvc://")
        .ok_or_else(|| ResourceError::ModelSource(format!("unsupported URI {uri:?}")))?;
    let (claim, path) = rest
        .trim_start_matches('/')
        .split_once('/')
        .filter(|(c, p)| !c.is_empty() && !p.is_empty())
        .ok_or_else(|| {
            ResourceError::ModelSource(format!("{uri:?} is not pvc://<claim>/<path>"))
        })?;
    let mount_path = format!("{MODELS_ROOT}/{claim}");
    Ok(ModelMount {
        arg: format!("{mount_path}/{path}"),
        digest,
        volume: Some((
            Volume {
                name: "model".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.to_string(),
                    read_only: Some(true),
                }),
                ..Default::default()
            },
            VolumeMount {
                name: "model".into(),
                mount_path,
                read_only: Some(true),
                ..Default::default()
            },
        )),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_map_to_args_and_volumes() {
        let src = |uri: &str| ModelSource {
            uri: Some(uri.into()),
            ..Default::default()
        };
        let cases: &[(ModelSource, &str, Option<&str>)] = &[
            (src("file:///models/m.pt"), "/models/m.pt", None),
            (
                src("pvc://weights/resnet/r50.pt"),
                "/models/weights/resnet/r50.pt",
                Some("weights"),
            ),
            (
                ModelSource {
                    builtin: Some(greenbatch_crds::BuiltinModel::Alexnet),
                    ..Default::default()
                },
                "builtin:alexnet",
                None,
            ),
        ];
        for (source, arg, claim) in cases {
            let m = model_mount(source, None).unwrap();
            assert_eq!(m.arg, *arg);
            match (&m.volume, claim) {
                (None, None) => {}
                (Some((v, mnt)), Some(claim)) => {
                    let pvc = v.persistent_volume_claim.as_ref().unwrap();
                    assert_eq!(
                        (pvc.claim_name.as_str(), pvc.read_only),
                        (*claim, Some(true))
                    );
                    assert_eq!(mnt.mount_path, format!("/models/{claim}"));
                    assert_eq!(mnt.read_only, Some(true));
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(model_mount(&src("pvc://only-claim"), None).is_err());
        assert!(model_mount(&src("gs://x/y"), None).is_err());
        assert!(model_mount(&ModelSource::default(), None).is_err());
    }

    #[test]
    fn a_model_url_and_its_digest_go_to_the_runtime_which_downloads_and_checks_it() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let source = ModelSource {
            uri: Some("https://models.example/r50.pt".into()),
            digest: Some(digest.clone()),
            ..Default::default()
        };
        let m = model_mount(&source, None).unwrap();
        assert_eq!(
            m.volume, None,
            "downloaded into the pod's /tmp, no volume of its own"
        );
        assert_eq!(
            m.runtime_args(),
            [
                "--model",
                "https://models.example/r50.pt",
                "--model-digest",
                &digest
            ]
        );
        // With a CA ConfigMap configured, a download trusts its certificates too.
        let with_ca = model_mount(&source, Some("corp-ca")).unwrap();
        let (volume, mount) = with_ca.ca.clone().unwrap();
        assert_eq!(volume.config_map.unwrap().name, "corp-ca");
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (MODEL_CA_DIR, Some(true))
        );
        assert_eq!(
            with_ca.runtime_args()[4..],
            ["--model-ca-file", "/etc/greenbatch/model-ca/ca.crt"]
        );
        // A PVC file's digest is checked too (and no CA is mounted: nothing is downloaded); a
        // builtin has no file to check.
        let pvc = ModelSource {
            uri: Some("pvc://weights/r50.pt".into()),
            digest: Some(digest.clone()),
            ..Default::default()
        };
        let args = model_mount(&pvc, Some("corp-ca")).unwrap().runtime_args();
        assert_eq!(
            args,
            [
                "--model",
                "/models/weights/r50.pt",
                "--model-digest",
                &digest
            ]
        );
        let builtin = ModelSource {
            builtin: Some(greenbatch_crds::BuiltinModel::Alexnet),
            digest: Some(digest),
            ..Default::default()
        };
        assert_eq!(
            model_mount(&builtin, Some("corp-ca"))
                .unwrap()
                .runtime_args(),
            ["--model", "builtin:alexnet"]
        );
    }

    #[test]
    fn an_s3_model_goes_with_its_store_settings_and_the_keys_of_its_secret() {
        let digest = format!("sha256:{}", "cd".repeat(32));
        let source = ModelSource {
            uri: Some("s3://models/vision/r50.pt".into()),
            digest: Some(digest.clone()),
            s3: Some(greenbatch_crds::S3Source {
                endpoint: Some("http://minio.storage:9000".into()),
                region: Some("eu-west-3".into()),
                credentials_secret: Some("model-store".into()),
            }),
            ..Default::default()
        };
        let m = model_mount(&source, Some("corp-ca")).unwrap();
        assert_eq!(m.volume, None, "downloaded into the pod's /tmp");
        assert_eq!(
            m.runtime_args(),
            [
                "--model",
                "s3://models/vision/r50.pt",
                "--model-digest",
                &digest,
                "--model-ca-file",
                "/etc/greenbatch/model-ca/ca.crt",
                "--s3-endpoint",
                "http://minio.storage:9000",
                "--s3-region",
                "eu-west-3"
            ]
        );
        // Each key from the Secret's key of its name; only the session token may be missing.
        let keys: Vec<(&str, &str, &str, Option<bool>)> = m
            .env
            .iter()
            .map(|e| {
                let r = e
                    .value_from
                    .as_ref()
                    .unwrap()
                    .secret_key_ref
                    .as_ref()
                    .unwrap();
                (e.name.as_str(), r.name.as_str(), r.key.as_str(), r.optional)
            })
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "AWS_ACCESS_KEY_ID",
                    "model-store",
                    "AWS_ACCESS_KEY_ID",
                    None
                ),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    "model-store",
                    "AWS_SECRET_ACCESS_KEY",
                    None
                ),
                (
                    "AWS_SESSION_TOKEN",
                    "model-store",
                    "AWS_SESSION_TOKEN",
                    Some(true)
                ),
            ]
        );
        assert!(
            m.env.iter().all(|e| e.value.is_none()),
            "no key in the pod spec itself"
        );
        // AWS, anonymously: no settings, no environment.
        let bare = model_mount(&ModelSource { s3: None, ..source }, None).unwrap();
        assert_eq!(bare.runtime_args()[4..], [] as [&str; 0]);
        assert!(bare.env.is_empty());
    }
}
