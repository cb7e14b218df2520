#!/usr/bin/env bash
# Builds kube-apiserver and etcd for envtest from the Go module proxy, once per
# machine, into a cache folder keyed by version. setup-envtest cannot be used:
# it downloads prebuilt binaries from the internet, which this fleet's CI
# cannot reach. Prints the asset directory on stdout.
set -euo pipefail
K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
CACHE="${FLOTILLA_CACHE:-$HOME/.cache/flotilla}"
DIR="$CACHE/envtest/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
mkdir -p "$DIR"
log() { echo "envtest-binaries: $*" >&2; }

if [[ ! -x "$DIR/etcd" ]]; then
  log "building etcd v$ETCD_VERSION (one time per machine, about 4 min)"
  W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
  ( cd "$W" && go mod init flotilla.local/etcdbuild >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2 \
    && CGO_ENABLED=0 go build -o "$DIR/etcd.tmp" go.etcd.io/etcd/server/v3 >&2 )
  mv "$DIR/etcd.tmp" "$DIR/etcd"
  rm -rf "$W"; trap - EXIT
fi

if [[ ! -x "$DIR/kube-apiserver" ]]; then
  log "building kube-apiserver v$K8S_VERSION (one time per machine, 15-20 min on 2 cores)"
  W="$(mktemp -d)"; trap 'rm -rf "$W"' EXIT
  cd "$W"
  go mod init flotilla.local/apiserverbuild >/dev/null 2>&1
  go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" > dl.json
  GOMOD="$(python3 -c 'import json,sys; print(json.load(open("dl.json"))["GoMod"])' 2>/dev/null || sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' dl.json)"
  {
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    # Every staging module the kubernetes go.mod points at ./staging/... is
    # replaced by the same module at the matching v0 tag.
    grep -E '=>[[:space:]]*\./staging/' "$GOMOD" | awk -v v="v0.${K8S_VERSION#1.}" '{print "replace " $1 " => " $1 " " v}'
  } >> go.mod
  cat > main.go <<'GO'
package main

import _ "k8s.io/kubernetes/cmd/kube-apiserver/app"

func main() {}
GO
  go mod tidy >&2
  rm main.go
  CGO_ENABLED=0 go build -o "$DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
  mv "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
  cd /; rm -rf "$W"; trap - EXIT
fi
echo "$DIR"
