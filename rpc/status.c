/*
 * status.c - gRPC status code names, the HTTP fallback mapping, and the
 * library's error strings.
 */
#include "rpc/status.h"

#include <stdlib.h>
#include <string.h>

/* Indexed by code: the wire values are dense 0..16 and fixed by gRPC. */
static const char *const code_names[RPC_CODE_MAX + 1] = {
	[RPC_OK] = "OK",
	[RPC_CANCELLED] = "CANCELLED",
	[RPC_UNKNOWN] = "UNKNOWN",
	[RPC_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[RPC_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[RPC_NOT_FOUND] = "NOT_FOUND",
	[RPC_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[RPC_PERMISSION_DENIED] = "PERMISSION_DENIED",
	[RPC_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
	[RPC_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[RPC_ABORTED] = "ABORTED",
	[RPC_OUT_OF_RANGE] = "OUT_OF_RANGE",
	[RPC_UNIMPLEMENTED] = "UNIMPLEMENTED",
	[RPC_INTERNAL] = "INTERNAL",
	[RPC_UNAVAILABLE] = "UNAVAILABLE",
	[RPC_DATA_LOSS] = "DATA_LOSS",
	[RPC_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *rpc_code_name(int code)
{
	if (code < 0 || code > RPC_CODE_MAX)
		return "UNKNOWN";
	return code_names[code];
}

int rpc_code_from_name(const char *name, rpc_code *out)
{
	if (!name || !out)
		return RPC_ERR_INVALID;
	/* 17 entries: a linear scan beats any index we would have to keep in
	 * sync with the table. */
	for (int i = 0; i <= RPC_CODE_MAX; i++) {
		if (strcmp(name, code_names[i]) == 0) {
			*out = (rpc_code)i;
			return 0;
		}
	}
	return RPC_ERR_INVALID;
}

rpc_code rpc_code_from_http_status(int http_status)
{
	/*
	 * gRPC's http-grpc-status-mapping.md. 400 maps to INTERNAL rather than
	 * INVALID_ARGUMENT because a 400 from an intermediary means *our*
	 * request was malformed at the HTTP level, not that the application
	 * rejected its argument. 200 lands in "other": a 200 without
	 * grpc-status is a broken response, and UNKNOWN says so.
	 */
	switch (http_status) {
	case 400:
		return RPC_INTERNAL;
	case 401:
		return RPC_UNAUTHENTICATED;
	case 403:
		return RPC_PERMISSION_DENIED;
	case 404:
		return RPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return RPC_UNAVAILABLE;
	default:
		return RPC_UNKNOWN;
	}
}

void rpc_status_dispose(rpc_status *st)
{
	if (!st)
		return;
	free(st->message);
	st->message = NULL;
	st->code = RPC_OK;
}

const char *rpc_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
	case RPC_ERR_NOMEM:
		return "out of memory";
	case RPC_ERR_INVALID:
		return "invalid argument or malformed input";
	case RPC_ERR_IO:
		return "I/O error";
	case RPC_ERR_PROTO:
		return "protocol violation by peer";
	case RPC_ERR_TOO_LARGE:
		return "size limit exceeded";
	case RPC_ERR_CLOSED:
		return "closed";
	case RPC_ERR_CANCELLED:
		return "cancelled or deadline exceeded";
	case RPC_ERR_TIMEOUT:
		return "timed out";
	case RPC_ERR_RESOLVE:
		return "name resolution failed";
	case RPC_ERR_EXISTS:
		return "already exists";
	default:
		return "unknown error";
	}
}
