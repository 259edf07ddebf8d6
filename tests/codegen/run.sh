#!/bin/sh
# run.sh - protoc-gen-estore's checks of google.api.http: http_ok.proto
# yields the expected route table, each http_bad_*.proto is refused with
# its message.
#
#   run.sh PLUGIN PROTOC GOOGLEAPIS_DIR PROTOBUF_INCLUDE
set -eu

here=$(cd "$(dirname "$0")" && pwd)
plugin=$1 protoc=$2 googleapis=$3 pb_include=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/estore-codegen.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail=0

gen() { # proto
	"$protoc" -I"$here" -I"$googleapis" -I"$pb_include" \
		--plugin=protoc-gen-estore="$plugin" --estore_out="$tmp" "$1"
}

# The accepted shapes: sub-pattern, response_body, additional_bindings
# with a body field and a custom verb; a method without the option gets
# no route.
gen http_ok.proto
out=$tmp/http_ok.rpc.c
expect() { # text
	if ! grep -qF -- "$1" "$out"; then
		echo "FAIL http_ok: missing: $1"
		fail=1
	fi
}
expect 'static const rpc_http_route codegen_test_Library_http_routes[3] = {'
expect '.pattern = "/v1/{name=shelves/*}",'
expect '.response_body = "shelf",'
expect '.pattern = "/v1/shelves/{shelf.id}:get",'
expect '.body = "shelf",'
expect '.verb = "HEAD",'
expect '.n_http_routes = 3,'
if [ "$(grep -c '\.method = &codegen_test_Library_methods\[0\]' "$out")" != 3 ]; then
	echo "FAIL http_ok: all three routes must name GetShelf"
	fail=1
fi

refused() { # name, message
	if gen "http_bad_$1.proto" >"$tmp/err" 2>&1; then
		echo "FAIL http_bad_$1: accepted"
		fail=1
	elif ! grep -qF -- "$2" "$tmp/err"; then
		echo "FAIL http_bad_$1: expected \"$2\", got:"
		cat "$tmp/err"
		fail=1
	fi
}
refused unknown_var 'the request has no field nope'
refused message_var 'shelf is not a single scalar field'
refused body_on_get 'GET /v1/x has a body'
refused bad_body 'body "nope": the request has no such field'
refused no_slash "does not start with '/'"
refused quote "unexpected '\"'"
refused bad_response_body 'response_body "nope": the reply has no such field'

[ "$fail" = 0 ] && echo "codegen http: all checks passed"
exit "$fail"
