/*
 * echo_service.h - estore.testing.v1.Echo, the service every RPC test and
 * benchmark talks to (proto/estore/testing/v1/echo.proto).
 *
 * Behaviour, per method:
 *
 *  UnaryEcho    replies with the request's message and payload. Control
 *               fields are honoured in this order: validation, sleep_ms
 *               (woken early by cancellation or the deadline), status_code
 *               (the call ends with that code and status_message instead of
 *               a reply), reply_bytes (the reply payload is that many bytes,
 *               byte i = i % 251, instead of the echo).
 *  ServerStream sends `count` replies (index 0..count-1, message echoed,
 *               payload of reply_bytes bytes as above), interval_ms apart,
 *               stopping early when the call is cancelled; then ends with
 *               status_code/status_message when status_code is non-zero.
 *  ClientStream concatenates the message and payload of every request and
 *               replies once with index = number of requests received.
 *               Control fields of the requests are ignored.
 *  BidiStream   answers each request in order exactly as UnaryEcho would
 *               (index = position in the stream); a request with a non-zero
 *               status_code ends the call with that status.
 *
 * Every method copies each incoming metadata entry whose key starts with
 * "echo-" (binary "-bin" keys included) to the response headers and to the
 * trailers, so clients can check metadata in both directions.
 *
 * Invalid control fields end the call with INVALID_ARGUMENT: negative
 * count, sleep_ms, interval_ms or reply_bytes; reply_bytes over 16 MiB;
 * count over ECHO_MAX_COUNT; status_code outside 0..16. ClientStream
 * gives RESOURCE_EXHAUSTED when the joined reply would pass 16 MiB.
 *
 * Every reply field points into the call's arena or into a request that
 * outlives the send, so nothing is leaked and nothing is freed twice.
 */
#ifndef ESTORE_TESTS_ECHO_SERVICE_H
#define ESTORE_TESTS_ECHO_SERVICE_H

#include "rpc/server.h"

/* Largest reply_bytes accepted (the server's send limit, 4 MiB by default,
 * still applies on top of it and gives RESOURCE_EXHAUSTED). */
#define ECHO_MAX_REPLY_BYTES (16 * 1024 * 1024)

/* Largest ServerStream count accepted. */
#define ECHO_MAX_COUNT 1000000

/* Registers the four Echo methods on srv (before rpc_server_start), with
 * UnaryEcho inline (rpc_server_set_inline: answered on the I/O thread
 * unless it has to sleep or handle more than 256 KiB). Returns 0,
 * RPC_ERR_EXISTS, RPC_ERR_NOMEM or RPC_ERR_INVALID. */
int echo_service_register(rpc_server *srv);

#endif
