//! Granting a test identity a role, as `kubectl create (cluster)rolebinding --serviceaccount` would.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

/// Where the binding lives and what it binds: a ClusterRole cluster-wide, or a (Cluster)Role in one
/// namespace.
pub enum Grant<'a> {
    ClusterRole {
        name: &'a str,
    },
    InNamespace {
        namespace: &'a str,
        role_kind: &'a str,
        role_name: &'a str,
    },
}

/// Binds `grant` to the service account `sa_namespace/sa_name` under the binding name `binding`.
/// Panics on failure: a test helper, the panic is the test's failure message.
pub async fn bind_service_account(
    admin: &Client,
    binding: &str,
    grant: Grant<'_>,
    sa_namespace: &str,
    sa_name: &str,
) {
    let subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: sa_name.into(),
        namespace: Some(sa_namespace.into()),
        ..Default::default()
    }]);
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    };
    let result = match grant {
        Grant::ClusterRole { name } => {
            let b = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(binding.into()),
                    ..Default::default()
                },
                role_ref: role_ref("ClusterRole", name),
                subjects,
            };
            Api::<ClusterRoleBinding>::all(admin.clone())
                .create(&PostParams::default(), &b)
                .await
                .map(|_| ())
        }
        Grant::InNamespace {
            namespace,
            role_kind,
            role_name,
        } => {
            let b = RoleBinding {
                metadata: ObjectMeta {
                    name: Some(binding.into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                },
                role_ref: role_ref(role_kind, role_name),
                subjects,
            };
            Api::<RoleBinding>::namespaced(admin.clone(), namespace)
                .create(&PostParams::default(), &b)
                .await
                .map(|_| ())
        }
    };
    if let Err(e) = result {
        panic!("binding {binding} for {sa_namespace}/{sa_name}: {e}");
    }
}
