/*
 * channel.h - gRPC client channel to one target ("host:port").
 *
 * The host is resolved by DNS (re-resolved after a connection fails, and
 * every 30 s while calls are made, so replicas added behind a name get
 * calls too) and
 * calls are spread round-robin over the addresses, each over one HTTP/2
 * connection multiplexing many streams. The channel owns one I/O thread;
 * every function here is thread-safe. Connections reconnect with
 * exponential backoff and jitter; while no address is reachable, calls
 * fail fast with UNAVAILABLE rather than waiting out their deadline.
 * Methods marked idempotent are retried after UNAVAILABLE (when nothing was
 * received yet), with backoff, within the deadline.
 */
#ifndef ESTORE_RPC_CHANNEL_H
#define ESTORE_RPC_CHANNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "rpc/metadata.h"
#include "rpc/service.h"
#include "rpc/status.h"

typedef struct rpc_channel rpc_channel;
struct rpc_loop;

typedef struct rpc_channel_config {
	int connect_timeout_ms;     /* default 5000 */
	int backoff_initial_ms;     /* default 200 */
	int backoff_max_ms;         /* default 30000 */
	double backoff_multiplier;  /* default 1.6 */
	double backoff_jitter;      /* default 0.2 (±20 %) */
	int max_retries;            /* idempotent methods, default 3 */
	uint32_t max_recv_msg;      /* default 4 MiB */
	long long default_timeout_ms; /* used when a call sets none; 0 = none */
} rpc_channel_config;

void rpc_channel_config_defaults(rpc_channel_config *cfg);

/* Creates the channel and its thread; connects lazily on the first call.
 * `target` is "host:port" or "[v6addr]:port". NULL on bad target or no
 * memory. cfg may be NULL for defaults. */
rpc_channel *rpc_channel_new(const char *target, const rpc_channel_config *cfg);

/* The same, run on `loop` (an rpc_loop of the caller's, running or not
 * yet started) instead of a thread of its own: a program whose event
 * loop makes the calls and takes their callbacks (the edge's HTTP
 * threads) then crosses no thread per call. The loop must outlive the
 * channel; the channel's timers and sockets are on it. NULL as for
 * rpc_channel_new, or when loop is NULL. */
rpc_channel *rpc_channel_new_on_loop(const char *target,
				     const rpc_channel_config *cfg,
				     struct rpc_loop *loop);

/* Fails outstanding calls with CANCELLED, closes connections, joins the
 * thread (on a caller's loop: waits until that loop ran the shutdown, or
 * does it here when the loop runs no more). rpc_channel_free(NULL) is a
 * no-op. */
void rpc_channel_free(rpc_channel *ch);

typedef struct rpc_call_opts {
	long long timeout_ms;          /* 0 = channel default */
	long long deadline_ns;         /* absolute (rpc_now_ns clock); wins over
					  timeout_ms when set (deadline propagation) */
	const rpc_metadata *metadata;  /* request metadata, may be NULL */
	rpc_metadata *headers_out;     /* receives response headers, may be NULL */
	rpc_metadata *trailers_out;    /* receives response trailers, may be NULL */
} rpc_call_opts;

/*
 * Blocking unary call (for worker threads; never call it on the channel's
 * own thread). On RPC_OK *resp is the decoded reply, to free with
 * protobuf_c_message_free_unpacked(*resp, NULL); on any other code *resp
 * is NULL. `status` (may be NULL) receives the code and message.
 */
rpc_code rpc_channel_call(rpc_channel *ch, const rpc_method_desc *m,
			  const rpc_call_opts *opts,
			  const ProtobufCMessage *req, ProtobufCMessage **resp,
			  rpc_status *status);

/* Completion of an async unary call. Runs on the channel's thread: do not
 * block in it. `resp` (NULL unless code is RPC_OK) belongs to the callback:
 * free it with protobuf_c_message_free_unpacked. `message` is only valid
 * during the call. */
typedef void (*rpc_unary_done)(void *user, rpc_code code,
			       const char *message, ProtobufCMessage *resp);

/* Starts an async unary call; `req` is encoded before this returns.
 * Returns 0 and later calls `done` exactly once, or returns an RPC_ERR_*
 * and never calls it. */
int rpc_channel_call_async(rpc_channel *ch, const rpc_method_desc *m,
			   const rpc_call_opts *opts,
			   const ProtobufCMessage *req, rpc_unary_done done,
			   void *user);

/* ---- blocking streaming calls --------------------------------------- */

typedef struct rpc_client_stream rpc_client_stream;

/* Opens a call of any kind. NULL on no memory; connection errors surface
 * from the first send/recv/finish. */
rpc_client_stream *rpc_channel_open(rpc_channel *ch, const rpc_method_desc *m,
				    const rpc_call_opts *opts);

/* Sends one request. Returns 0, RPC_ERR_CLOSED (call already ended: see
 * rpc_client_stream_finish), or RPC_ERR_NOMEM. */
int rpc_client_stream_send(rpc_client_stream *s, const ProtobufCMessage *msg);

/* Half-closes: no more requests. Returns 0 or RPC_ERR_CLOSED. */
int rpc_client_stream_close_send(rpc_client_stream *s);

/* Waits for the next reply: 1 with *msg set (free with
 * protobuf_c_message_free_unpacked), 0 when the server finished (then call
 * finish for the status), or RPC_ERR_CLOSED when the call failed. */
int rpc_client_stream_recv(rpc_client_stream *s, ProtobufCMessage **msg);

/* Waits for the final status, discarding unread replies, and frees the
 * stream. Cancels the call (RST_STREAM CANCEL) only if it has not ended. */
rpc_code rpc_client_stream_finish(rpc_client_stream *s, rpc_status *status);

#endif
