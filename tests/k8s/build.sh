#!/usr/bin/env bash
# Builds the Kubernetes test control plane from Go modules at pinned versions (versions.env):
# kube-apiserver, kube-controller-manager, etcd, kubectl (this directory's Go module, which
# requires k8s.io/kubernetes with one replace per staging module) and helm (`go install` of its
# main package).
# Binaries go to ${HABITAT_K8S_CACHE:-$HOME/.cache/habitat-rs}/k8s-<version>/, outside the
# repository. Idempotent: a binary whose stamp (versions, Go version, go.mod/go.sum, its own cmd
# source, link flags) matches is not rebuilt, so a warm run takes well under a second. Cold, see the
# README's "Requirements" for time and disk (Go's caches then make rebuilds a matter of linking).
# Prints the directory on its last line, as HABITAT_K8S_BIN=<dir>.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

# Go's official install location, for environments whose PATH does not include it.
[[ -x /usr/local/go/bin/go ]] && PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "tests/k8s/build.sh: go is required (1.24 or newer)" >&2; exit 1; }

bin=${HABITAT_K8S_CACHE:-$HOME/.cache/habitat-rs}/k8s-$K8S_VERSION
mkdir -p "$bin"

inputs=$( { echo "$K8S_VERSION $ETCD_VERSION $HELM_VERSION $(go env GOVERSION)"; cat "$here/go.mod" "$here/go.sum"; } | sha256sum | cut -d' ' -f1)
# inputs + that binary's flags and sources (adding a command does not rebuild the others)
stamp_of() { { echo "$inputs"; cat "$@"; } | sha256sum | cut -d' ' -f1; }

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

fresh() { # name stamp
  [[ -x "$bin/$1" && -f "$bin/$1.stamp" && "$(cat "$bin/$1.stamp")" == "$2" ]]
}

build_cmd() { # name version
  local name=$1 version=$2 stamp
  stamp=$(stamp_of <(echo "$ldflags") "$here/cmd/$name/main.go")
  if fresh "$name" "$stamp"; then return; fi
  echo "tests/k8s/build.sh: building $name ($version) into $bin ..." >&2
  local start=$SECONDS
  (cd "$here" && CGO_ENABLED=0 nice -n 19 go build -mod=readonly -buildvcs=false -trimpath -ldflags "$ldflags" \
      -o "$bin/$name.tmp" "./cmd/$name")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$stamp" > "$bin/$name.stamp"
  echo "tests/k8s/build.sh: $name built in $((SECONDS - start)) s" >&2
}

build_helm() {
  # Helm's default Kubernetes version (for `helm template` and `helm lint`) is the API server's.
  local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  local stamp start=$SECONDS tmp
  stamp=$(stamp_of <(echo "$flags"))
  if fresh helm "$stamp"; then return; fi
  echo "tests/k8s/build.sh: building helm $HELM_VERSION into $bin ..." >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod nice -n 19 go install -trimpath \
      -ldflags "$flags" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
  mv "$tmp/helm" "$bin/helm"
  rm -rf "$tmp"
  echo "$stamp" > "$bin/helm.stamp"
  echo "tests/k8s/build.sh: helm built in $((SECONDS - start)) s" >&2
}

# Smallest first, so a partial cold run leaves something usable.
build_cmd etcd "$ETCD_VERSION"
build_cmd kubectl "$K8S_VERSION"
build_helm
build_cmd kube-apiserver "$K8S_VERSION"
build_cmd kube-controller-manager "$K8S_VERSION"

echo "HABITAT_K8S_BIN=$bin"
