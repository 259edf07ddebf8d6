/*
 * httpstatus.h - how a gRPC status looks to an HTTP client: the status
 * code (google.rpc.Code's documented HTTP mapping, as grpc-gateway and
 * Google's APIs use it) and the JSON error body
 *
 *   {"code": 5, "message": "account not found", "details": []}
 *
 * Messages come from our services, which never put internal detail in
 * them; the edge passes them on and adds nothing of its own.
 */
#ifndef ESTORE_EDGE_HTTPSTATUS_H
#define ESTORE_EDGE_HTTPSTATUS_H

#include <stddef.h>

#include "rpc/status.h"

/* HTTP status for a gRPC code: OK 200, INVALID_ARGUMENT / FAILED_PRECONDITION
 * / OUT_OF_RANGE 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
 * NOT_FOUND 404, ALREADY_EXISTS / ABORTED 409, RESOURCE_EXHAUSTED 429,
 * CANCELLED 499, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED
 * 504, anything else (UNKNOWN, INTERNAL, DATA_LOSS, unknown codes) 500. */
int edge_http_status(int code);

/* The reason phrase of the HTTP statuses the edge sends ("Not Found"),
 * "" for others. */
const char *edge_http_reason(int http_status);

/* The JSON error body for `code` and `message` (NULL = ""), malloc'd and
 * NUL-terminated with its length in *len; NULL on no memory. Invalid
 * UTF-8 in the message is replaced, never passed through. */
char *edge_error_body(int code, const char *message, size_t *len);

#endif
