# Shared settings for tests/cluster/{build,up,down}; sourced after versions.env.
CLAWORC_CACHE="${CLAWORC_CACHE:-$HOME/.cache/claworc}"
CLAWORC_BIN_DIR="$CLAWORC_CACHE/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
# The real node's binaries (kubelet, containerd, CNI plugins): a cache of their own,
# so the control plane's stays valid when these versions change.
CLAWORC_NODE_BIN_DIR="$CLAWORC_CACHE/node-k8s-$KUBERNETES_VERSION-containerd-$CONTAINERD_VERSION-cni-$CNI_PLUGINS_VERSION/bin"
CLAWORC_IMAGE_DIR="$CLAWORC_CACHE/images"
# kubectl-krew (krew as kubectl runs it): a cache of its own, keyed by its version.
CLAWORC_KREW_BIN_DIR="$CLAWORC_CACHE/krew-$KREW_VERSION/bin"
# kube-network-policies, patched: its name carries the version and the patch's hash.
KNP_BIN="$CLAWORC_NODE_BIN_DIR/kube-network-policies-$KUBE_NETWORK_POLICIES_VERSION-$(cat "$(dirname "${BASH_SOURCE[0]}")"/patches/kube-network-policies-*.patch | sha256sum | cut -c1-12)"
CLAWORC_CLUSTER_DIR="${CLAWORC_CLUSTER_DIR:-$CLAWORC_CACHE/cluster}"
CLAWORC_CLUSTER_NAME="${CLAWORC_CLUSTER_NAME:-claworc}"
export CLAWORC_CACHE CLAWORC_BIN_DIR CLAWORC_NODE_BIN_DIR CLAWORC_IMAGE_DIR CLAWORC_KREW_BIN_DIR KNP_BIN CLAWORC_CLUSTER_DIR CLAWORC_CLUSTER_NAME
PATH="$CLAWORC_BIN_DIR:$CLAWORC_KREW_BIN_DIR:$PATH"
