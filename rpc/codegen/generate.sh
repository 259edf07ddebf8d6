#!/bin/sh
# generate.sh - regenerate everything derived from the .proto files.
#
#   generate.sh --plugin PATH [--protoc PATH] [--protoc-c PATH] [--check] [OUTDIR]
#
# Runs protoc-c (--c_out) and protoc with protoc-gen-estore (--estore_out)
# over every .proto under proto/ plus the gRPC health and reflection protos,
# in ONE protoc run: the plugin decides between <file>.rpc.* (generated) and
# <file>.desc.* (imported only) from the run's file list, so splitting the
# run would change its output. Imported files that are not ours (e.g.
# google/protobuf/timestamp.proto) also get protoc-c code, so their message
# types link.
#
# OUTDIR defaults to generated/ in the repository. Only changed files are
# rewritten (unchanged ones keep their mtime, so builds stay incremental),
# and stale *.pb-c.[ch], *.rpc.[ch], *.desc.[ch] files are removed; other
# files in OUTDIR are left alone.
#
# --check writes nothing: it generates into a temporary directory, prints a
# diff of every difference and exits 1 when OUTDIR is not up to date.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
protoc=${PROTOC:-protoc}
protoc_c=${PROTOC_C:-protoc-c}
plugin=${PROTOC_GEN_ESTORE:-}
grpc_proto=${GRPC_PROTO_DIR:-/usr/share/grpc-proto}
googleapis=${GOOGLEAPIS_DIR:-/usr/share/gocode/src/github.com/gogo/googleapis}
pb_include=${PROTOBUF_INCLUDE:-/usr/include}
check=0
out=

while [ $# -gt 0 ]; do
	case $1 in
	--plugin) plugin=$2; shift 2 ;;
	--protoc) protoc=$2; shift 2 ;;
	--protoc-c) protoc_c=$2; shift 2 ;;
	--check) check=1; shift ;;
	-h|--help) sed -n '2,22p' "$0"; exit 0 ;;
	-*) echo "generate.sh: unknown option $1" >&2; exit 2 ;;
	*) out=$1; shift ;;
	esac
done
out=${out:-$root/generated}
if [ -z "$plugin" ] || [ ! -x "$plugin" ]; then
	echo "generate.sh: --plugin must name the built protoc-gen-estore" \
	     "(cmake --build <dir> --target protoc-gen-estore)" >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/estore-gen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Sorted so the run (and protoc's file order) is the same on every machine.
protos=$(cd "$root/proto" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
protos="$protos
grpc/health/v1/health.proto
grpc/reflection/v1/reflection.proto
grpc/reflection/v1alpha/reflection.proto"

mkdir -p "$tmp/gen"
# shellcheck disable=SC2086 # the list is words without spaces by construction
"$protoc_c" -I"$root/proto" -I"$grpc_proto" -I"$googleapis" -I"$pb_include" \
	--c_out="$tmp/gen" $protos
# shellcheck disable=SC2086
"$protoc" -I"$root/proto" -I"$grpc_proto" -I"$googleapis" -I"$pb_include" \
	--plugin=protoc-gen-estore="$plugin" --estore_out="$tmp/gen" $protos

imported=$(cd "$tmp/gen" && find . -name '*.desc.h' | sed 's|^\./||; s|\.desc\.h$|.proto|' | LC_ALL=C sort)
if [ -n "$imported" ]; then
	# shellcheck disable=SC2086
	"$protoc_c" -I"$root/proto" -I"$grpc_proto" -I"$googleapis" -I"$pb_include" \
		--c_out="$tmp/gen" $imported
fi

# protoc-c names a service's function-pointer members after its methods
# without escaping C keywords, so an RPC named Register yields
# `void (*register)(...)`, which no compiler accepts. Rename such members
# (and the matching INIT macro argument) with a trailing underscore, the
# same C name protoc-gen-estore gives the method.
keywords='auto|break|case|char|const|continue|default|do|double|else|enum|extern|float|for|goto|if|inline|int|long|register|restrict|return|short|signed|sizeof|static|struct|switch|typedef|union|unsigned|void|volatile|while'
find "$tmp/gen" -name '*.pb-c.[ch]' -exec sed -E -i \
	-e "s/\(\*($keywords)\)\(/(*\1_)(/" \
	-e "s/(function_prefix__ ## )($keywords)([, ])/\1\2_\3/" {} +

# Files this script owns in OUTDIR (relative paths, sorted).
owned() {
	[ -d "$1" ] || return 0
	(cd "$1" && find . -type f \( -name '*.pb-c.[ch]' -o -name '*.rpc.[ch]' \
		-o -name '*.desc.[ch]' -o -path ./openapi.json \) | sed 's|^\./||' | LC_ALL=C sort)
}

owned "$tmp/gen" >"$tmp/new.list"
owned "$out" >"$tmp/old.list"

if [ "$check" = 1 ]; then
	stale=0
	while read -r f; do
		if [ ! -f "$out/$f" ]; then
			echo "missing: $f"
			stale=1
		elif ! cmp -s "$tmp/gen/$f" "$out/$f"; then
			diff -u "$out/$f" "$tmp/gen/$f" | sed "1,2s|$tmp/gen/|(fresh) |" || true
			stale=1
		fi
	done <"$tmp/new.list"
	for f in $(LC_ALL=C comm -13 "$tmp/new.list" "$tmp/old.list"); do
		echo "no longer generated: $f"
		stale=1
	done
	if [ "$stale" = 1 ]; then
		echo "$out is out of date with proto/ or the code generators:" \
		     "run 'cmake --build <builddir> --target generate' and commit the result." >&2
		exit 1
	fi
	echo "$out is up to date ($(wc -l <"$tmp/new.list") files)"
	exit 0
fi

while read -r f; do
	if ! cmp -s "$tmp/gen/$f" "$out/$f" 2>/dev/null; then
		mkdir -p "$(dirname "$out/$f")"
		cp "$tmp/gen/$f" "$out/$f"
		echo "wrote $f"
	fi
done <"$tmp/new.list"
for f in $(LC_ALL=C comm -13 "$tmp/new.list" "$tmp/old.list"); do
	rm -f "$out/$f"
	echo "removed $f"
done
find "$out" -mindepth 1 -type d -empty -delete
