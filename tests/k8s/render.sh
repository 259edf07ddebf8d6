#!/usr/bin/env bash
# render.sh KUBECTL OVERLAY OUT: renders k8s/overlays/OVERLAY into OUT with
# `kubectl kustomize`, in a scratch copy of k8s/ whose secret files are
# throwaway ones: secrets.env gets every key of secrets.env.example with a
# random value, and a fresh ES256 key stands in for the signing key. The
# deployer's own secret files, if any, are neither copied nor read.
set -euo pipefail
kubectl=$1 overlay=$2 out=$3
if ! command -v "$kubectl" >/dev/null; then
	echo "render.sh: no kubectl ($kubectl); ./estore deps installs Debian's kubernetes-client" >&2
	exit 1
fi
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../k8s" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$src" --exclude=./base/secrets.env --exclude=./base/token-signing-key.pem -cf - . |
	tar -C "$work" -xf -
(
	umask 077
	sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' "$src/base/secrets.env.example" |
		while read -r key; do printf '%s=%s\n' "$key" "$(openssl rand -hex 16)"; done \
		>"$work/base/secrets.env"
	openssl ecparam -name prime256v1 -genkey -noout |
		openssl pkcs8 -topk8 -nocrypt -out "$work/base/token-signing-key.pem"
)
[ -s "$work/base/secrets.env" ] || { echo "render.sh: no keys in secrets.env.example" >&2; exit 1; }
rm -f "$out"
mkdir -p "$(dirname "$out")"
"$kubectl" kustomize "$work/overlays/$overlay" >"$out.tmp"
[ -s "$out.tmp" ] || { echo "render.sh: kubectl kustomize rendered nothing" >&2; exit 1; }
mv "$out.tmp" "$out"
echo "render.sh: $overlay: $(grep -c '^kind:' "$out") objects in $out"
