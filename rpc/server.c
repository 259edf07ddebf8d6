/*
 * server.c - gRPC server on nghttp2 and libevent.
 *
 * Request flow:
 *   acceptor loop: accept() → hand the fd to an I/O loop (round-robin)
 *   I/O loop:      read() → nghttp2_session_mem_recv → callbacks build the
 *                  call (headers, metadata, deadline) and frame messages
 *                  → route → dispatch to the worker pool
 *   worker:        decode → handler → encode → queue reply + status,
 *                  post a "ready" task to the call's I/O loop
 *   I/O loop:      submit response/DATA/trailers → nghttp2_session_mem_send
 *                  collected into one buffer → one write() per loop pass
 *
 * The HTTP/2 core never does I/O itself (mem_recv/mem_send), so every
 * socket operation is in this file's conn_* functions.
 */
#include "rpc/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <nghttp2/nghttp2.h>

#include "rpc/codec.h"
#include "rpc/log.h"
#include "rpc/loop.h"
#include "rpc/metrics.h"
#include "rpc/percent.h"
#include "rpc/reflection.h"
#include "rpc/server_private.h"
#include "rpc/timeout.h"
#include "rpc/wirecheck.h"

#define LOG_COMPONENT "rpc.server"
#define MAX_LISTENERS 8
/* Output collected from nghttp2 before one write(); beyond it we stop
 * asking nghttp2 for frames until the socket drains. */
#define OUTBUF_FLUSH 65536
#define READ_CHUNK 65536
#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW (16 << 20)

struct listener {
	int fd;
	int port;
	struct evconnlistener *ev;
};

struct io_thread {
	rpc_server *srv;
	rpc_loop *loop;
	struct conn *conns;           /* list of open connections */
	struct conn *dirty;           /* connections with output to flush */
	struct event *flush_ev;
	struct event *tick_ev;
	uint8_t *readbuf;
};

struct conn {
	struct io_thread *io;
	struct conn *prev, *next;     /* io->conns */
	struct conn *next_dirty;
	bool in_dirty;
	int fd;
	struct event *rev, *wev;
	nghttp2_session *h2;
	struct rpc_ctx *calls;        /* calls whose stream is open */
	unsigned open_streams;
	char peer[64];
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	long long accepted_at, last_activity, headers_since, settings_sent_at;
	bool preface_seen;
	bool settings_acked;
	bool goaway_sent;
	bool closing;                 /* close once output is flushed */
	bool dead;                    /* socket failed: close now */
};

struct job_queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rpc_ctx *head, *tail;
	bool stop;
};

/* Per method: how its calls ended, and how long they took. */
struct rpc_method_stats {
	_Atomic uint64_t by_code[RPC_CODE_MAX + 1];
	rpc_latency latency;
};

struct rpc_server {
	rpc_server_config cfg;
	struct listener listeners[MAX_LISTENERS];
	int n_listeners;
	rpc_loop *accept_loop;
	struct io_thread *io;
	int n_io;
	atomic_uint next_io;
	pthread_t *workers;
	int n_workers;
	struct job_queue jobs;

	struct reg_method *methods;   /* open-addressing table by path */
	size_t methods_cap;           /* power of two */
	size_t n_methods;
	const rpc_service_desc **services;
	size_t n_services, services_cap;

	rpc_health *health;
	rpc_authenticator authenticator;
	void *authenticator_user;
	bool started;

	pthread_mutex_t state_lock;
	pthread_cond_t state_cond;
	bool shutting_down;
	bool stopped;
	bool forced;                  /* drain timeout cancelled calls */
	int open_conns;
	struct event *drain_ev;

	/* Calls to a path no method serves, by the code they got. */
	_Atomic uint64_t unrouted[RPC_CODE_MAX + 1];
	_Atomic long calls_in_flight;
};

static void conn_mark_dirty(struct conn *c);
static void conn_finish(struct conn *c);
static void call_submit_ready(struct rpc_ctx *call);
static void server_note_conn_closed(rpc_server *srv);

/* ------------------------------------------------------------------ */
/* configuration                                                       */

void rpc_server_config_defaults(rpc_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->io_threads = 2;
	cfg->workers = 16;
	cfg->max_recv_msg = RPC_DEFAULT_MAX_MSG;
	cfg->max_send_msg = RPC_DEFAULT_MAX_MSG;
	cfg->max_concurrent_streams = 100;
	cfg->max_header_list = 16 * 1024;
	cfg->settings_ack_timeout_ms = 10000;
	cfg->header_timeout_ms = 10000;
	cfg->idle_timeout_ms = 300000;
	cfg->drain_timeout_ms = 30000;
	cfg->max_queued_bytes = 8u << 20;
}

/* ------------------------------------------------------------------ */
/* calls                                                               */

/* Timed waits use CLOCK_MONOTONIC deadlines (see abs_timespec). */
static void cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

static struct rpc_ctx *call_new(struct conn *c, int32_t stream_id)
{
	struct rpc_ctx *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	call->arena = rpc_arena_new(4096);
	if (!call->arena) {
		free(call);
		return NULL;
	}
	atomic_init(&call->refs, 1);
	atomic_init(&call->cancelled, false);
	call->srv = c->io->srv;
	call->loop = c->io->loop;
	call->conn = c;
	call->stream_id = stream_id;
	call->stream.ctx = call;
	call->status = RPC_OK;
	call->start_ns = rpc_now_ns();
	atomic_fetch_add_explicit(&call->srv->calls_in_flight, 1, memory_order_relaxed);
	rpc_msg_reader_init(&call->reader, call->srv->cfg.max_recv_msg);
	rpc_metadata_init(&call->md_in);
	rpc_metadata_init(&call->hdr_out);
	rpc_metadata_init(&call->trl_out);
	pthread_mutex_init(&call->lock, NULL);
	cond_init_monotonic(&call->cond);
	snprintf(call->peer, sizeof(call->peer), "%s", c->peer);
	return call;
}

static void call_ref(struct rpc_ctx *call)
{
	atomic_fetch_add_explicit(&call->refs, 1, memory_order_relaxed);
}

static void msg_list_free(struct msgbuf *m)
{
	while (m) {
		struct msgbuf *next = m->next;

		free(m);
		m = next;
	}
}

/* The call's place in the metrics: counted as its final status is
 * submitted (before the client can see it, so a scrape after the reply
 * includes it), or as CANCELLED when the stream ends without one. */
static void call_count(struct rpc_ctx *call, rpc_code code)
{
	rpc_server *srv = call->srv;

	if (call->counted)
		return;
	call->counted = true;
	if ((unsigned)code > RPC_CODE_MAX)
		code = RPC_UNKNOWN;
	if (call->method && call->method->stats) {
		atomic_fetch_add_explicit(&call->method->stats->by_code[code], 1,
					  memory_order_relaxed);
		rpc_latency_observe(&call->method->stats->latency,
				    rpc_now_ns() - call->start_ns);
	} else {
		atomic_fetch_add_explicit(&srv->unrouted[code], 1, memory_order_relaxed);
	}
	atomic_fetch_sub_explicit(&srv->calls_in_flight, 1, memory_order_relaxed);
}

static void call_unref(struct rpc_ctx *call)
{
	if (atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel) != 1)
		return;
	call_count(call, RPC_CANCELLED);
	msg_list_free(call->in_head);
	msg_list_free(call->out_head);
	rpc_msg_reader_dispose(&call->reader);
	rpc_metadata_dispose(&call->md_in);
	rpc_metadata_dispose(&call->hdr_out);
	rpc_metadata_dispose(&call->trl_out);
	pthread_mutex_destroy(&call->lock);
	pthread_cond_destroy(&call->cond);
	rpc_arena_free(call->arena);
	free(call);
}

/* Wakes a handler blocked in recv/send/sleep. */
static void call_cancel(struct rpc_ctx *call)
{
	atomic_store(&call->cancelled, true);
	pthread_mutex_lock(&call->lock);
	pthread_cond_broadcast(&call->cond);
	pthread_mutex_unlock(&call->lock);
}

static struct msgbuf *msgbuf_new(size_t len)
{
	struct msgbuf *m = malloc(sizeof(*m) + len);

	if (m) {
		m->next = NULL;
		m->len = len;
	}
	return m;
}

/* Frames a message into a new msgbuf; NULL with *err set on failure. */
static struct msgbuf *encode_message(const ProtobufCMessage *msg,
				     uint32_t max, int *err)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	struct msgbuf *m;

	if (len > max) {
		*err = RPC_ERR_TOO_LARGE;
		return NULL;
	}
	m = msgbuf_new(RPC_MSG_PREFIX_LEN + len);
	if (!m) {
		*err = RPC_ERR_NOMEM;
		return NULL;
	}
	rpc_msg_prefix(m->data, false, (uint32_t)len);
	protobuf_c_message_pack(msg, m->data + RPC_MSG_PREFIX_LEN);
	return m;
}

/* Worker side: tell the I/O thread there is output or a final status.
 * Coalesced: at most one ready task is queued per call. Called with
 * call->lock held. */
static void post_ready(void *arg);

static void call_notify_locked(struct rpc_ctx *call)
{
	if (call->notify_posted)
		return;
	call->notify_posted = true;
	call_ref(call);
	if (rpc_loop_post(call->loop, post_ready, call) != 0) {
		call->notify_posted = false;
		atomic_fetch_sub(&call->refs, 1); /* never the last: caller holds one */
	}
}

/* ------------------------------------------------------------------ */
/* handler-side API                                                    */

const rpc_metadata *rpc_ctx_metadata(const rpc_ctx *ctx)
{
	return &ctx->md_in;
}

const char *rpc_ctx_metadata_get(const rpc_ctx *ctx, const char *key,
				 size_t *len)
{
	const rpc_md_entry *e = rpc_metadata_get(&ctx->md_in, key);

	if (!e)
		return NULL;
	if (len)
		*len = e->value_len;
	return (const char *)e->value;
}

static int ctx_add_md(rpc_ctx *ctx, rpc_metadata *md, bool header,
		      const char *key, const void *value, size_t len)
{
	int rc;

	pthread_mutex_lock(&ctx->lock);
	if ((header && ctx->headers_committed) || ctx->handler_done)
		rc = RPC_ERR_CLOSED;
	else
		rc = rpc_metadata_add(md, key, value, len);
	pthread_mutex_unlock(&ctx->lock);
	return rc;
}

int rpc_ctx_add_header(rpc_ctx *ctx, const char *key, const void *value,
		       size_t len)
{
	return ctx_add_md(ctx, &ctx->hdr_out, true, key, value, len);
}

int rpc_ctx_add_trailer(rpc_ctx *ctx, const char *key, const void *value,
			size_t len)
{
	return ctx_add_md(ctx, &ctx->trl_out, false, key, value, len);
}

long long rpc_ctx_deadline(const rpc_ctx *ctx)
{
	return ctx->deadline;
}

bool rpc_ctx_cancelled(const rpc_ctx *ctx)
{
	return atomic_load(&((rpc_ctx *)ctx)->cancelled);
}

static void abs_timespec(long long ns_from_now, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ns_from_now / 1000000000LL;
	ts->tv_nsec += ns_from_now % 1000000000LL;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int rpc_ctx_sleep(rpc_ctx *ctx, long long ms)
{
	struct timespec until;
	int rc = 0;

	if (ctx->on_io)
		return RPC_ERR_INVALID; /* never block an I/O thread */
	abs_timespec(ms * 1000000LL, &until);
	pthread_mutex_lock(&ctx->lock);
	while (!atomic_load(&ctx->cancelled)) {
		if (pthread_cond_timedwait(&ctx->cond, &ctx->lock, &until) ==
		    ETIMEDOUT)
			break;
	}
	if (atomic_load(&ctx->cancelled))
		rc = RPC_ERR_CANCELLED;
	pthread_mutex_unlock(&ctx->lock);
	return rc;
}

const char *rpc_ctx_peer(const rpc_ctx *ctx)
{
	return ctx->peer;
}

const char *rpc_ctx_method(const rpc_ctx *ctx)
{
	return ctx->method ? ctx->method->desc->path : "";
}

void *rpc_ctx_user(const rpc_ctx *ctx)
{
	return ctx->method ? ctx->method->user : NULL;
}

rpc_arena *rpc_ctx_arena(rpc_ctx *ctx)
{
	return ctx->arena;
}

rpc_code rpc_ctx_error(rpc_ctx *ctx, rpc_code code, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ctx->status_msg = rpc_arena_strdup(ctx->arena, buf);
	return code;
}

const rpc_identity *rpc_ctx_identity(const rpc_ctx *ctx)
{
	return ctx->has_identity ? &ctx->identity : NULL;
}

const char *rpc_ctx_bearer(const rpc_ctx *ctx, size_t *len)
{
	const rpc_md_entry *e = rpc_metadata_get(&ctx->md_in, "authorization");

	/* RFC 6750: the scheme is case-insensitive, one space follows. */
	if (!e || e->value_len <= 7 ||
	    strncasecmp((const char *)e->value, "bearer ", 7) != 0)
		return NULL;
	if (len)
		*len = e->value_len - 7;
	return (const char *)e->value + 7;
}

/* Enforces the method's access rule; may block in the authenticator. */
static rpc_code authorize(struct rpc_ctx *call)
{
	rpc_access access = call->method->desc->access;
	rpc_server *srv = call->srv;
	const rpc_identity *id = &call->identity;
	size_t len = 0;
	const char *token;
	rpc_code code;

	if (access == RPC_ACCESS_UNSPECIFIED)
		return RPC_OK;
	token = rpc_ctx_bearer(call, &len);
	if (!token) {
		if (access == RPC_ACCESS_PUBLIC)
			return RPC_OK;
		return rpc_ctx_error(call, RPC_UNAUTHENTICATED,
				     "this call needs an access token "
				     "(authorization: Bearer ...)");
	}
	if (!srv->authenticator)
		return rpc_ctx_error(call, RPC_UNAUTHENTICATED,
				     "this server cannot verify access tokens");
	memset(&call->identity, 0, sizeof(call->identity));
	code = srv->authenticator(srv->authenticator_user, call, token, len,
				  &call->identity);
	if (code != RPC_OK) {
		if (code != RPC_UNAVAILABLE && code != RPC_DEADLINE_EXCEEDED)
			code = RPC_UNAUTHENTICATED;
		if (!call->status_msg)
			rpc_ctx_error(call, code, "invalid access token");
		return code;
	}
	call->has_identity = true;
	switch (access) {
	case RPC_ACCESS_PUBLIC:
	case RPC_ACCESS_ACCOUNT:
		return RPC_OK;
	case RPC_ACCESS_VENDOR:
		if (!id->is_service &&
		    (id->roles & (RPC_ROLE_VENDOR | RPC_ROLE_ADMIN)))
			return RPC_OK;
		return rpc_ctx_error(call, RPC_PERMISSION_DENIED,
				     "this call needs the vendor role");
	case RPC_ACCESS_ADMIN:
		if (!id->is_service && (id->roles & RPC_ROLE_ADMIN))
			return RPC_OK;
		return rpc_ctx_error(call, RPC_PERMISSION_DENIED,
				     "this call needs the admin role");
	case RPC_ACCESS_INTERNAL:
		if (id->is_service)
			return RPC_OK;
		return rpc_ctx_error(call, RPC_PERMISSION_DENIED,
				     "this call is for services only");
	default:
		return rpc_ctx_error(call, RPC_PERMISSION_DENIED,
				     "unknown access rule");
	}
}

/* Whether authorize() would call the authenticator (which may block). */
static bool needs_authenticator(const struct rpc_ctx *call)
{
	rpc_access access = call->method->desc->access;

	return access != RPC_ACCESS_UNSPECIFIED &&
	       (access != RPC_ACCESS_PUBLIC ||
		rpc_metadata_get(&call->md_in, "authorization"));
}

bool rpc_ctx_on_io_thread(const rpc_ctx *ctx)
{
	return ctx->on_io;
}

rpc_code rpc_ctx_offload(rpc_ctx *ctx)
{
	return RPC_OFFLOAD;
}

rpc_ctx *rpc_stream_ctx(rpc_stream *s)
{
	return s->ctx;
}

int rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg)
{
	rpc_ctx *call = s->ctx;
	struct msgbuf *m;
	int err = 0;

	if (atomic_load(&call->cancelled))
		return RPC_ERR_CANCELLED;
	m = encode_message(msg, call->srv->cfg.max_send_msg, &err);
	if (!m)
		return err;
	pthread_mutex_lock(&call->lock);
	/* Back-pressure: a client that reads slowly blocks its own handler,
	 * not the server's memory. */
	while (call->out_bytes > call->srv->cfg.max_queued_bytes &&
	       !atomic_load(&call->cancelled))
		pthread_cond_wait(&call->cond, &call->lock);
	if (atomic_load(&call->cancelled)) {
		pthread_mutex_unlock(&call->lock);
		free(m);
		return RPC_ERR_CANCELLED;
	}
	call->headers_committed = true;
	if (call->out_tail)
		call->out_tail->next = m;
	else
		call->out_head = m;
	call->out_tail = m;
	call->out_bytes += m->len;
	call_notify_locked(call);
	pthread_mutex_unlock(&call->lock);
	return 0;
}

/* Decodes one framed request with the call's arena. */
static ProtobufCMessage *decode_request(rpc_ctx *call, struct msgbuf *m,
					bool use_arena)
{
	ProtobufCAllocator alloc;

	if (!use_arena)
		return protobuf_c_message_unpack(call->method->desc->input, NULL,
						 m->len, m->data);
	rpc_arena_pb_allocator(call->arena, &alloc);
	return protobuf_c_message_unpack(call->method->desc->input, &alloc,
					 m->len, m->data);
}

int rpc_stream_recv(rpc_stream *s, ProtobufCMessage **msg)
{
	rpc_ctx *call = s->ctx;
	struct msgbuf *m;

	*msg = NULL;
	pthread_mutex_lock(&call->lock);
	while (!call->in_head && !call->in_closed &&
	       !atomic_load(&call->cancelled))
		pthread_cond_wait(&call->cond, &call->lock);
	if (atomic_load(&call->cancelled)) {
		pthread_mutex_unlock(&call->lock);
		return RPC_ERR_CANCELLED;
	}
	m = call->in_head;
	if (!m) {
		pthread_mutex_unlock(&call->lock);
		return 0;
	}
	call->in_head = m->next;
	if (!call->in_head)
		call->in_tail = NULL;
	call->in_bytes -= m->len;
	pthread_mutex_unlock(&call->lock);

	/* Streamed messages are freed by the handler one by one, so they
	 * use the heap: the arena would grow for the whole stream. A string
	 * that C would see cut short is as malformed as bad framing. */
	{
		char why[320];

		if (rpc_wirecheck_strings(call->method->desc->input, m->data,
					  m->len, why, sizeof(why)) < 0) {
			rpc_log(RPC_LOG_DEBUG, LOG_COMPONENT, "stream message refused: %s",
				why);
			free(m);
			return RPC_ERR_PROTO;
		}
	}
	*msg = decode_request(call, m, false);
	free(m);
	return *msg ? 1 : RPC_ERR_PROTO;
}

/* ------------------------------------------------------------------ */
/* worker pool                                                         */

/* The caller's x-request-id for the handler's log lines, when it is short
 * and plain (the edge sends such ids; anything else is not worth a log
 * line's room). Borrowed from the call's metadata. */
static const char *log_request_id(const struct rpc_ctx *call)
{
	size_t len = 0;
	const char *id = rpc_ctx_metadata_get(call, "x-request-id", &len);

	if (id == NULL || len == 0 || len > 64 ||
	    strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		       "0123456789-_.") != len)
		return NULL;
	return id;
}

/*
 * Runs the handler of a call whose request message (unary and server
 * streaming) is `req`, then queues the reply and the final status. On the
 * I/O thread (`on_io`) nothing is posted: the caller submits at once.
 * Returns false when an inline handler asked to be offloaded (nothing was
 * queued; the call must go to a worker).
 */
static bool execute(struct rpc_ctx *call, struct msgbuf *req, bool on_io)
{
	const rpc_method_desc *d = call->method->desc;
	ProtobufCMessage *in = NULL, *out = NULL;
	struct msgbuf *reply = NULL;
	rpc_code code = RPC_OK;
	int err = 0;

	/* Verifying a token may block: that is worker work. */
	if (on_io && needs_authenticator(call) && call->srv->authenticator)
		return false;
	call->on_io = on_io;
	code = authorize(call);
	if (code != RPC_OK)
		goto done;
	if (d->kind == RPC_UNARY || d->kind == RPC_SERVER_STREAMING) {
		char why[320];

		if (req && rpc_wirecheck_strings(d->input, req->data, req->len,
						 why, sizeof(why)) < 0) {
			code = rpc_ctx_error(call, RPC_INVALID_ARGUMENT, "%s",
					     why);
			goto done;
		}
		in = req ? decode_request(call, req, true) : NULL;
		if (!in) {
			code = rpc_ctx_error(call, RPC_INVALID_ARGUMENT,
					     "malformed request: not a valid %s",
					     d->input->name);
			goto done;
		}
	}
	if (d->kind == RPC_UNARY || d->kind == RPC_CLIENT_STREAMING) {
		out = rpc_arena_alloc(call->arena, d->output->sizeof_message);
		if (!out) {
			code = rpc_ctx_error(call, RPC_RESOURCE_EXHAUSTED,
					     "out of memory");
			goto done;
		}
		protobuf_c_message_init(d->output, out);
	}
	rpc_log_set_request_id(log_request_id(call));
	code = d->invoke(call->method->impl, call, in, out,
			 d->kind == RPC_UNARY ? NULL : &call->stream);
	rpc_log_set_request_id(NULL);
	if (code == RPC_OFFLOAD) {
		call->on_io = false;
		if (on_io)
			return false;
		code = rpc_ctx_error(call, RPC_INTERNAL,
				     "handler offloaded outside the I/O thread");
	}
	if (code == RPC_OK && out) {
		reply = encode_message(out, call->srv->cfg.max_send_msg, &err);
		if (!reply)
			code = rpc_ctx_error(call, RPC_RESOURCE_EXHAUSTED,
					     "reply of %zu bytes exceeds the limit",
					     protobuf_c_message_get_packed_size(out));
	}
done:
	call->on_io = false;
	pthread_mutex_lock(&call->lock);
	if (call->handler_done) {
		/* The I/O side already ended the call (deadline, limit): its
		 * status stands and this result is dropped. */
		free(reply);
		pthread_mutex_unlock(&call->lock);
		return true;
	}
	if (reply) {
		if (call->out_tail)
			call->out_tail->next = reply;
		else
			call->out_head = reply;
		call->out_tail = reply;
		call->out_bytes += reply->len;
	}
	if ((unsigned)code > RPC_CODE_MAX)
		code = RPC_UNKNOWN;
	call->status = code;
	call->handler_done = true;
	call->headers_committed = true;
	if (!on_io)
		call_notify_locked(call);
	pthread_mutex_unlock(&call->lock);
	return true;
}

/* Takes the one request message of a unary / server-streaming call. */
static struct msgbuf *take_request(struct rpc_ctx *call)
{
	struct msgbuf *m;

	pthread_mutex_lock(&call->lock);
	m = call->in_head;
	call->in_head = call->in_tail = NULL;
	call->in_bytes = 0;
	pthread_mutex_unlock(&call->lock);
	return m;
}

static void run_handler(struct rpc_ctx *call)
{
	const rpc_method_desc *d = call->method->desc;
	struct msgbuf *req = NULL;

	if (d->kind == RPC_UNARY || d->kind == RPC_SERVER_STREAMING)
		req = take_request(call);
	execute(call, req, false);
	free(req);
}

static void *worker_main(void *arg)
{
	rpc_server *srv = arg;
	struct job_queue *q = &srv->jobs;

	pthread_setname_np(pthread_self(), "rpc-worker");
	for (;;) {
		struct rpc_ctx *call;

		pthread_mutex_lock(&q->lock);
		while (!q->head && !q->stop)
			pthread_cond_wait(&q->cond, &q->lock);
		call = q->head;
		if (!call) {
			pthread_mutex_unlock(&q->lock);
			return NULL;
		}
		q->head = call->next_job;
		if (!q->head)
			q->tail = NULL;
		pthread_mutex_unlock(&q->lock);

		if (atomic_load(&call->cancelled)) {
			pthread_mutex_lock(&call->lock);
			call->status = RPC_CANCELLED;
			call->handler_done = true;
			call_notify_locked(call);
			pthread_mutex_unlock(&call->lock);
		} else {
			run_handler(call);
		}
		call_unref(call);
	}
}

static void dispatch(struct rpc_ctx *call)
{
	struct job_queue *q = &call->srv->jobs;

	call->dispatched = true;
	call_ref(call);
	call->next_job = NULL;
	pthread_mutex_lock(&q->lock);
	if (q->tail)
		q->tail->next_job = call;
	else
		q->head = call;
	q->tail = call;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* ------------------------------------------------------------------ */
/* responses (I/O thread)                                              */

#define MAKE_NV(n, v, vl)                                                     \
	((nghttp2_nv){ (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl),   \
		       NGHTTP2_NV_FLAG_NO_COPY_NAME })

struct nvlist {
	nghttp2_nv *nv;
	size_t n, cap;
	char **owned;                 /* strings to free after submit */
	size_t n_owned, owned_cap;
};

static int nv_push(struct nvlist *l, nghttp2_nv nv)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		nghttp2_nv *p = realloc(l->nv, cap * sizeof(*p));

		if (!p)
			return RPC_ERR_NOMEM;
		l->nv = p;
		l->cap = cap;
	}
	l->nv[l->n++] = nv;
	return 0;
}

static int nv_own(struct nvlist *l, char *s)
{
	if (l->n_owned == l->owned_cap) {
		size_t cap = l->owned_cap ? l->owned_cap * 2 : 4;
		char **p = realloc(l->owned, cap * sizeof(*p));

		if (!p)
			return RPC_ERR_NOMEM;
		l->owned = p;
		l->owned_cap = cap;
	}
	l->owned[l->n_owned++] = s;
	return 0;
}

static void nv_dispose(struct nvlist *l)
{
	for (size_t i = 0; i < l->n_owned; i++)
		free(l->owned[i]);
	free(l->owned);
	free(l->nv);
}

/* nghttp2 copies names and values at submit, so pointers into the
 * metadata only need to live until the submit call returns. */
static int nv_push_md(struct nvlist *l, const rpc_metadata *md)
{
	for (size_t i = 0; i < md->count; i++) {
		const char *v;
		size_t vl;
		bool must_free;
		nghttp2_nv nv;

		if (rpc_metadata_wire_value(&md->items[i], &v, &vl, &must_free))
			return RPC_ERR_NOMEM;
		if (must_free && nv_own(l, (char *)v)) {
			free((char *)v);
			return RPC_ERR_NOMEM;
		}
		nv = (nghttp2_nv){ (uint8_t *)md->items[i].key, (uint8_t *)v,
				   strlen(md->items[i].key), vl,
				   NGHTTP2_NV_FLAG_NONE };
		if (nv_push(l, nv))
			return RPC_ERR_NOMEM;
	}
	return 0;
}

static const char *const status_digits[RPC_CODE_MAX + 1] = {
	"0", "1", "2", "3", "4", "5", "6", "7", "8",
	"9", "10", "11", "12", "13", "14", "15", "16",
};

static int nv_push_status(struct nvlist *l, rpc_code code, const char *msg)
{
	const char *digits = status_digits[code <= RPC_CODE_MAX ? code : RPC_UNKNOWN];

	if (nv_push(l, MAKE_NV("grpc-status", digits, strlen(digits))))
		return RPC_ERR_NOMEM;
	if (code != RPC_OK && msg && *msg) {
		size_t len;
		char *enc = rpc_percent_encode(msg, strlen(msg), &len);

		if (!enc || nv_own(l, enc)) {
			free(enc);
			return RPC_ERR_NOMEM;
		}
		if (nv_push(l, MAKE_NV("grpc-message", enc, len)))
			return RPC_ERR_NOMEM;
	}
	return 0;
}

static const char CT_GRPC[] = "application/grpc";

/* A response with no body: an HTTP error or a gRPC trailers-only status. */
static void submit_trailers_only(struct rpc_ctx *call, const char *http_status,
				 rpc_code code, const char *msg,
				 const char *extra_name, const char *extra_value)
{
	struct conn *c = call->conn;
	struct nvlist l = { 0 };
	int rc = 0;

	call->finished_io = true;
	call_count(call, code);
	call->headers_sent = true;
	rc |= nv_push(&l, MAKE_NV(":status", http_status, strlen(http_status)));
	rc |= nv_push(&l, MAKE_NV("content-type", CT_GRPC, sizeof(CT_GRPC) - 1));
	rc |= nv_push_status(&l, code, msg);
	if (extra_name)
		rc |= nv_push(&l, (nghttp2_nv){ (uint8_t *)extra_name,
						(uint8_t *)extra_value,
						strlen(extra_name),
						strlen(extra_value),
						NGHTTP2_NV_FLAG_NONE });
	pthread_mutex_lock(&call->lock);
	rc |= nv_push_md(&l, &call->hdr_out);
	rc |= nv_push_md(&l, &call->trl_out);
	pthread_mutex_unlock(&call->lock);
	if (rc == 0)
		rc = nghttp2_submit_response(c->h2, call->stream_id, l.nv, l.n, NULL);
	if (rc != 0)
		nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE,
					  call->stream_id, NGHTTP2_INTERNAL_ERROR);
	nv_dispose(&l);
	conn_mark_dirty(c);
}

static void submit_trailers(struct rpc_ctx *call)
{
	struct nvlist l = { 0 };
	int rc;

	call->finished_io = true;
	call_count(call, call->status);
	/* handler_done is set, so the worker no longer touches these. */
	rc = nv_push_status(&l, call->status, call->status_msg);
	rc |= nv_push_md(&l, &call->trl_out);
	if (rc == 0)
		rc = nghttp2_submit_trailer(call->conn->h2, call->stream_id,
					    l.nv, l.n);
	if (rc != 0)
		nghttp2_submit_rst_stream(call->conn->h2, NGHTTP2_FLAG_NONE,
					  call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	nv_dispose(&l);
}

/* nghttp2 pulls reply bytes from the call's out queue. */
static ssize_t data_read_cb(nghttp2_session *h2, int32_t stream_id,
			    uint8_t *buf, size_t length, uint32_t *flags,
			    nghttp2_data_source *source, void *user)
{
	struct rpc_ctx *call = source->ptr;
	size_t copied = 0;
	bool eof = false, wake;

	pthread_mutex_lock(&call->lock);
	wake = call->out_bytes > call->srv->cfg.max_queued_bytes;
	while (copied < length && call->out_head) {
		struct msgbuf *m = call->out_head;
		size_t n = m->len - call->out_off;

		if (n > length - copied)
			n = length - copied;
		memcpy(buf + copied, m->data + call->out_off, n);
		copied += n;
		call->out_off += n;
		call->out_bytes -= n;
		if (call->out_off == m->len) {
			call->out_head = m->next;
			if (!call->out_head)
				call->out_tail = NULL;
			call->out_off = 0;
			free(m);
		}
	}
	if (!call->out_head && call->handler_done)
		eof = true;
	if (wake && call->out_bytes <= call->srv->cfg.max_queued_bytes)
		pthread_cond_broadcast(&call->cond);
	pthread_mutex_unlock(&call->lock);

	if (eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		submit_trailers(call);
		return (ssize_t)copied;
	}
	if (copied == 0) {
		call->data_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)copied;
}

/* The worker queued output or finished: move it onto the stream. */
static void call_submit_ready(struct rpc_ctx *call)
{
	struct conn *c = call->conn;
	bool has_out, done;

	if (!c || call->finished_io)
		return;
	pthread_mutex_lock(&call->lock);
	has_out = call->out_head != NULL;
	done = call->handler_done;
	pthread_mutex_unlock(&call->lock);

	if (!call->headers_sent) {
		if (!has_out && done) {
			submit_trailers_only(call, "200", call->status,
					     call->status_msg, NULL, NULL);
			return;
		}
		if (has_out || done) {
			struct nvlist l = { 0 };
			nghttp2_data_provider prd = { .source.ptr = call,
						      .read_callback = data_read_cb };
			int rc = 0;

			rc |= nv_push(&l, MAKE_NV(":status", "200", 3));
			rc |= nv_push(&l, MAKE_NV("content-type", CT_GRPC,
						  sizeof(CT_GRPC) - 1));
			pthread_mutex_lock(&call->lock);
			rc |= nv_push_md(&l, &call->hdr_out);
			pthread_mutex_unlock(&call->lock);
			if (rc == 0)
				rc = nghttp2_submit_response(c->h2, call->stream_id,
							     l.nv, l.n, &prd);
			nv_dispose(&l);
			if (rc != 0) {
				nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE,
							  call->stream_id,
							  NGHTTP2_INTERNAL_ERROR);
				call->finished_io = true;
				call_count(call, RPC_INTERNAL);
			}
			call->headers_sent = true;
		}
	} else if (call->data_deferred) {
		call->data_deferred = false;
		nghttp2_session_resume_data(c->h2, call->stream_id);
	}
	conn_mark_dirty(c);
}

static void post_ready(void *arg)
{
	struct rpc_ctx *call = arg;

	pthread_mutex_lock(&call->lock);
	call->notify_posted = false;
	pthread_mutex_unlock(&call->lock);
	call_submit_ready(call);
	call_unref(call);
}

/* Ends a call from the I/O side (bad request, limit, deadline): the status
 * goes out now, and a running handler is cancelled; its result is
 * dropped. */
static void call_abort(struct rpc_ctx *call, rpc_code code, const char *msg)
{
	if (call->finished_io || !call->conn)
		return;
	if (call->dispatched)
		call_cancel(call);
	if (!call->headers_sent) {
		submit_trailers_only(call, "200", code, msg, NULL, NULL);
		return;
	}
	/* Headers are out and data may be queued inside nghttp2: end the
	 * stream through the data provider so trailers follow the data. */
	pthread_mutex_lock(&call->lock);
	msg_list_free(call->out_head);
	call->out_head = call->out_tail = NULL;
	call->out_bytes = call->out_off = 0;
	call->status = code;
	/* Not the arena: the handler may be allocating from it right now. */
	snprintf(call->abort_msg, sizeof(call->abort_msg), "%s", msg);
	call->status_msg = call->abort_msg;
	call->handler_done = true;
	pthread_mutex_unlock(&call->lock);
	if (call->data_deferred) {
		call->data_deferred = false;
		nghttp2_session_resume_data(call->conn->h2, call->stream_id);
	}
	conn_mark_dirty(call->conn);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_ctx *call = arg;

	call_abort(call, RPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* ------------------------------------------------------------------ */
/* routing                                                             */

static uint64_t hash_path(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ULL;
	return h;
}

static const struct reg_method *find_method(const rpc_server *srv,
					    const char *path)
{
	size_t mask = srv->methods_cap - 1;

	if (!srv->methods_cap)
		return NULL;
	for (size_t i = hash_path(path) & mask;; i = (i + 1) & mask) {
		const struct reg_method *m = &srv->methods[i];

		if (!m->desc)
			return NULL;
		if (strcmp(m->desc->path, path) == 0)
			return m;
	}
}

static bool service_known(const rpc_server *srv, const char *path)
{
	const char *slash = path[0] == '/' ? strchr(path + 1, '/') : NULL;

	if (!slash)
		return false;
	for (size_t i = 0; i < srv->n_services; i++) {
		const char *name = srv->services[i]->name;

		if (strlen(name) == (size_t)(slash - path - 1) &&
		    memcmp(name, path + 1, (size_t)(slash - path - 1)) == 0)
			return true;
	}
	return false;
}

/* All request headers are in: validate, route, arm the deadline. */
static void call_start(struct rpc_ctx *call)
{
	rpc_server *srv = call->srv;
	const char *enc = call->encoding;

	if (call->headers_too_large) {
		submit_trailers_only(call, "431", RPC_RESOURCE_EXHAUSTED,
				     "request headers exceed the size limit",
				     NULL, NULL);
		return;
	}
	if (!call->is_post) {
		submit_trailers_only(call, "405", RPC_UNIMPLEMENTED,
				     "gRPC requires POST", NULL, NULL);
		return;
	}
	if (!call->grpc_content_type) {
		submit_trailers_only(call, "415", RPC_INTERNAL,
				     "content-type must be application/grpc",
				     NULL, NULL);
		return;
	}
	if (!call->path || !(call->method = find_method(srv, call->path))) {
		char msg[300];

		snprintf(msg, sizeof(msg), "unknown %s %s",
			 call->path && service_known(srv, call->path) ?
				 "method" : "service or method",
			 call->path ? call->path : "(no path)");
		submit_trailers_only(call, "200", RPC_UNIMPLEMENTED, msg, NULL,
				     NULL);
		return;
	}
	if (enc && strcmp(enc, "identity") != 0) {
		char msg[200];

		snprintf(msg, sizeof(msg),
			 "message encoding \"%.100s\" is not supported", enc);
		submit_trailers_only(call, "200", RPC_UNIMPLEMENTED, msg,
				     "grpc-accept-encoding", "identity");
		return;
	}
	if (call->bad_timeout) {
		submit_trailers_only(call, "200", RPC_INTERNAL,
				     "malformed grpc-timeout", NULL, NULL);
		return;
	}
	if (call->deadline) {
		long long left = call->deadline - rpc_now_ns();
		struct timeval tv;

		if (left <= 0) {
			submit_trailers_only(call, "200", RPC_DEADLINE_EXCEEDED,
					     "deadline exceeded", NULL, NULL);
			return;
		}
		tv.tv_sec = left / 1000000000LL;
		tv.tv_usec = (left % 1000000000LL) / 1000;
		call->deadline_ev = evtimer_new(rpc_loop_base(call->loop),
						on_deadline, call);
		if (call->deadline_ev)
			evtimer_add(call->deadline_ev, &tv);
	}
	/* Methods that read a stream start at once; unary and server
	 * streaming wait for their one request (see end_of_input). */
	if (call->method->desc->kind == RPC_CLIENT_STREAMING ||
	    call->method->desc->kind == RPC_BIDI_STREAMING)
		dispatch(call);
}

/* A unary handler registered as non-blocking runs right here on the I/O
 * thread: no hand-off to a worker and back, which on a small machine costs
 * more than the handler itself. */
static void run_inline(struct rpc_ctx *call)
{
	struct msgbuf *req = call->in_head;

	call->dispatched = true;
	if (!execute(call, req, true)) {
		/* The handler found it must block: re-run it on a worker with
		 * the request still queued. */
		dispatch(call);
		return;
	}
	call->in_head = call->in_tail = NULL;
	call->in_bytes = 0;
	free(req);
	call_submit_ready(call);
}

/* The client half-closed. */
static void end_of_input(struct rpc_ctx *call)
{
	if (call->finished_io || !call->method)
		return;
	if (rpc_msg_reader_partial(&call->reader)) {
		call_abort(call, RPC_INTERNAL,
			   "stream ended inside a message (truncated frame)");
		return;
	}
	pthread_mutex_lock(&call->lock);
	call->in_closed = true;
	pthread_cond_broadcast(&call->cond);
	pthread_mutex_unlock(&call->lock);
	if (!call->dispatched) {
		if (call->n_msgs_in != 1) {
			call_abort(call, RPC_INTERNAL,
				   call->n_msgs_in ?
					   "more than one request message for a unary request" :
					   "missing request message");
			return;
		}
		if (call->method->inline_ok && !call->srv->cfg.no_inline)
			run_inline(call);
		else
			dispatch(call);
	}
}

static int on_message(void *user, const uint8_t *data, size_t len,
		      bool compressed)
{
	struct rpc_ctx *call = user;
	struct msgbuf *m;
	bool too_much;

	if (compressed) {
		/* Only identity is accepted (checked at headers), so a set flag
		 * is a protocol violation. */
		call_abort(call, RPC_INTERNAL,
			   "compressed message without a supported grpc-encoding");
		return 1;
	}
	call->n_msgs_in++;
	if (!call->dispatched && call->n_msgs_in > 1) {
		call_abort(call, RPC_INTERNAL,
			   "more than one request message for a unary request");
		return 1;
	}
	m = msgbuf_new(len);
	if (!m) {
		call_abort(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return 1;
	}
	memcpy(m->data, data, len);
	pthread_mutex_lock(&call->lock);
	if (call->handler_done) {
		/* The handler has answered; what the client still sends is
		 * read and dropped. */
		pthread_mutex_unlock(&call->lock);
		free(m);
		return 0;
	}
	too_much = call->in_bytes + len > call->srv->cfg.max_queued_bytes;
	if (!too_much) {
		if (call->in_tail)
			call->in_tail->next = m;
		else
			call->in_head = m;
		call->in_tail = m;
		call->in_bytes += len;
		pthread_cond_broadcast(&call->cond);
	}
	pthread_mutex_unlock(&call->lock);
	if (too_much) {
		free(m);
		call_abort(call, RPC_RESOURCE_EXHAUSTED,
			   "request messages arrive faster than the handler reads them");
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* nghttp2 callbacks                                                   */

static void conn_link_call(struct conn *c, struct rpc_ctx *call)
{
	call->conn_next = c->calls;
	call->conn_prev = NULL;
	if (c->calls)
		c->calls->conn_prev = call;
	c->calls = call;
}

static void conn_unlink_call(struct conn *c, struct rpc_ctx *call)
{
	if (call->conn_prev)
		call->conn_prev->conn_next = call->conn_next;
	else
		c->calls = call->conn_next;
	if (call->conn_next)
		call->conn_next->conn_prev = call->conn_prev;
	call->conn_prev = call->conn_next = NULL;
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame,
			    void *user)
{
	struct conn *c = user;
	struct rpc_ctx *call;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	call = call_new(c, frame->hd.stream_id);
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, call);
	conn_link_call(c, call);
	c->open_streams++;
	if (!c->headers_since)
		c->headers_since = rpc_now_ns();
	return 0;
}

static bool is_grpc_content_type(const uint8_t *v, size_t len)
{
	size_t n = sizeof(CT_GRPC) - 1;

	return len >= n && memcmp(v, CT_GRPC, n) == 0 &&
	       (len == n || v[n] == '+' || v[n] == ';');
}

#define NAME_IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	struct rpc_ctx *call;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* trailers from the client carry nothing we use */
	call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!call || call->headers_too_large)
		return 0;
	/* nghttp2 does not enforce SETTINGS_MAX_HEADER_LIST_SIZE on what it
	 * receives, so we count as RFC 9113 §6.5.2 does (+32 per field). */
	call->header_bytes += namelen + valuelen + 32;
	if (call->header_bytes > call->srv->cfg.max_header_list) {
		call->headers_too_large = true;
		return 0;
	}
	if (name[0] == ':') {
		if (NAME_IS(":method"))
			call->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
		else if (NAME_IS(":path"))
			call->path = rpc_arena_strndup(call->arena,
						       (const char *)value, valuelen);
		return 0;
	}
	if (NAME_IS("content-type")) {
		call->grpc_content_type = is_grpc_content_type(value, valuelen);
	} else if (NAME_IS("grpc-timeout")) {
		int64_t ns;

		if (rpc_timeout_parse((const char *)value, valuelen, &ns) != 0)
			call->bad_timeout = true;
		else
			call->deadline = rpc_now_ns() +
					 (ns > LLONG_MAX / 2 ? LLONG_MAX / 2 : ns);
	} else if (NAME_IS("grpc-encoding")) {
		call->encoding = rpc_arena_strndup(call->arena,
						   (const char *)value, valuelen);
	} else if (namelen > 5 && memcmp(name, "grpc-", 5) == 0) {
		/* grpc-accept-encoding and other protocol headers */
	} else if (NAME_IS("te") || NAME_IS("host")) {
	} else {
		/* A malformed custom entry (bad base64) is dropped rather than
		 * failing the call, as other gRPC servers do. */
		rpc_metadata_add_wire(&call->md_in, (const char *)name, namelen,
				      (const char *)value, valuelen);
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame,
			 void *user)
{
	struct conn *c = user;
	struct rpc_ctx *call;

	c->preface_seen = true;
	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->settings_acked = true;
		return 0;
	case NGHTTP2_HEADERS:
		call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		if (!call)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
			c->headers_since = 0;
			call_start(call);
		}
		if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
			end_of_input(call);
		return 0;
	case NGHTTP2_DATA:
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			return 0;
		call = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		if (call)
			end_of_input(call);
		return 0;
	default:
		return 0;
	}
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user)
{
	struct rpc_ctx *call = nghttp2_session_get_stream_user_data(h2, stream_id);
	int rc;

	if (!call || call->finished_io || !call->method)
		return 0; /* the call already ended: discard the rest */
	rc = rpc_msg_reader_feed(&call->reader, data, len, on_message, call);
	if (rc == RPC_ERR_TOO_LARGE) {
		char msg[128];

		snprintf(msg, sizeof(msg),
			 "request message larger than the limit of %u bytes",
			 call->srv->cfg.max_recv_msg);
		call_abort(call, RPC_RESOURCE_EXHAUSTED, msg);
	} else if (rc == RPC_ERR_NOMEM) {
		call_abort(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
	}
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id,
			   uint32_t error_code, void *user)
{
	struct conn *c = user;
	struct rpc_ctx *call = nghttp2_session_get_stream_user_data(h2, stream_id);

	if (!call)
		return 0;
	nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
	conn_unlink_call(c, call);
	if (c->open_streams)
		c->open_streams--;
	if (c->headers_since && !c->open_streams)
		c->headers_since = 0;
	call->conn = NULL;
	if (call->deadline_ev) {
		event_free(call->deadline_ev);
		call->deadline_ev = NULL;
	}
	/* A stream that closes before our status went out was reset by the
	 * client (or the connection died): the handler stops. */
	if (!call->finished_io || error_code != NGHTTP2_NO_ERROR)
		call_cancel(call);
	call_unref(call);
	return 0;
}

static int on_error(nghttp2_session *h2, int lib_error_code, const char *msg,
		    size_t len, void *user)
{
	struct conn *c = user;

	if (rpc_log_enabled(RPC_LOG_DEBUG))
		rpc_log(RPC_LOG_DEBUG, LOG_COMPONENT, "peer %s: %.*s", c->peer,
			(int)len, msg);
	return 0;
}

static nghttp2_session_callbacks *server_callbacks;
static nghttp2_option *server_options;
static pthread_once_t h2_once = PTHREAD_ONCE_INIT;

static void h2_init_once(void)
{
	nghttp2_session_callbacks *cb;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(cb, on_error);
	server_callbacks = cb;

	if (nghttp2_option_new(&server_options) != 0)
		return;
	/* Flood limits, set explicitly rather than trusting defaults:
	 * SETTINGS with many entries, queued SETTINGS/PING ACKs from a peer
	 * that never reads, rapid reset (CVE-2023-44487) and CONTINUATION
	 * floods (CVE-2024-28182). */
	nghttp2_option_set_max_settings(server_options, 32);
	nghttp2_option_set_max_outbound_ack(server_options, 1000);
	nghttp2_option_set_stream_reset_rate_limit(server_options, 1000, 33);
	nghttp2_option_set_max_continuations(server_options, 8);
}

/* ------------------------------------------------------------------ */
/* connections (I/O thread)                                            */

static void conn_mark_dirty(struct conn *c)
{
	if (c->in_dirty)
		return;
	c->in_dirty = true;
	c->next_dirty = c->io->dirty;
	c->io->dirty = c;
	event_active(c->io->flush_ev, EV_WRITE, 0);
}

static int out_reserve(struct conn *c, size_t extra)
{
	if (c->out_len + extra <= c->out_cap)
		return 0;
	size_t cap = c->out_cap ? c->out_cap : 16384;

	while (cap < c->out_len + extra)
		cap *= 2;
	uint8_t *p = realloc(c->out, cap);

	if (!p)
		return RPC_ERR_NOMEM;
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/* Collects frames from nghttp2 and writes them in as few write() calls as
 * possible. Returns false when the connection must be closed now. */
static bool conn_flush(struct conn *c)
{
	for (;;) {
		/* Drain what is buffered first. */
		while (c->out_off < c->out_len) {
			ssize_t n = send(c->fd, c->out + c->out_off,
					 c->out_len - c->out_off, MSG_NOSIGNAL);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					event_add(c->wev, NULL);
					return true;
				}
				return false;
			}
			c->out_off += (size_t)n;
		}
		c->out_off = c->out_len = 0;

		/* Refill up to OUTBUF_FLUSH bytes. */
		while (c->out_len < OUTBUF_FLUSH) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(c->h2, &data);

			if (n < 0)
				return false;
			if (n == 0)
				break;
			if (out_reserve(c, (size_t)n))
				return false;
			memcpy(c->out + c->out_len, data, (size_t)n);
			c->out_len += (size_t)n;
		}
		if (c->out_len == 0)
			break;
	}
	event_del(c->wev);
	if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
		return false;
	if (c->closing && c->open_streams == 0)
		return false;
	return true;
}

static void conn_close(struct conn *c)
{
	struct io_thread *io = c->io;
	struct rpc_ctx *call = c->calls;

	/* nghttp2_session_del does not report stream closes: cancel the
	 * calls still attached here. */
	while (call) {
		struct rpc_ctx *next = call->conn_next;

		call->conn = NULL;
		if (call->deadline_ev) {
			event_free(call->deadline_ev);
			call->deadline_ev = NULL;
		}
		nghttp2_session_set_stream_user_data(c->h2, call->stream_id, NULL);
		call_cancel(call);
		call_unref(call);
		call = next;
	}
	c->calls = NULL;
	if (c->in_dirty) {
		struct conn **pp = &io->dirty;

		while (*pp && *pp != c)
			pp = &(*pp)->next_dirty;
		if (*pp)
			*pp = c->next_dirty;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		io->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nghttp2_session_del(c->h2);
	event_free(c->rev);
	event_free(c->wev);
	close(c->fd);
	free(c->out);
	free(c);
	server_note_conn_closed(io->srv);
}

static void conn_finish(struct conn *c)
{
	if (c->dead || !conn_flush(c))
		conn_close(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct io_thread *io = arg;

	while (io->dirty) {
		struct conn *c = io->dirty;

		io->dirty = c->next_dirty;
		c->in_dirty = false;
		c->next_dirty = NULL;
		conn_finish(c);
	}
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint8_t *buf = c->io->readbuf;
	ssize_t n = recv(fd, buf, READ_CHUNK, 0);

	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		c->dead = true;
		conn_close(c);
		return;
	}
	c->last_activity = rpc_now_ns();
	ssize_t used = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);

	if (used < 0) {
		/* Protocol errors (bad preface, floods) get a GOAWAY with the
		 * code nghttp2 chose, flushed before we close. */
		if (used == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
			nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
		else if (used == NGHTTP2_ERR_FLOODED)
			nghttp2_session_terminate_session(c->h2, NGHTTP2_ENHANCE_YOUR_CALM);
		rpc_log(RPC_LOG_INFO, LOG_COMPONENT, "closing %s: %s", c->peer,
			nghttp2_strerror((int)used));
		c->closing = true;
		event_del(c->rev);
		conn_flush(c);
		conn_close(c);
		return;
	}
	conn_mark_dirty(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	conn_finish(arg);
}

static void conn_goaway(struct conn *c, uint32_t code, const char *why)
{
	if (c->goaway_sent)
		return;
	c->goaway_sent = true;
	c->closing = true;
	nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(c->h2),
			      code, (const uint8_t *)why, strlen(why));
	conn_mark_dirty(c);
}

/* Once a second: the timeouts that protect against slow or silent peers. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct io_thread *io = arg;
	const rpc_server_config *cfg = &io->srv->cfg;
	long long now = rpc_now_ns();
	struct conn *c = io->conns;

	while (c) {
		struct conn *next = c->next;

		if (!c->preface_seen &&
		    now - c->accepted_at > cfg->header_timeout_ms * 1000000LL) {
			c->dead = true;
			conn_close(c);
		} else if (!c->settings_acked &&
			   now - c->settings_sent_at >
				   cfg->settings_ack_timeout_ms * 1000000LL) {
			nghttp2_session_terminate_session(c->h2, NGHTTP2_SETTINGS_TIMEOUT);
			c->closing = true;
			conn_mark_dirty(c);
		} else if (c->headers_since &&
			   now - c->headers_since > cfg->header_timeout_ms * 1000000LL) {
			/* Streams waiting for their headers will never
			 * complete: end the connection, not just new streams. */
			c->closing = true;
			nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR);
			conn_mark_dirty(c);
		} else if (!c->open_streams && !c->closing &&
			   now - c->last_activity > cfg->idle_timeout_ms * 1000000LL) {
			conn_goaway(c, NGHTTP2_NO_ERROR, "idle");
		}
		c = next;
	}
}

struct accepted {
	int fd;
	char peer[64];
	struct io_thread *io;
};

static void conn_attach(void *arg)
{
	struct accepted *a = arg;
	struct io_thread *io = a->io;
	rpc_server *srv = io->srv;
	struct conn *c = calloc(1, sizeof(*c));
	nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->cfg.max_concurrent_streams },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, srv->cfg.max_header_list },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW },
	};

	if (!c)
		goto fail;
	c->io = io;
	c->fd = a->fd;
	memcpy(c->peer, a->peer, sizeof(c->peer));
	c->accepted_at = c->last_activity = c->settings_sent_at = rpc_now_ns();
	if (nghttp2_session_server_new2(&c->h2, server_callbacks, c,
					server_options) != 0)
		goto fail;
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings,
				    sizeof(settings) / sizeof(settings[0])) != 0 ||
	    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
						  CONN_WINDOW) != 0)
		goto fail;
	c->rev = event_new(rpc_loop_base(io->loop), c->fd, EV_READ | EV_PERSIST,
			   on_readable, c);
	c->wev = event_new(rpc_loop_base(io->loop), c->fd, EV_WRITE, on_writable, c);
	if (!c->rev || !c->wev || event_add(c->rev, NULL) != 0)
		goto fail;
	c->next = io->conns;
	if (io->conns)
		io->conns->prev = c;
	io->conns = c;
	free(a);
	conn_mark_dirty(c); /* our SETTINGS go out at once */
	return;
fail:
	if (c) {
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		nghttp2_session_del(c->h2);
		free(c);
	}
	close(a->fd);
	free(a);
	server_note_conn_closed(srv);
}

/* ------------------------------------------------------------------ */
/* listening and accepting                                             */

static void format_peer(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, len, "ipv4:%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "ipv6:[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, len, "unix:");
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	rpc_server *srv = arg;
	struct accepted *a = malloc(sizeof(*a));
	unsigned i = atomic_fetch_add(&srv->next_io, 1) % (unsigned)srv->n_io;
	int one = 1;

	if (!a) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	a->fd = fd;
	a->io = &srv->io[i];
	format_peer(sa, a->peer, sizeof(a->peer));
	pthread_mutex_lock(&srv->state_lock);
	srv->open_conns++;
	pthread_mutex_unlock(&srv->state_lock);
	if (rpc_loop_post(a->io->loop, conn_attach, a) != 0) {
		close(fd);
		free(a);
		server_note_conn_closed(srv);
	}
}

/* Splits "host:port" / "[v6]:port" / ":port". */
static int split_addr(const char *addr, char *host, size_t hostlen,
		      char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');

		if (!end || end[1] != ':')
			return RPC_ERR_INVALID;
		hl = (size_t)(end - addr - 1);
		if (hl >= hostlen)
			return RPC_ERR_INVALID;
		memcpy(host, addr + 1, hl);
		host[hl] = 0;
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return RPC_ERR_INVALID;
		hl = (size_t)(colon - addr);
		if (hl >= hostlen)
			return RPC_ERR_INVALID;
		memcpy(host, addr, hl);
		host[hl] = 0;
	}
	if (!colon[1] || strlen(colon + 1) >= portlen ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return RPC_ERR_INVALID;
	snprintf(port, portlen, "%s", colon + 1);
	if (!host[0])
		snprintf(host, hostlen, "::");
	return 0;
}

int rpc_server_listen(rpc_server *srv, const char *addr)
{
	char host[256], port[16];
	struct addrinfo hints = { 0 }, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, zero = 0, rc;

	if (srv->started || srv->n_listeners == MAX_LISTENERS)
		return RPC_ERR_INVALID;
	if (split_addr(addr, host, sizeof(host), port, sizeof(port)))
		return RPC_ERR_INVALID;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return RPC_ERR_RESOLVE;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto io_error;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "[::]" serves IPv4 too (dual stack). */
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		goto io_error;
	freeaddrinfo(res);
	rc = srv->n_listeners++;
	srv->listeners[rc].fd = fd;
	srv->listeners[rc].port =
		ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
					: ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return rc;
io_error:
	rpc_log(RPC_LOG_ERROR, LOG_COMPONENT, "cannot listen on %s: %s", addr,
		strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return RPC_ERR_IO;
}

int rpc_server_port(const rpc_server *srv, int index)
{
	if (index < 0 || index >= srv->n_listeners)
		return -1;
	return srv->listeners[index].port;
}

/* ------------------------------------------------------------------ */
/* registration                                                        */

static int grow_methods(rpc_server *srv)
{
	size_t cap = srv->methods_cap ? srv->methods_cap * 2 : 64;
	struct reg_method *old = srv->methods;
	size_t old_cap = srv->methods_cap;
	struct reg_method *t = calloc(cap, sizeof(*t));

	if (!t)
		return RPC_ERR_NOMEM;
	for (size_t i = 0; i < old_cap; i++) {
		size_t j;

		if (!old[i].desc)
			continue;
		for (j = hash_path(old[i].desc->path) & (cap - 1); t[j].desc;
		     j = (j + 1) & (cap - 1))
			;
		t[j] = old[i];
	}
	free(old);
	srv->methods = t;
	srv->methods_cap = cap;
	return 0;
}

static int add_service(rpc_server *srv, const rpc_service_desc *svc)
{
	for (size_t i = 0; i < srv->n_services; i++)
		if (srv->services[i] == svc)
			return 0;
	if (srv->n_services == srv->services_cap) {
		size_t cap = srv->services_cap ? srv->services_cap * 2 : 8;
		const rpc_service_desc **p =
			realloc(srv->services, cap * sizeof(*p));

		if (!p)
			return RPC_ERR_NOMEM;
		srv->services = p;
		srv->services_cap = cap;
	}
	srv->services[srv->n_services++] = svc;
	return 0;
}

int rpc_server_add_method(rpc_server *srv, const rpc_service_desc *svc,
			  const rpc_method_desc *m, void (*impl)(void),
			  void *user)
{
	size_t j;

	if (srv->started || !impl)
		return RPC_ERR_INVALID;
	if (find_method(srv, m->path))
		return RPC_ERR_EXISTS;
	/* Keep the table at most half full so probes stay short. */
	if ((srv->n_methods + 1) * 2 > srv->methods_cap && grow_methods(srv))
		return RPC_ERR_NOMEM;
	if (add_service(srv, svc))
		return RPC_ERR_NOMEM;
	struct rpc_method_stats *stats = calloc(1, sizeof(*stats));

	if (!stats)
		return RPC_ERR_NOMEM;
	for (j = hash_path(m->path) & (srv->methods_cap - 1); srv->methods[j].desc;
	     j = (j + 1) & (srv->methods_cap - 1))
		;
	srv->methods[j] = (struct reg_method){ svc, m, impl, user, false, stats };
	srv->n_methods++;
	return 0;
}

void rpc_server_set_authenticator(rpc_server *srv, rpc_authenticator fn,
				  void *user)
{
	srv->authenticator = fn;
	srv->authenticator_user = user;
}

int rpc_server_set_inline(rpc_server *srv, const char *path)
{
	struct reg_method *m = (struct reg_method *)find_method(srv, path);

	if (!m || srv->started || m->desc->kind != RPC_UNARY)
		return RPC_ERR_INVALID;
	m->inline_ok = true;
	return 0;
}

size_t rpc_server_services(const rpc_server *srv, const rpc_service_desc **out,
			   size_t max)
{
	for (size_t i = 0; i < srv->n_services && i < max; i++)
		out[i] = srv->services[i];
	return srv->n_services;
}

int rpc_server_set_health(rpc_server *srv, const char *service,
			  rpc_serving_status status)
{
	return rpc_health_set(srv->health, service, status);
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */

rpc_server *rpc_server_new(const rpc_server_config *cfg)
{
	rpc_server *srv;

	rpc_loop_global_init();
	pthread_once(&h2_once, h2_init_once);
	if (!server_callbacks || !server_options)
		return NULL;
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	if (cfg)
		srv->cfg = *cfg;
	else
		rpc_server_config_defaults(&srv->cfg);
	if (srv->cfg.io_threads < 1)
		srv->cfg.io_threads = 1;
	if (srv->cfg.workers < 1)
		srv->cfg.workers = 1;
	pthread_mutex_init(&srv->state_lock, NULL);
	cond_init_monotonic(&srv->state_cond);
	pthread_mutex_init(&srv->jobs.lock, NULL);
	pthread_cond_init(&srv->jobs.cond, NULL);
	srv->health = rpc_health_new();
	if (!srv->health || rpc_health_register(srv->health, srv) != 0) {
		rpc_server_free(srv);
		return NULL;
	}
	return srv;
}

static void server_note_conn_closed(rpc_server *srv)
{
	pthread_mutex_lock(&srv->state_lock);
	srv->open_conns--;
	pthread_cond_broadcast(&srv->state_cond);
	pthread_mutex_unlock(&srv->state_lock);
}

static int start_io_threads(rpc_server *srv)
{
	srv->n_io = srv->cfg.io_threads;
	srv->io = calloc((size_t)srv->n_io, sizeof(*srv->io));
	if (!srv->io)
		return RPC_ERR_NOMEM;
	for (int i = 0; i < srv->n_io; i++) {
		struct io_thread *io = &srv->io[i];
		struct timeval sec = { 1, 0 };

		io->srv = srv;
		io->loop = rpc_loop_new("rpc-io");
		io->readbuf = malloc(READ_CHUNK);
		if (!io->loop || !io->readbuf)
			return RPC_ERR_NOMEM;
		io->flush_ev = event_new(rpc_loop_base(io->loop), -1, 0, on_flush, io);
		io->tick_ev = event_new(rpc_loop_base(io->loop), -1, EV_PERSIST,
					on_tick, io);
		if (!io->flush_ev || !io->tick_ev || event_add(io->tick_ev, &sec) ||
		    rpc_loop_start(io->loop))
			return RPC_ERR_IO;
	}
	return 0;
}

int rpc_server_start(rpc_server *srv)
{
	sigset_t block, old;
	int rc = 0;

	if (srv->started)
		return RPC_ERR_INVALID;
	if ((rc = rpc_reflection_register(srv)) != 0)
		return rc;
	/* Threads inherit this mask: SIGTERM/SIGINT reach only the thread
	 * that waits for them (rpc_server_run_until_signal). */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);

	srv->started = true;
	if ((rc = start_io_threads(srv)) != 0)
		goto out;
	srv->workers = calloc((size_t)srv->cfg.workers, sizeof(pthread_t));
	if (!srv->workers) {
		rc = RPC_ERR_NOMEM;
		goto out;
	}
	for (int i = 0; i < srv->cfg.workers; i++) {
		if (pthread_create(&srv->workers[i], NULL, worker_main, srv) != 0) {
			rc = RPC_ERR_IO;
			goto out;
		}
		srv->n_workers++;
	}
	srv->accept_loop = rpc_loop_new("rpc-accept");
	if (!srv->accept_loop) {
		rc = RPC_ERR_NOMEM;
		goto out;
	}
	for (int i = 0; i < srv->n_listeners; i++) {
		struct listener *l = &srv->listeners[i];

		l->ev = evconnlistener_new(rpc_loop_base(srv->accept_loop), on_accept,
					   srv, LEV_OPT_CLOSE_ON_FREE, -1, l->fd);
		if (!l->ev) {
			rc = RPC_ERR_IO;
			close(l->fd);
			l->fd = -1;
			goto out;
		}
	}
	if (rpc_loop_start(srv->accept_loop) != 0) {
		rc = RPC_ERR_IO;
		goto out;
	}
	rpc_health_set(srv->health, "", RPC_HEALTH_SERVING);
	for (size_t i = 0; i < srv->n_services; i++)
		rpc_health_set(srv->health, srv->services[i]->name,
			       RPC_HEALTH_SERVING);
	rpc_health_set(srv->health, RPC_HEALTH_LIVENESS, RPC_HEALTH_SERVING);
out:
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static void close_listeners(void *arg)
{
	rpc_server *srv = arg;

	for (int i = 0; i < srv->n_listeners; i++) {
		if (srv->listeners[i].ev) {
			evconnlistener_free(srv->listeners[i].ev);
			srv->listeners[i].ev = NULL;
			srv->listeners[i].fd = -1;
		}
	}
}

static void goaway_all(void *arg)
{
	struct io_thread *io = arg;

	for (struct conn *c = io->conns; c; c = c->next)
		conn_goaway(c, NGHTTP2_NO_ERROR, "server shutting down");
}

/* Past the drain timeout: cancel what is left and drop connections. */
static void force_close_all(void *arg)
{
	struct io_thread *io = arg;

	while (io->conns) {
		struct conn *c = io->conns;

		for (struct rpc_ctx *call = c->calls; call; call = call->conn_next)
			call_abort(call, RPC_UNAVAILABLE, "server shutting down");
		conn_flush(c);
		c->dead = true;
		conn_close(c);
	}
}

void rpc_server_shutdown(rpc_server *srv)
{
	pthread_mutex_lock(&srv->state_lock);
	if (srv->shutting_down || !srv->started) {
		pthread_mutex_unlock(&srv->state_lock);
		return;
	}
	srv->shutting_down = true;
	pthread_mutex_unlock(&srv->state_lock);

	rpc_health_shutdown(srv->health);
	rpc_loop_post(srv->accept_loop, close_listeners, srv);
	for (int i = 0; i < srv->n_io; i++)
		rpc_loop_post(srv->io[i].loop, goaway_all, &srv->io[i]);
}

void rpc_server_wait(rpc_server *srv)
{
	struct timespec until;
	bool timed_out = false;

	if (!srv->started)
		return;
	abs_timespec(srv->cfg.drain_timeout_ms * 1000000LL, &until);
	pthread_mutex_lock(&srv->state_lock);
	while (!srv->shutting_down)
		pthread_cond_wait(&srv->state_cond, &srv->state_lock);
	/* The drain clock starts when wait is called after shutdown; close
	 * enough, since callers wait right after shutting down. */
	while (srv->open_conns > 0 && !timed_out)
		timed_out = pthread_cond_timedwait(&srv->state_cond,
						   &srv->state_lock,
						   &until) == ETIMEDOUT;
	pthread_mutex_unlock(&srv->state_lock);
	if (timed_out) {
		srv->forced = true;
		rpc_log(RPC_LOG_WARN, LOG_COMPONENT,
			"drain timeout: cancelling calls still in flight");
		for (int i = 0; i < srv->n_io; i++)
			rpc_loop_post(srv->io[i].loop, force_close_all, &srv->io[i]);
	}
	/* Stopping the loops runs every queued task (including force_close)
	 * first; then the workers finish their current handlers. */
	for (int i = 0; i < srv->n_io; i++)
		rpc_loop_stop(srv->io[i].loop);
	pthread_mutex_lock(&srv->jobs.lock);
	srv->jobs.stop = true;
	pthread_cond_broadcast(&srv->jobs.cond);
	pthread_mutex_unlock(&srv->jobs.lock);
	for (int i = 0; i < srv->n_workers; i++)
		pthread_join(srv->workers[i], NULL);
	srv->n_workers = 0;
	rpc_loop_stop(srv->accept_loop);
	pthread_mutex_lock(&srv->state_lock);
	srv->stopped = true;
	pthread_mutex_unlock(&srv->state_lock);
}

int rpc_server_run_until_signal(rpc_server *srv)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigwait(&set, &sig);
	rpc_log(RPC_LOG_INFO, LOG_COMPONENT, "received %s, draining",
		sig == SIGTERM ? "SIGTERM" : "SIGINT");
	rpc_server_shutdown(srv);
	rpc_server_wait(srv);
	return srv->forced ? 1 : 0;
}

void rpc_server_free(rpc_server *srv)
{
	if (!srv)
		return;
	if (srv->started && !srv->stopped) {
		rpc_server_shutdown(srv);
		rpc_server_wait(srv);
	}
	for (int i = 0; i < srv->n_io; i++) {
		struct io_thread *io = &srv->io[i];

		/* Loops are stopped: close what is left without a flush. */
		while (io->conns) {
			io->conns->dead = true;
			conn_close(io->conns);
		}
		if (io->flush_ev)
			event_free(io->flush_ev);
		if (io->tick_ev)
			event_free(io->tick_ev);
		rpc_loop_free(io->loop);
		free(io->readbuf);
	}
	free(srv->io);
	/* Jobs never picked up (shutdown before a worker got to them). */
	while (srv->jobs.head) {
		struct rpc_ctx *call = srv->jobs.head;

		srv->jobs.head = call->next_job;
		call_unref(call);
	}
	close_listeners(srv);
	for (int i = 0; i < srv->n_listeners; i++)
		if (srv->listeners[i].fd >= 0)
			close(srv->listeners[i].fd);
	rpc_loop_free(srv->accept_loop);
	rpc_health_free(srv->health);
	for (size_t i = 0; i < srv->methods_cap; i++)
		free(srv->methods[i].stats);
	free(srv->methods);
	free(srv->services);
	free(srv->workers);
	pthread_mutex_destroy(&srv->jobs.lock);
	pthread_cond_destroy(&srv->jobs.cond);
	pthread_mutex_destroy(&srv->state_lock);
	pthread_cond_destroy(&srv->state_cond);
	free(srv);
}

/* ------------------------------------------------------------------ */
/* metrics                                                             */

/* The names grpc-go's Prometheus interceptors use, so dashboards made for
 * them read estore's services too. */
void rpc_server_metrics_write(rpc_server *srv, rpc_text *t)
{
	static const char *const kind_names[] = {
		[RPC_UNARY] = "unary",
		[RPC_CLIENT_STREAMING] = "client_stream",
		[RPC_SERVER_STREAMING] = "server_stream",
		[RPC_BIDI_STREAMING] = "bidi_stream",
	};
	char labels[512];
	int conns;

	rpc_text_printf(t, "# HELP grpc_server_handled_total RPCs completed on the server, "
			   "by method and status code.\n"
			   "# TYPE grpc_server_handled_total counter\n");
	for (size_t i = 0; i < srv->methods_cap; i++) {
		const struct reg_method *m = &srv->methods[i];

		if (!m->desc || !m->stats)
			continue;
		for (int c = 0; c <= RPC_CODE_MAX; c++) {
			uint64_t v = atomic_load_explicit(&m->stats->by_code[c],
							  memory_order_relaxed);

			if (v)
				rpc_text_printf(t, "grpc_server_handled_total{grpc_type=\"%s\","
						   "grpc_service=\"%s\",grpc_method=\"%s\","
						   "grpc_code=\"%s\"} %llu\n",
						kind_names[m->desc->kind], m->svc->name,
						m->desc->name, rpc_code_name((rpc_code)c),
						(unsigned long long)v);
		}
	}
	for (int c = 0; c <= RPC_CODE_MAX; c++) {
		uint64_t v = atomic_load_explicit(&srv->unrouted[c], memory_order_relaxed);

		if (v)
			rpc_text_printf(t, "grpc_server_handled_total{grpc_type=\"unknown\","
					   "grpc_service=\"unknown\",grpc_method=\"unknown\","
					   "grpc_code=\"%s\"} %llu\n",
					rpc_code_name((rpc_code)c), (unsigned long long)v);
	}
	rpc_text_printf(t, "# HELP grpc_server_handling_seconds Time from a call's "
			   "headers to its end.\n"
			   "# TYPE grpc_server_handling_seconds histogram\n");
	for (size_t i = 0; i < srv->methods_cap; i++) {
		const struct reg_method *m = &srv->methods[i];

		if (!m->desc || !m->stats)
			continue;
		snprintf(labels, sizeof(labels),
			 "grpc_type=\"%s\",grpc_service=\"%s\",grpc_method=\"%s\"",
			 kind_names[m->desc->kind], m->svc->name, m->desc->name);
		rpc_latency_write(t, "grpc_server_handling_seconds", labels,
				  &m->stats->latency);
	}
	pthread_mutex_lock(&srv->state_lock);
	conns = srv->open_conns;
	pthread_mutex_unlock(&srv->state_lock);
	rpc_text_printf(t, "# HELP grpc_server_calls_in_flight Calls started and not ended.\n"
			   "# TYPE grpc_server_calls_in_flight gauge\n"
			   "grpc_server_calls_in_flight %ld\n"
			   "# HELP grpc_server_connections_open Client connections open.\n"
			   "# TYPE grpc_server_connections_open gauge\n"
			   "grpc_server_connections_open %d\n",
			atomic_load_explicit(&srv->calls_in_flight, memory_order_relaxed),
			conns);
}
