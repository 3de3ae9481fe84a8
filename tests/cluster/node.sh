# Settings of the real node shared by tests/cluster/{up,node-up,node-down};
# sourced after versions.env and lib.sh. The addresses exist only in the
# cluster's own network namespace, so two clusters can use the same ones.
NODE_DIR="$CLAWORC_CLUSTER_DIR/node"
NODE_NAME=real-node
NODE_IP=10.99.0.1
NODE_VETH=claworc-node
NODE_VETH_PEER=claworc-peer
NODE_BRIDGE=claworc-br0
POD_CIDR=10.88.0.0/16
NODE_LABEL=claworc.test/node=real
NODE_TAINT_KEY=claworc.test/real-node
NODE_CGROUP="/claworc-$CLAWORC_CLUSTER_NAME"
CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
# The user in the apiserver's client certificate for the kubelet API.
APISERVER_KUBELET_CLIENT=kube-apiserver-kubelet-client
# Host-wide sysctls the kubelet sets. The values from before the first of our
# kubelets started are kept in the cache and restored when the last one stops.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
SYSCTL_SAVED="$CLAWORC_CACHE/sysctl.saved"

ctr_() { "$CLAWORC_NODE_BIN_DIR/ctr" --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# Pids of kubelets started from our bin dir, on this machine (any cluster).
our_kubelets() {
  local p
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == "$CLAWORC_NODE_BIN_DIR/kubelet" ]] && echo "${p#/proc/}"
  done
  return 0
}

save_sysctls() {
  mkdir -p "$CLAWORC_CACHE"
  (
    flock 9
    if [[ -z "$(our_kubelets)" || ! -f "$SYSCTL_SAVED" ]]; then
      for s in "${KUBELET_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$SYSCTL_SAVED"
    fi
  ) 9>"$SYSCTL_SAVED.lock"
}

restore_sysctls() { # only when no kubelet of ours runs any more
  [[ -f "$SYSCTL_SAVED" ]] || return 0
  (
    flock 9
    if [[ -z "$(our_kubelets)" && -f "$SYSCTL_SAVED" ]]; then
      while IFS='=' read -r k v; do sysctl -qw "$k=$v" || echo "node-down: could not restore $k=$v" >&2; done <"$SYSCTL_SAVED"
      rm -f "$SYSCTL_SAVED"
    fi
  ) 9>"$SYSCTL_SAVED.lock"
}

# The real node adds interfaces and mounts that must vanish with the test: only
# as root, in a network and a mount namespace other than the ones
# tests/cluster/with-cluster started from (it records them in CLAWORC_HOST_NETNS
# and CLAWORC_HOST_MNTNS before `unshare`). Fails closed: unknown means no.
# (/proc/1/ns cannot be relied on: in some sandboxes it is not readable.)
require_own_namespaces() { # prog
  local net mnt
  if ((EUID != 0)); then
    echo "$1: the real node needs root (cgroups, mounts, runc)" >&2; return 1
  fi
  net="$(readlink /proc/self/ns/net)" || net=""
  mnt="$(readlink /proc/self/ns/mnt)" || mnt=""
  if [[ -z "$net" || -z "$mnt" || -z "${CLAWORC_HOST_NETNS:-}" || -z "${CLAWORC_HOST_MNTNS:-}" ||
        "$net" == "$CLAWORC_HOST_NETNS" || "$mnt" == "$CLAWORC_HOST_MNTNS" ]]; then
    echo "$1: refusing to configure the host's network or mounts: not in namespaces of its own;" \
      "run under tests/cluster/with-cluster" >&2
    return 1
  fi
}
