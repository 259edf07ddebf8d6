/*
 * server_private.h - the call object shared by server.c (I/O side) and
 * the worker side (handler API). Not part of the public API.
 *
 * Ownership: a call is reference-counted. The I/O thread holds one
 * reference while the HTTP/2 stream exists, a worker holds one while the
 * handler runs, and every task posted to the I/O thread holds one. Fields
 * marked [io] are touched only on the connection's I/O thread; [lock] only
 * under call->lock; [worker] only by the thread running the handler.
 */
#ifndef ESTORE_RPC_SERVER_PRIVATE_H
#define ESTORE_RPC_SERVER_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rpc/arena.h"
#include "rpc/codec.h"
#include "rpc/metadata.h"
#include "rpc/server.h"

struct conn;
struct rpc_loop;

/* One framed message (prefix + payload) in a queue. */
struct msgbuf {
	struct msgbuf *next;
	size_t len;
	uint8_t data[];
};

struct reg_method {
	const rpc_service_desc *svc;
	const rpc_method_desc *desc;
	void (*impl)(void);
	void *user;
	bool inline_ok;                         /* runs on the I/O thread */
	struct rpc_method_stats *stats;         /* owned; survives rehashing */
};

struct rpc_stream {
	struct rpc_ctx *ctx;
};

struct rpc_ctx {
	atomic_int refs;
	rpc_server *srv;
	struct rpc_loop *loop;
	const struct reg_method *method;        /* NULL until routed */
	rpc_arena *arena;
	rpc_stream stream;
	struct rpc_ctx *next_job;               /* worker queue link */

	/* [io] */
	struct conn *conn;                      /* NULL once the stream closed */
	int32_t stream_id;
	struct rpc_ctx *conn_prev, *conn_next;  /* conn's call list */
	struct event *deadline_ev;
	rpc_msg_reader reader;
	size_t header_bytes;
	char *path;
	char *encoding;
	bool is_post, grpc_content_type, seen_content_type;
	bool headers_too_large, bad_timeout;
	bool dispatched;                        /* handed to the pool */
	bool on_io;                             /* handler running inline */
	bool finished_io;                       /* final status submitted */
	bool counted;                           /* in the metrics already */
	bool headers_sent;
	bool data_deferred;
	bool notify_posted;                     /* [lock] a ready task is queued */
	unsigned n_msgs_in;

	/* Read by the handler thread after dispatch, written before. */
	rpc_metadata md_in;
	rpc_identity identity;                  /* valid when has_identity */
	bool has_identity;
	long long deadline;                     /* rpc_now_ns clock, 0 = none */
	long long start_ns;                     /* for the latency metric */
	char peer[64];

	/* [lock] */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct msgbuf *in_head, *in_tail;
	size_t in_bytes;
	bool in_closed;                         /* client finished sending */
	struct msgbuf *out_head, *out_tail;
	size_t out_bytes, out_off;              /* out_off: sent part of head */
	bool handler_done;
	bool headers_committed;                 /* header metadata frozen */
	rpc_code status;
	char *status_msg;                       /* arena, or abort_msg */
	char abort_msg[160];
	rpc_metadata hdr_out, trl_out;

	atomic_bool cancelled;
};

#endif
