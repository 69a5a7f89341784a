#!/usr/bin/env bash
# Builds kube-apiserver 1.20.2 from Debian's `kubernetes` source package, once, into a cache.
# Why from source: no container engine and no downloads except Debian and npm on these machines,
# and Debian ships the source but no kube-apiserver binary. Takes ~5 minutes the first time.
set -euo pipefail

CACHE="${CINCH_CACHE:-$HOME/.cache/cinch}"
# The name carries a revision of this recipe, so a binary built by an older recipe is rebuilt.
OUT="$CACHE/bin/kube-apiserver-1.20.2-r2"
if [ -x "$OUT" ]; then echo "$OUT"; exit 0; fi

say() { echo "[build-apiserver] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
for pair in go:golang-go rsync:rsync jq:jq dpkg-source:dpkg-dev /usr/share/gocode/src/github.com/modern-go/reflect2/go_above_118.go:golang-github-modern-go-reflect2-dev; do
  { command -v "${pair%%:*}" >/dev/null || [ -e "${pair%%:*}" ]; } || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} from Debian"
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >&2
fi

# A private apt state: a deb-src list derived from the system's sources, without touching /etc.
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$CACHE/src" "$CACHE/bin"
src_list="$APT/sources.list"
: >"$src_list"
for f in /etc/apt/sources.list.d/*.sources; do
  [ -e "$f" ] || continue
  awk '/^URIs:/ {print $2}' "$f" | while read -r uri; do
    case "$uri" in *security*) continue;; esac
    echo "deb-src [trusted=yes] $uri bookworm main" >>"$src_list"
  done
done
[ -s "$src_list" ] || echo "deb-src [trusted=yes] http://deb.debian.org/debian bookworm main" >"$src_list"
sort -u -o "$src_list" "$src_list"
aptopts=(-o "Dir::Etc::SourceList=$src_list" -o "Dir::Etc::SourceParts=/dev/null"
         -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache::Archives=$APT/archives" -o "APT::Get::List-Cleanup=0")

cd "$CACHE/src"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  say "fetching Debian's kubernetes source package (step 1/3)"
  apt-get "${aptopts[@]}" update -qq >&2
  apt-get "${aptopts[@]}" source --download-only kubernetes >&2
fi
orig=$(ls kubernetes_*.orig.tar.gz | head -n1)
TREE="$CACHE/src/kubernetes-1.20.2"
if [ ! -f "$TREE/Makefile" ]; then
  say "unpacking $orig (step 2/3)"
  rm -rf "$TREE" "$CACHE/src/unpack"; mkdir -p "$CACHE/src/unpack"
  tar -xzf "$orig" -C "$CACHE/src/unpack"
  mv "$CACHE/src/unpack/"* "$TREE"; rmdir "$CACHE/src/unpack"
fi

# Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, which crashes ("fatal error: fault" in
# mapiterinit) when built with Go >= 1.18, as soon as the API server encodes a map (e.g. applying an
# admission webhook's JSONPatch). Debian ships the fixed 1.0.2; it is API-compatible, so swap it in.
REFLECT2_VENDOR="$TREE/vendor/github.com/modern-go/reflect2"
if [ ! -f "$REFLECT2_VENDOR/go_above_118.go" ]; then
  say "replacing vendored reflect2 1.0.1 with Debian's 1.0.2 (Go >= 1.18 fix)"
  find "$REFLECT2_VENDOR" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
  find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$REFLECT2_VENDOR/" \;
fi

GOPATH_DIR="$CACHE/gopath"
mkdir -p "$GOPATH_DIR/src/k8s.io"
ln -sfn "$TREE" "$GOPATH_DIR/src/k8s.io/kubernetes"
say "compiling kube-apiserver with $(go version | awk '{print $3}') (step 3/3, ~5 minutes once)"
cd "$GOPATH_DIR/src/k8s.io/kubernetes"
start=$(date +%s)
( while sleep 30; do say "still compiling… $(( $(date +%s) - start ))s"; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true' EXIT
GOPATH="$GOPATH_DIR" GO111MODULE=off GOFLAGS=-mod=vendor CGO_ENABLED=0 \
  make WHAT=cmd/kube-apiserver >&2 || GOPATH="$GOPATH_DIR" CGO_ENABLED=0 make WHAT=cmd/kube-apiserver >&2
built=$(find "$TREE/_output" -type f -name kube-apiserver -perm -u+x | head -n1)
[ -n "$built" ] || { say "build finished but no kube-apiserver binary was found"; exit 1; }
cp "$built" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
say "built $OUT in $(( $(date +%s) - start ))s"
echo "$OUT"
