//! Names fixed by the contract (../shared/DESIGN.md). Never spell these out elsewhere.

/// Prefix of every claworc label and annotation key.
pub const PREFIX: &str = "claworc.io/";

/// Opt-in label on the Deployment; the webhook configurations select on it.
pub const LABEL_SSH: &str = "claworc.io/ssh";
/// The only value of [`LABEL_SSH`] that opts in.
pub const SSH_ENABLED: &str = "enabled";
/// Pod template label: the instance (Deployment) name.
pub const LABEL_INSTANCE: &str = "claworc.io/instance";
/// Pod template label: the network profile read by the shipped NetworkPolicies.
pub const LABEL_EGRESS: &str = "claworc.io/egress";
/// Pod template label `app.kubernetes.io/managed-by`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "claworc";
/// Namespace label that marks a tenant namespace made by `kubectl claworc tenant create`.
pub const LABEL_TENANT: &str = "claworc.io/tenant";

/// Pod template annotation written by the webhook: its version.
pub const ANNOTATION_INJECTED: &str = "claworc.io/injected";

/// Pod template annotation written by the webhook: the `known_hosts` content,
/// projected into every container through a downward API volume.
pub const ANNOTATION_KNOWN_HOSTS_DATA: &str = "claworc.io/known-hosts-data";

/// Name of the injected SSH sidecar (a native sidecar init container). It runs
/// `claworc-sshd` in the target container's image.
pub const SIDECAR: &str = "claworc-sshd";
/// Name of the init container that delivers the `claworc-sshd` binary from
/// [`SIDECAR_IMAGE`] into the [`VOLUME_RUN`] volume, before the sidecar starts.
pub const INSTALLER: &str = "claworc-sshd-install";
/// Default image holding the static `claworc-sshd` binary (and nothing else) at
/// [`IMAGE_BINARY`]; the webhook's `--sidecar-image` overrides it.
pub const SIDECAR_IMAGE: &str = "ghcr.io/claworc/sshd:0.2.0";
/// Where the binary lies in [`SIDECAR_IMAGE`].
pub const IMAGE_BINARY: &str = "/claworc-sshd";

/// Keys of the instance Secret.
pub const SECRET_AUTHORIZED_KEYS: &str = "authorized_keys";
pub const SECRET_HOST_KEY: &str = "ssh_host_ed25519_key";
pub const SECRET_HOST_KEY_PUB: &str = "ssh_host_ed25519_key.pub";
/// Key of the user ConfigMap named by `claworc.io/known-hosts-configmap`.
pub const CONFIGMAP_KNOWN_HOSTS: &str = "known_hosts";

/// Prefix of every volume claworc adds; workload volumes may not use it.
pub const VOLUME_PREFIX: &str = "claworc-";
/// Volumes added to the pod.
pub const VOLUME_KEYS: &str = "claworc-ssh-keys";
/// The delivered binary (an emptyDir the installer writes, read-only in the sidecar).
pub const VOLUME_RUN: &str = "claworc-run";
/// The SSH user's home when the target container has no home volume (an emptyDir).
pub const VOLUME_HOME: &str = "claworc-home";
/// An empty read-only directory over the ServiceAccount token path in the sidecar.
pub const VOLUME_NO_TOKEN: &str = "claworc-no-token";
pub const VOLUME_KNOWN_HOSTS: &str = "claworc-known-hosts";
pub const VOLUME_KNOWN_HOSTS_USER: &str = "claworc-known-hosts-user";

/// Where the Secret is mounted in the sidecar (read-only).
pub const KEYS_DIR: &str = "/etc/claworc/ssh";
/// Where [`VOLUME_RUN`] is mounted (read-only in the sidecar): the delivered binary.
pub const RUN_DIR: &str = "/run/claworc";
/// The delivered `claworc-sshd` binary, the sidecar's command.
pub const SSHD_BINARY: &str = "/run/claworc/claworc-sshd";
/// `$HOME` of SSH sessions when the target container has no home volume:
/// where [`VOLUME_HOME`] is mounted.
pub const HOME_DIR: &str = "/home/claworc";
/// The name of a volume that is the instance's home (`kubectl claworc create --volume home=PATH:SIZE`).
pub const HOME_VOLUME: &str = "home";
/// Where the kubelet mounts a pod's ServiceAccount token; the sidecar gets an
/// empty directory there instead.
pub const SERVICE_ACCOUNT_TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Where `known_hosts` is mounted in every container.
pub const KNOWN_HOSTS_PATH: &str = "/etc/ssh/ssh_known_hosts";
/// Environment variable carrying the rendered claworc-sshd config into the sidecar.
pub const ENV_SSHD_CONFIG: &str = "CLAWORC_SSHD_CONFIG";
/// Where the user ConfigMap's `known_hosts` is mounted: OpenSSH's second default
/// global known-hosts file, so plain `ssh` and git read both without options.
pub const KNOWN_HOSTS2_PATH: &str = "/etc/ssh/ssh_known_hosts2";
/// Environment variable set in every container so outbound git checks host keys.
pub const ENV_GIT_SSH_COMMAND: &str = "GIT_SSH_COMMAND";
/// The login name claworc-sshd accepts, whatever the UID it runs as.
pub const SSH_USER: &str = "claworc";

/// The port name of the sidecar's ssh port.
pub const SSH_PORT_NAME: &str = "claworc-ssh";

/// Namespaces the webhook never sees (besides its own).
pub const EXCLUDED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];
/// The webhook's own namespace in `manifests/`.
pub const WEBHOOK_NAMESPACE: &str = "claworc-system";

/// Default name of an instance's Secret.
pub fn default_secret_name(instance: &str) -> String {
    format!("{instance}-ssh")
}

/// Annotation on a tenant's ServiceAccount: the issue and expiry times of the
/// kubeconfig tokens issued for it (JSON), written by `tenant create|kubeconfig`.
pub const ANNOTATION_TENANT_TOKENS: &str = "claworc.io/kubeconfig-tokens";
/// The cluster-scoped ValidatingAdmissionPolicies (each with a binding of the same
/// name) that `tenant create` installs once and binds to every tenant namespace:
/// no LoadBalancer, NodePort or externalIPs Services ...
pub const TENANT_SERVICES_POLICY: &str = "claworc-tenant-services";
/// ... and no Secrets the cluster would fill with a never-expiring token.
pub const TENANT_SECRETS_POLICY: &str = "claworc-tenant-secrets";
/// The guard policy that makes a tenant's Events name their author (events.k8s.io).
pub const TENANT_EVENTS_POLICY: &str = "claworc-tenant-events";
