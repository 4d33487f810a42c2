//! Finding the binaries of a test cluster.
//!
//! Order, per binary:
//! 1. `KUBEBUILDER_ASSETS` (the envtest convention), when set: a folder that must hold `kube-apiserver`
//!    and `etcd` (and may hold `kube-controller-manager` and `kubectl`);
//! 2. the environment variables `GREENBATCH_KUBE_APISERVER`, `GREENBATCH_ETCD`,
//!    `GREENBATCH_KUBE_CONTROLLER_MANAGER`, `GREENBATCH_KUBECTL`, `GREENBATCH_HELM`,
//!    `GREENBATCH_KUBERNETES_VALIDATE`;
//! 3. the same variables in the env file `scripts/setup-test-cluster.sh` writes:
//!    `$GREENBATCH_CACHE/test-cluster.env` (default `~/.cache/greenbatch/test-cluster.env`).

use crate::error::{HarnessError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const ENV_APISERVER: &str = "GREENBATCH_KUBE_APISERVER";
pub const ENV_CONTROLLER_MANAGER: &str = "GREENBATCH_KUBE_CONTROLLER_MANAGER";
pub const ENV_ETCD: &str = "GREENBATCH_ETCD";
pub const ENV_KUBECTL: &str = "GREENBATCH_KUBECTL";
pub const ENV_HELM: &str = "GREENBATCH_HELM";
pub const ENV_KUBERNETES_VALIDATE: &str = "GREENBATCH_KUBERNETES_VALIDATE";

/// Paths of the binaries a [`TestCluster`](crate::TestCluster) runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kube_controller_manager: Option<PathBuf>,
    pub kubectl: Option<PathBuf>,
    pub helm: Option<PathBuf>,
    /// `kubernetes-validate` (PyPI): the API schemas of newer Kubernetes releases.
    pub kubernetes_validate: Option<PathBuf>,
}

impl Binaries {
    /// Locates the binaries from the process environment (see the module docs).
    pub fn locate() -> Result<Self> {
        let env_file = env_file_path();
        let file_vars = match &env_file {
            Some(path) if path.is_file() => parse_env_file(path)?,
            _ => BTreeMap::new(),
        };
        let assets = std::env::var_os("KUBEBUILDER_ASSETS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self::resolve(
            assets.as_deref(),
            &|key| std::env::var(key).ok(),
            &file_vars,
            env_file.as_deref(),
        )
    }

    /// [`Binaries::locate`] with its inputs made explicit (for tests).
    pub fn resolve(
        assets: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        file_vars: &BTreeMap<String, String>,
        env_file: Option<&Path>,
    ) -> Result<Self> {
        let env_file_desc = env_file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no env file: HOME is not set)".to_string());
        // A variable set (even to "") in the environment wins over the env file.
        let lookup = |key: &str| -> Option<(String, String)> {
            match env(key) {
                Some(v) => Some((v, format!("${key}"))),
                None => file_vars
                    .get(key)
                    .map(|v| (v.clone(), format!("{key} in {env_file_desc}"))),
            }
        };
        let optional = |key: &str| -> Result<Option<PathBuf>> {
            match lookup(key) {
                Some((v, _)) if v.is_empty() => Ok(None),
                Some((v, from)) => existing(PathBuf::from(v), &from).map(Some),
                None => Ok(None),
            }
        };
        let required = |key: &str, name: &str| -> Result<PathBuf> {
            match lookup(key) {
                Some((v, from)) if !v.is_empty() => existing(PathBuf::from(v), &from),
                _ => Err(HarnessError::BinariesNotFound {
                    what: format!(
                        "no {name}: KUBEBUILDER_ASSETS is unset and {key} is set neither in the environment nor in {env_file_desc}"
                    ),
                }),
            }
        };

        if let Some(dir) = assets {
            let in_assets = |name: &str| Some(dir.join(name)).filter(|p| is_executable(p));
            let (Some(kube_apiserver), Some(etcd)) =
                (in_assets("kube-apiserver"), in_assets("etcd"))
            else {
                return Err(HarnessError::BinariesNotFound {
                    what: format!(
                        "KUBEBUILDER_ASSETS={} does not hold executable kube-apiserver and etcd",
                        dir.display()
                    ),
                });
            };
            return Ok(Binaries {
                kube_apiserver,
                etcd,
                kube_controller_manager: match in_assets("kube-controller-manager") {
                    Some(p) => Some(p),
                    None => optional(ENV_CONTROLLER_MANAGER)?,
                },
                kubectl: match in_assets("kubectl") {
                    Some(p) => Some(p),
                    None => optional(ENV_KUBECTL)?,
                },
                helm: optional(ENV_HELM)?,
                kubernetes_validate: optional(ENV_KUBERNETES_VALIDATE)?,
            });
        }
        Ok(Binaries {
            kube_apiserver: required(ENV_APISERVER, "kube-apiserver")?,
            etcd: required(ENV_ETCD, "etcd")?,
            kube_controller_manager: optional(ENV_CONTROLLER_MANAGER)?,
            kubectl: optional(ENV_KUBECTL)?,
            helm: optional(ENV_HELM)?,
            kubernetes_validate: optional(ENV_KUBERNETES_VALIDATE)?,
        })
    }

    pub fn require_controller_manager(&self) -> Result<&Path> {
        self.kube_controller_manager
            .as_deref()
            .ok_or_else(|| HarnessError::BinariesNotFound {
                what: format!(
                    "no kube-controller-manager (${ENV_CONTROLLER_MANAGER} is unset or empty)"
                ),
            })
    }

    pub fn require_kubectl(&self) -> Result<&Path> {
        self.kubectl
            .as_deref()
            .ok_or_else(|| HarnessError::BinariesNotFound {
                what: format!("no kubectl (${ENV_KUBECTL} is unset or empty)"),
            })
    }

    pub fn require_helm(&self) -> Result<&Path> {
        self.helm
            .as_deref()
            .ok_or_else(|| HarnessError::BinariesNotFound {
                what: format!("no helm (${ENV_HELM} is unset or empty)"),
            })
    }
}

/// `$GREENBATCH_CACHE/test-cluster.env`, default `~/.cache/greenbatch/test-cluster.env`.
pub fn env_file_path() -> Option<PathBuf> {
    let cache = match std::env::var_os("GREENBATCH_CACHE").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?)
            .join(".cache/greenbatch"),
    };
    Some(cache.join("test-cluster.env"))
}

/// Reads `export KEY="VALUE"` / `KEY=VALUE` lines; comments and other lines are skipped.
pub fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| HarnessError::io(format!("reading {}", path.display()), e))?;
    Ok(parse_env_text(&text))
}

pub fn parse_env_text(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        vars.insert(key.to_string(), value.to_string());
    }
    vars
}

fn existing(path: PathBuf, from: &str) -> Result<PathBuf> {
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(HarnessError::BinariesNotFound {
            what: format!("{from} = {} is not an executable file", path.display()),
        })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setup_scripts_env_file() {
        let vars = parse_env_text(
            "# comment\nexport GREENBATCH_ETCD=\"/usr/bin/etcd\"\nexport GREENBATCH_KUBE_CONTROLLER_MANAGER=\"\"\nPLAIN=x y\nnot a var\n",
        );
        assert_eq!(
            vars.get("GREENBATCH_ETCD").map(String::as_str),
            Some("/usr/bin/etcd")
        );
        assert_eq!(
            vars.get("GREENBATCH_KUBE_CONTROLLER_MANAGER")
                .map(String::as_str),
            Some("")
        );
        assert_eq!(vars.get("PLAIN").map(String::as_str), Some("x y"));
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn missing_binaries_say_how_to_get_them() {
        let err = Binaries::resolve(
            None,
            &|_| None,
            &BTreeMap::new(),
            Some(Path::new("/nonexistent/test-cluster.env")),
        )
        .expect_err("nothing configured");
        let msg = err.to_string();
        assert!(msg.contains("scripts/setup-test-cluster.sh"), "{msg}");
        assert!(msg.contains(ENV_APISERVER), "{msg}");
    }

    #[test]
    fn kubebuilder_assets_without_binaries_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Binaries::resolve(Some(dir.path()), &|_| None, &BTreeMap::new(), None)
            .expect_err("empty assets");
        assert!(err.to_string().contains("KUBEBUILDER_ASSETS"), "{err}");
    }

    #[test]
    fn environment_wins_over_env_file_and_assets_win_over_both() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mk = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            p
        };
        let (file_api, env_api, etcd) = (mk("file-apiserver"), mk("env-apiserver"), mk("etcd-bin"));
        let file_vars: BTreeMap<String, String> = [
            (ENV_APISERVER.to_string(), file_api.display().to_string()),
            (ENV_ETCD.to_string(), etcd.display().to_string()),
        ]
        .into();
        let env_api_s = env_api.display().to_string();
        let env = |k: &str| (k == ENV_APISERVER).then(|| env_api_s.clone());
        let b = Binaries::resolve(None, &env, &file_vars, None).expect("resolves");
        assert_eq!(b.kube_apiserver, env_api);
        assert_eq!(b.etcd, etcd);
        assert_eq!(b.kube_controller_manager, None);

        let assets = tempfile::tempdir().expect("tempdir");
        for name in ["kube-apiserver", "etcd"] {
            let p = assets.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let b = Binaries::resolve(Some(assets.path()), &env, &file_vars, None).expect("resolves");
        assert_eq!(b.kube_apiserver, assets.path().join("kube-apiserver"));
        assert_eq!(b.etcd, assets.path().join("etcd"));
    }
}
