//! [`TestCluster`]: a fresh etcd + kube-apiserver (+ kube-controller-manager) on loopback.

use crate::binaries::Binaries;
use crate::error::{HarnessError, IoContext, Result};
use crate::pki::Pki;
use crate::process::ManagedProcess;
use crate::tool::{CommandOutput, run_tool};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Name of the identity with group `system:masters`; [`TestCluster::client`] uses it.
pub const ADMIN: &str = "admin";
/// Name of the operator's identity in the default options.
pub const OPERATOR: &str = "operator";
/// Name of an identity with no groups beyond `system:authenticated` (no permissions by default).
pub const NOBODY: &str = "nobody";
pub const OPERATOR_NAMESPACE: &str = "greenbatch-system";
pub const OPERATOR_SERVICE_ACCOUNT: &str = "greenbatch-operator";
/// The field manager of the harness's server-side applies.
pub const FIELD_MANAGER: &str = "greenbatch-tests";
/// Set to `1` to keep a cluster's data dir (logs, kubeconfigs) after the test.
pub const KEEP_ENV: &str = "GREENBATCH_KEEP_TEST_CLUSTER";

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A user the API server authenticates by a static token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The harness's key for it ([`TestCluster::client_as`]); also names its kubeconfig file.
    pub name: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn new(name: &str, user: &str, groups: &[&str]) -> Self {
        Identity {
            name: name.to_string(),
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// A service account's identity as the API server sees its tokens: user
    /// `system:serviceaccount:<ns>:<sa>`, groups `system:serviceaccounts` and `system:serviceaccounts:<ns>`.
    pub fn service_account(name: &str, namespace: &str, service_account: &str) -> Self {
        Identity {
            name: name.to_string(),
            user: format!("system:serviceaccount:{namespace}:{service_account}"),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        }
    }

    /// `system:serviceaccount:greenbatch-system:greenbatch-operator`, named [`OPERATOR`].
    pub fn operator() -> Self {
        Self::service_account(OPERATOR, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    }

    /// An authenticated user without any role, named [`NOBODY`].
    pub fn nobody() -> Self {
        Self::new(NOBODY, "greenbatch-test-nobody", &[])
    }

    fn admin() -> Self {
        Self::new(ADMIN, "greenbatch-test-admin", &["system:masters"])
    }
}

#[derive(Clone, Debug)]
pub struct TestClusterOptions {
    /// Also run kube-controller-manager (garbage collection, namespace deletion, Deployment ->
    /// ReplicaSet -> Pod, Job -> Pod, service-account tokens). Adds about a second to start-up.
    pub controller_manager: bool,
    /// Identities besides [`ADMIN`] (which is always there).
    pub identities: Vec<Identity>,
    /// How long start-up may take before it fails with the tail of the logs.
    pub startup_timeout: Duration,
    pub extra_apiserver_args: Vec<String>,
    /// Binaries to run; `None` locates them with [`Binaries::locate`].
    pub binaries: Option<Binaries>,
}

impl Default for TestClusterOptions {
    fn default() -> Self {
        TestClusterOptions {
            controller_manager: false,
            identities: vec![Identity::operator(), Identity::nobody()],
            startup_timeout: Duration::from_secs(60),
            extra_apiserver_args: Vec::new(),
            binaries: None,
        }
    }
}

impl TestClusterOptions {
    pub fn with_controller_manager(mut self) -> Self {
        self.controller_manager = true;
        self
    }

    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identities.push(identity);
        self
    }
}

/// The processes of a cluster, for tests of the harness itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterPids {
    pub etcd: u32,
    pub apiserver: u32,
    pub controller_manager: Option<u32>,
}

impl ClusterPids {
    pub fn all(&self) -> Vec<u32> {
        [
            Some(self.etcd),
            Some(self.apiserver),
            self.controller_manager,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Clone, Debug)]
struct Credentials {
    identity: Identity,
    token: String,
    kubeconfig: PathBuf,
}

/// A running etcd + kube-apiserver (+ kube-controller-manager), torn down on drop.
///
/// Own it in the test function: a `kube::Client` it hands out belongs to the tokio runtime it was made
/// on (each `#[tokio::test]` has its own), and its processes die with the thread that started them.
pub struct TestCluster {
    // Stopped in this order by Drop.
    controller_manager: Option<ManagedProcess>,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    client: Client,
    binaries: Binaries,
    pki: Pki,
    server_url: String,
    port: u16,
    etcd_port: u16,
    version: String,
    credentials: BTreeMap<String, Credentials>,
    admin_kubeconfig: PathBuf,
    dir_path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("server_url", &self.server_url)
            .field("version", &self.version)
            .field("pids", &self.pids())
            .field("dir", &self.dir_path)
            .finish()
    }
}

impl TestCluster {
    /// Starts a fresh cluster and waits until `/readyz` says `ok` (and, with a controller manager, until
    /// it has given the `default` service account a token).
    pub async fn start(options: TestClusterOptions) -> Result<Self> {
        let binaries = match &options.binaries {
            Some(b) => b.clone(),
            None => Binaries::locate()?,
        };
        if options.controller_manager {
            binaries.require_controller_manager()?;
        }
        let mut names = vec![ADMIN];
        for identity in &options.identities {
            let safe = !identity.name.is_empty()
                && identity
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !safe || names.contains(&identity.name.as_str()) {
                return Err(HarnessError::UnknownIdentity {
                    name: identity.name.clone(),
                    known: format!(
                        "identity names must be unique, [A-Za-z0-9_-]+, and not {ADMIN:?}"
                    ),
                });
            }
            names.push(&identity.name);
        }
        // Free ports are picked by binding and releasing them, so another process can take one in
        // between: retry on a port clash.
        let mut attempt = 1;
        loop {
            match Self::start_once(&options, &binaries).await {
                Err(e) if attempt < 3 && is_port_clash(&e) => {
                    say(&format!(
                        "port clash while starting the test cluster, retrying: {e}"
                    ));
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(options: &TestClusterOptions, binaries: &Binaries) -> Result<Self> {
        let started = Instant::now();
        let deadline = started + options.startup_timeout;
        let dir = tempfile::Builder::new()
            .prefix("greenbatch-cluster-")
            .tempdir()
            .context(|| "creating the cluster's temp dir".to_string())?;
        let dir_path = dir.path().to_path_buf();
        let pki = Pki::generate(&dir_path)?;

        let mut identities = vec![Identity::admin()];
        identities.extend(options.identities.iter().cloned());
        let mut token_lines = String::new();
        let mut credentials = BTreeMap::new();
        for (i, identity) in identities.into_iter().enumerate() {
            let token = crate::pki::random_hex(24)?;
            let groups = identity.groups.join(",");
            token_lines.push_str(&format!("{token},{},uid-{i},\"{groups}\"\n", identity.user));
            let kubeconfig = dir_path.join(format!("kubeconfig-{}.yaml", identity.name));
            credentials.insert(
                identity.name.clone(),
                Credentials {
                    identity,
                    token,
                    kubeconfig,
                },
            );
        }
        let tokens = dir_path.join("tokens.csv");
        write_private(&tokens, &token_lines)?;

        let [etcd_port, peer_port, port] = free_ports()?;
        let server_url = format!("https://127.0.0.1:{port}");
        for cred in credentials.values() {
            write_kubeconfig(
                &cred.kubeconfig,
                &server_url,
                &pki.ca_cert,
                &cred.identity.name,
                &cred.token,
            )?;
        }

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", dir_path.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync".into(),
        ];
        let mut etcd = ManagedProcess::spawn(
            "etcd",
            &binaries.etcd,
            &etcd_args,
            &dir_path.join("etcd.log"),
        )?;
        wait_for_port(&mut etcd, etcd_port, deadline, options.startup_timeout).await?;

        let p = |path: &Path| path.display().to_string();
        let mut apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", dir_path.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", p(&pki.serving_cert)),
            format!("--tls-private-key-file={}", p(&pki.serving_key)),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            format!("--token-auth-file={}", p(&tokens)),
            format!("--service-account-key-file={}", p(&pki.service_account_pub)),
            format!(
                "--service-account-signing-key-file={}",
                p(&pki.service_account_key)
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--authorization-mode=RBAC".into(),
            "--endpoint-reconciler-type=none".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
        ];
        apiserver_args.extend(options.extra_apiserver_args.iter().cloned());
        let mut apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &apiserver_args,
            &dir_path.join("kube-apiserver.log"),
        )?;

        let admin_kubeconfig = credentials
            .get(ADMIN)
            .map(|c| c.kubeconfig.clone())
            .ok_or_else(|| HarnessError::UnknownIdentity {
                name: ADMIN.into(),
                known: "(none)".into(),
            })?;
        let client = client_from_kubeconfig(&admin_kubeconfig).await?;
        wait_for_readyz(
            &client,
            &mut etcd,
            &mut apiserver,
            deadline,
            options.startup_timeout,
        )
        .await?;
        let version = client
            .apiserver_version()
            .await
            .map_err(|e| HarnessError::kube("GET /version", e))?
            .git_version;
        say(&format!(
            "kube-apiserver {version} ready on {server_url} after {:.1}s (etcd {etcd_url}, authorization RBAC, pid {}, binary {}, data {})",
            started.elapsed().as_secs_f64(),
            apiserver.pid(),
            binaries.kube_apiserver.display(),
            dir_path.display()
        ));

        let controller_manager = if options.controller_manager {
            let kcm_args: Vec<String> = vec![
                format!("--kubeconfig={}", p(&admin_kubeconfig)),
                "--leader-elect=false".into(),
                format!("--service-account-private-key-file={}", p(&pki.service_account_key)),
                format!("--root-ca-file={}", p(&pki.ca_cert)),
                format!("--cluster-signing-cert-file={}", p(&pki.ca_cert)),
                format!("--cluster-signing-key-file={}", p(&pki.ca_key)),
                "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route,-ttl-after-finished".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
            ];
            let kcm_path = binaries.require_controller_manager()?;
            let mut kcm = ManagedProcess::spawn(
                "kube-controller-manager",
                kcm_path,
                &kcm_args,
                &dir_path.join("kube-controller-manager.log"),
            )?;
            wait_for_token_controller(&client, &mut kcm, deadline, options.startup_timeout).await?;
            say(&format!(
                "kube-controller-manager ready after {:.1}s (pid {})",
                started.elapsed().as_secs_f64(),
                kcm.pid()
            ));
            Some(kcm)
        } else {
            None
        };

        Ok(TestCluster {
            controller_manager,
            apiserver,
            etcd,
            client,
            binaries: binaries.clone(),
            pki,
            server_url,
            port,
            etcd_port,
            version,
            credentials,
            admin_kubeconfig,
            dir_path,
            dir: Some(dir),
        })
    }

    /// A client with the admin identity (group `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A new client for a named identity.
    pub async fn client_as(&self, identity: &str) -> Result<Client> {
        client_from_kubeconfig(&self.credentials(identity)?.kubeconfig).await
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The kubeconfig of a named identity.
    pub fn kubeconfig_as(&self, identity: &str) -> Result<&Path> {
        Ok(&self.credentials(identity)?.kubeconfig)
    }

    /// The bearer token of a named identity.
    pub fn token_as(&self, identity: &str) -> Result<&str> {
        Ok(&self.credentials(identity)?.token)
    }

    /// The user and groups of a named identity.
    pub fn identity(&self, identity: &str) -> Result<&Identity> {
        Ok(&self.credentials(identity)?.identity)
    }

    fn credentials(&self, identity: &str) -> Result<&Credentials> {
        self.credentials
            .get(identity)
            .ok_or_else(|| HarnessError::UnknownIdentity {
                name: identity.to_string(),
                known: self
                    .credentials
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn etcd_port(&self) -> u16 {
        self.etcd_port
    }

    /// The server's `gitVersion`, e.g. `v1.20.2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The CA certificate that signed the serving certificate.
    pub fn ca_cert(&self) -> &Path {
        &self.pki.ca_cert
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// The cluster's temp dir (logs, kubeconfigs, PKI, etcd data); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    pub fn pids(&self) -> ClusterPids {
        ClusterPids {
            etcd: self.etcd.pid(),
            apiserver: self.apiserver.pid(),
            controller_manager: self.controller_manager.as_ref().map(ManagedProcess::pid),
        }
    }

    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.apiserver.log_tail(lines)
    }

    pub fn controller_manager_log_tail(&self, lines: usize) -> Option<String> {
        self.controller_manager.as_ref().map(|c| c.log_tail(lines))
    }

    /// Server-side applies every CRD of `greenbatch_crds::all_crds()` and waits until each is Established.
    pub async fn apply_crds(&self) -> Result<Vec<CustomResourceDefinition>> {
        self.apply_crd_objects(greenbatch_crds::all_crds()).await
    }

    /// Server-side applies the given CRDs (field manager [`FIELD_MANAGER`], forced) and waits until each
    /// is Established.
    pub async fn apply_crd_objects(
        &self,
        crds: Vec<CustomResourceDefinition>,
    ) -> Result<Vec<CustomResourceDefinition>> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut names = Vec::new();
        for crd in crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .map_err(|e| HarnessError::kube(format!("server-side apply of CRD {name}"), e))?;
            names.push(name);
        }
        let mut established = Vec::new();
        for name in names {
            established.push(
                self.wait_for_crd_established(&name, Duration::from_secs(30))
                    .await?,
            );
        }
        Ok(established)
    }

    /// Waits until the CRD `name` has the condition Established=True.
    pub async fn wait_for_crd_established(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<CustomResourceDefinition> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client());
        let cond = kube::runtime::wait::conditions::is_crd_established();
        match tokio::time::timeout(
            timeout,
            kube::runtime::wait::await_condition(api, name, cond),
        )
        .await
        {
            Ok(Ok(Some(crd))) => Ok(crd),
            Ok(Ok(None)) => Err(HarnessError::Timeout {
                what: format!("CRD {name} was deleted while waiting"),
                timeout,
            }),
            Ok(Err(e)) => Err(HarnessError::Timeout {
                what: format!("watching CRD {name}: {e}"),
                timeout,
            }),
            Err(_) => Err(HarnessError::Timeout {
                what: format!("CRD {name} to become Established"),
                timeout,
            }),
        }
    }

    /// Waits until the API server admits an object owned (with `blockOwnerDeletion`) by each
    /// greenbatch kind, probed by a server-side dry run in `namespace`. With the
    /// OwnerReferencesPermissionEnforcement admission plugin on, the server maps an owner's kind
    /// through a discovery cache it refreshes every 30 s: if anything filled that cache while the
    /// CRDs were still being established (the ReplicaSet of a Deployment created in the same
    /// `helm install`, say), it refuses such objects until the next refresh. A real operator
    /// retries; a test that counts failed reconciles waits here instead.
    pub async fn wait_until_greenbatch_owners_are_admitted(
        &self,
        namespace: &str,
        timeout: Duration,
    ) -> Result<()> {
        for crd in greenbatch_crds::all_crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            self.wait_for_crd_established(&name, timeout).await?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.admits_greenbatch_owners(namespace).await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(HarnessError::Timeout {
                        what: format!(
                            "the API server to admit objects owned by greenbatch kinds (last: {e})"
                        ),
                        timeout,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// One try of [`Self::wait_until_greenbatch_owners_are_admitted`]: a server-side dry run of a
    /// ConfigMap in `namespace` owned, with `blockOwnerDeletion`, by each greenbatch kind.
    pub async fn admits_greenbatch_owners(&self, namespace: &str) -> Result<()> {
        let owners: Vec<OwnerReference> = greenbatch_crds::all_crds()
            .iter()
            .flat_map(|crd| {
                crd.spec.versions.iter().map(|v| OwnerReference {
                    api_version: format!("{}/{}", crd.spec.group, v.name),
                    kind: crd.spec.names.kind.clone(),
                    name: "admission-probe".into(),
                    uid: "00000000-0000-0000-0000-000000000000".into(),
                    block_owner_deletion: Some(true),
                    controller: None,
                })
            })
            .collect();
        let probe = ConfigMap {
            metadata: ObjectMeta {
                generate_name: Some("greenbatch-admission-probe-".into()),
                owner_references: Some(owners),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<ConfigMap> = Api::namespaced(self.client(), namespace);
        let params = PostParams {
            dry_run: true,
            ..Default::default()
        };
        api.create(&params, &probe)
            .await
            .map(|_| ())
            .map_err(|e| HarnessError::kube("dry run of an object owned by greenbatch kinds", e))
    }

    /// Creates a namespace (if missing) and its `default` service account, so pods can be created
    /// without a controller manager. (Without one, service-account tokens are not minted: give such pods
    /// `automountServiceAccountToken: false`.)
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        ignore_already_exists(namespaces.create(&PostParams::default(), &ns).await)
            .map_err(|e| HarnessError::kube(format!("creating namespace {name}"), e))?;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(self.client(), name);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        ignore_already_exists(service_accounts.create(&PostParams::default(), &sa).await).map_err(
            |e| HarnessError::kube(format!("creating service account {name}/default"), e),
        )?;
        Ok(())
    }

    /// Runs kubectl with the admin kubeconfig.
    pub async fn kubectl<I, S>(&self, args: I) -> Result<CommandOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_full(ADMIN, args, None).await
    }

    /// Runs kubectl with the admin kubeconfig, feeding `stdin` (e.g. `apply -f -`).
    pub async fn kubectl_with_stdin<I, S>(&self, args: I, stdin: &str) -> Result<CommandOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_full(ADMIN, args, Some(stdin)).await
    }

    /// Runs kubectl as a named identity.
    pub async fn kubectl_as<I, S>(&self, identity: &str, args: I) -> Result<CommandOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_full(identity, args, None).await
    }

    async fn kubectl_full<I, S>(
        &self,
        identity: &str,
        args: I,
        stdin: Option<&str>,
    ) -> Result<CommandOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let kubectl = self.binaries.require_kubectl()?;
        let kubeconfig = self.kubeconfig_as(identity)?;
        let mut all: Vec<std::ffi::OsString> = vec![
            "--kubeconfig".into(),
            kubeconfig.into(),
            // Per-cluster discovery cache: ports are reused by later clusters.
            "--cache-dir".into(),
            self.dir_path.join("kubectl-cache").into(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        run_tool(kubectl, &all, &[], stdin, TOOL_TIMEOUT).await
    }

    /// Runs helm with the admin kubeconfig and helm's cache/config/data dirs inside the cluster's dir.
    pub async fn helm<I, S>(&self, args: I) -> Result<CommandOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let helm = self.binaries.require_helm()?;
        let mut all: Vec<std::ffi::OsString> =
            vec!["--kubeconfig".into(), self.kubeconfig().into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        let home = self.dir_path.join("helm");
        let envs = [
            ("HELM_CACHE_HOME", home.join("cache")),
            ("HELM_CONFIG_HOME", home.join("config")),
            ("HELM_DATA_HOME", home.join("data")),
        ];
        run_tool(helm, &all, &envs, None, TOOL_TIMEOUT).await
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            say(&format!(
                "test panicked; last lines of the kube-apiserver log:\n{}\n(set {KEEP_ENV}=1 to keep {})",
                self.apiserver.log_tail(20),
                self.dir_path.display()
            ));
        }
        if let Some(kcm) = &mut self.controller_manager {
            kcm.stop();
        }
        self.apiserver.stop();
        self.etcd.stop();
        if std::env::var(KEEP_ENV).is_ok_and(|v| v == "1")
            && let Some(dir) = self.dir.take()
        {
            say(&format!(
                "kept the test cluster's dir {}",
                dir.keep().display()
            ));
        }
    }
}

/// Writes a line to stderr directly, past libtest's output capture, so CI logs show it.
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "[greenbatch-tests] {line}");
}

fn is_port_clash(e: &HarnessError) -> bool {
    match e {
        HarnessError::ProcessExited { tail, .. } | HarnessError::NotReady { tail, .. } => {
            tail.contains("address already in use")
        }
        _ => false,
    }
}

fn ignore_already_exists<T>(
    r: std::result::Result<T, kube::Error>,
) -> std::result::Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .context(|| format!("writing {}", path.display()))
}

fn write_kubeconfig(path: &Path, server: &str, ca: &Path, user: &str, token: &str) -> Result<()> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "greenbatch-test", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "greenbatch-test", "context": {"cluster": "greenbatch-test", "user": user, "namespace": "default"}}],
        "current-context": "greenbatch-test",
    });
    let yaml = serde_yaml::to_string(&doc).map_err(|e| HarnessError::Yaml {
        context: format!("rendering {}", path.display()),
        source: e,
    })?;
    write_private(path, &yaml)
}

async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let context = || format!("loading kubeconfig {}", path.display());
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| HarnessError::Kubeconfig {
        context: context(),
        source: e,
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::Kubeconfig {
            context: context(),
            source: e,
        })?;
    Client::try_from(config)
        .map_err(|e| HarnessError::kube(format!("building a client from {}", path.display()), e))
}

/// Three distinct loopback ports that were free a moment ago.
fn free_ports() -> Result<[u16; 3]> {
    let bind = || {
        std::net::TcpListener::bind("127.0.0.1:0").context(|| "binding a loopback port".to_string())
    };
    let listeners = [bind()?, bind()?, bind()?];
    let mut ports = [0u16; 3];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l
            .local_addr()
            .context(|| "reading a bound port".to_string())?
            .port();
    }
    Ok(ports)
}

fn exited_error(process: &mut ManagedProcess) -> Option<HarnessError> {
    process.exited().map(|status| HarnessError::ProcessExited {
        name: process.name().to_string(),
        status: status.to_string(),
        log: process.log_path().to_path_buf(),
        tail: process.log_tail(40),
    })
}

fn not_ready(
    process: &ManagedProcess,
    what: &str,
    timeout: Duration,
    last_error: String,
) -> HarnessError {
    HarnessError::NotReady {
        what: what.to_string(),
        timeout,
        last_error,
        log: process.log_path().to_path_buf(),
        tail: process.log_tail(40),
    }
}

async fn wait_for_port(
    process: &mut ManagedProcess,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    loop {
        if let Some(e) = exited_error(process) {
            return Err(e);
        }
        let last_error = match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(not_ready(
                process,
                &format!("{} on port {port}", process.name()),
                timeout,
                last_error,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_readyz(
    client: &Client,
    etcd: &mut ManagedProcess,
    apiserver: &mut ManagedProcess,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    loop {
        for p in [&mut *etcd, &mut *apiserver] {
            if let Some(e) = exited_error(p) {
                return Err(e);
            }
        }
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| HarnessError::io("building GET /readyz", std::io::Error::other(e)))?;
        let last_error = match tokio::time::timeout(
            Duration::from_secs(5),
            client.request_text(request),
        )
        .await
        {
            Ok(Ok(body)) if body.trim() == "ok" => return Ok(()),
            Ok(Ok(body)) => format!("/readyz said {body:?}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "GET /readyz took over 5s".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(not_ready(
                apiserver,
                "kube-apiserver (/readyz)",
                timeout,
                last_error,
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The controller manager works once its service-account and token controllers have given
/// `default/default` a token secret.
async fn wait_for_token_controller(
    client: &Client,
    kcm: &mut ManagedProcess,
    deadline: Instant,
    timeout: Duration,
) -> Result<()> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    loop {
        if let Some(e) = exited_error(kcm) {
            return Err(e);
        }
        let last_error = match api.get_opt("default").await {
            Ok(Some(sa)) if sa.secrets.as_ref().is_some_and(|s| !s.is_empty()) => return Ok(()),
            Ok(Some(_)) => "service account default/default has no token secret yet".to_string(),
            Ok(None) => "service account default/default does not exist yet".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(not_ready(
                kcm,
                "kube-controller-manager",
                timeout,
                last_error,
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
