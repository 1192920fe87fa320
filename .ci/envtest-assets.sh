#!/usr/bin/env bash
# Builds the two programs that controller-runtime's envtest starts, etcd and
# kube-apiserver, from source fetched through the Go module proxy, and keeps
# them in a cache outside the repository, once per machine:
#
#   ${STEPFLOW_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepflow-envtest}/k8s-<version>-etcd-<version>/
#
# The last (and only) line on stdout is the absolute path of that directory,
# to be used as KUBEBUILDER_ASSETS:
#
#   export KUBEBUILDER_ASSETS="$(bash .ci/envtest-assets.sh)"
#
# Progress goes to stderr. When both binaries are there the script only
# prints the path; otherwise it builds them (about ten minutes on two cores)
# into a temporary directory and renames it into place, so that an
# interrupted build never leaves a half-filled directory behind.
#
# Why not setup-envtest: it downloads prebuilt binaries from hosts that the
# machines of this project cannot reach; the module proxy they can.
#
# The versions are pinned here and, for the tests that look in the cache by
# themselves, in kube/kubetest (TestVersionsMatchScript checks that both
# agree).
set -euo pipefail

K8S_VERSION=1.37.2
ETCD_VERSION=3.7.3

cache_root="${STEPFLOW_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepflow-envtest}"
dir="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"

if [[ -x "$dir/etcd" && -x "$dir/kube-apiserver" ]]; then
  cd "$dir" && pwd -P
  exit 0
fi

log() { echo "envtest-assets: $*" >&2; }

mkdir -p "$cache_root"
cache_root="$(cd "$cache_root" && pwd -P)"
dir="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
# The build directory sits next to its destination, so the final rename is
# within one file system and atomic.
work="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"

# Throwaway modules outside any workspace; -mod=mod lets `go build` record
# in them whatever requirements and sums the build needs.
export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0

# etcd. The repository's root module (go.etcd.io/etcd/v3), which holds the
# upstream main package, is not published for 3.7, so this main is the
# upstream one's body: etcdmain.Main(os.Args).
log "building etcd v$ETCD_VERSION"
start=$SECONDS
mkdir "$work/etcd"
(
  cd "$work/etcd"
  cat >go.mod <<EOF
module stepflow.local/envtest/etcd

go 1.26

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
EOF
  cat >main.go <<'EOF'
// Command etcd is etcd's own main, for envtest.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  go build -trimpath -ldflags='-s -w' -o "$work/bin/etcd" . >&2
)
log "etcd built in $((SECONDS - start))s"

# kube-apiserver. k8s.io/kubernetes requires its staging modules (k8s.io/api,
# k8s.io/apiserver, ...) at v0.0.0 and replaces them with ./staging paths,
# which a dependency's replace directives cannot do. The throwaway module
# replaces each of them with its published release, v0.<minor>.<patch>.
log "building kube-apiserver v$K8S_VERSION"
start=$SECONDS
mkdir "$work/kube-apiserver"
(
  cd "$work/kube-apiserver"
  kmod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kmod")"
  if [[ -z "$staging" ]]; then
    log "no staging modules found in $kmod"
    exit 1
  fi
  {
    echo "module stepflow.local/envtest/kube-apiserver"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    echo "replace ("
    for m in $staging; do
      echo "	$m => $m v0.${K8S_VERSION#*.}"
    done
    echo ")"
  } >go.mod
  # The version the server reports (discovery, /version) and from which it
  # derives its emulation version; the upstream build sets the same.
  v="k8s.io/component-base/version"
  ldflags="-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=${K8S_VERSION%%.*}"
  ldflags+=" -X $v.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2) -X $v.gitTreeState=clean"
  go build -trimpath -ldflags="$ldflags" -o "$work/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
)
log "kube-apiserver built in $((SECONDS - start))s"

"$work/bin/etcd" --version >&2
"$work/bin/kube-apiserver" --version >&2

# Another run may have finished first; its binaries are as good as these.
if ! mv -T "$work/bin" "$dir" 2>/dev/null; then
  if [[ ! -x "$dir/etcd" || ! -x "$dir/kube-apiserver" ]]; then
    rm -rf "$dir"
    mv -T "$work/bin" "$dir"
  fi
fi
echo "$dir"
