/*
 * status.h - gRPC status codes and the library's own error convention.
 *
 * Two separate spaces, never mixed:
 *  - rpc_code: the gRPC status that travels on the wire (grpc-status).
 *  - RPC_ERR_*: negative return values of library functions (0 = success),
 *    described by rpc_strerror().
 */
#ifndef ESTORE_RPC_STATUS_H
#define ESTORE_RPC_STATUS_H

#include <stdbool.h>
#include <stddef.h>

typedef enum rpc_code {
	RPC_OK = 0,
	RPC_CANCELLED = 1,
	RPC_UNKNOWN = 2,
	RPC_INVALID_ARGUMENT = 3,
	RPC_DEADLINE_EXCEEDED = 4,
	RPC_NOT_FOUND = 5,
	RPC_ALREADY_EXISTS = 6,
	RPC_PERMISSION_DENIED = 7,
	RPC_RESOURCE_EXHAUSTED = 8,
	RPC_FAILED_PRECONDITION = 9,
	RPC_ABORTED = 10,
	RPC_OUT_OF_RANGE = 11,
	RPC_UNIMPLEMENTED = 12,
	RPC_INTERNAL = 13,
	RPC_UNAVAILABLE = 14,
	RPC_DATA_LOSS = 15,
	RPC_UNAUTHENTICATED = 16,
} rpc_code;

#define RPC_CODE_MAX RPC_UNAUTHENTICATED

/* Canonical upper-case name ("NOT_FOUND"); "UNKNOWN" for values out of range. */
const char *rpc_code_name(int code);

/* Parses a canonical name (case-sensitive, as printed by rpc_code_name).
 * Returns 0 and sets *out, or RPC_ERR_INVALID. */
int rpc_code_from_name(const char *name, rpc_code *out);

/* Status to report when a response carries HTTP status `http_status` and no
 * grpc-status (gRPC's "HTTP to gRPC status code mapping"). */
rpc_code rpc_code_from_http_status(int http_status);

/* A status as received by a client: code plus an optional decoded message. */
typedef struct rpc_status {
	rpc_code code;
	char *message; /* malloc'd, NUL-terminated, may be NULL */
} rpc_status;

/* Frees the message and resets to RPC_OK. Safe on a zeroed struct. */
void rpc_status_dispose(rpc_status *st);

/* Library errors: functions return 0 (or a count) on success, one of these on failure. */
enum {
	RPC_ERR_NOMEM = -1,     /* allocation failed */
	RPC_ERR_INVALID = -2,   /* bad argument or malformed input */
	RPC_ERR_IO = -3,        /* socket or system call failed */
	RPC_ERR_PROTO = -4,     /* peer violated HTTP/2 or gRPC framing */
	RPC_ERR_TOO_LARGE = -5, /* a size limit was exceeded */
	RPC_ERR_CLOSED = -6,    /* the stream or object is closed / shut down */
	RPC_ERR_CANCELLED = -7, /* the call was cancelled or its deadline passed */
	RPC_ERR_TIMEOUT = -8,   /* a timer expired */
	RPC_ERR_RESOLVE = -9,   /* name resolution failed */
	RPC_ERR_EXISTS = -10,   /* already registered */
};

/* Human-readable text for an RPC_ERR_* value; never NULL. */
const char *rpc_strerror(int err);

#endif
