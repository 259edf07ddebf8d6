/*
 * channel.c - gRPC client channel: DNS, round-robin subchannels, HTTP/2
 * connections on nghttp2, unary, async and streaming calls.
 *
 * Threads. Everything that touches a connection, an nghttp2 session, a
 * timer or the channel's lists runs on the channel's loop thread. A user
 * thread builds a call, hands it over with rpc_loop_post and then waits
 * on the call's condition variable (blocking calls and streams) or gets
 * its callback on the loop thread (async calls). The only state shared
 * across threads lives in a call under call->mu: the outgoing byte queue,
 * the incoming message queue and the final result. A call is reference
 * counted: one reference for the user side, one for the loop side, one
 * per posted function that names it.
 *
 * DNS runs on a helper thread, so a slow resolver never stalls the loop.
 *
 * Writes are coalesced: anything that makes a session want to write only
 * marks its connection dirty and activates one "flush" event, which runs
 * after the other callbacks of the loop pass, dispatches queued calls and
 * then serializes every dirty session with nghttp2_session_mem_send.
 *
 * A connection is only freed from a top-level event callback, never from
 * inside an nghttp2 callback: those only set flags and complete calls.
 */
#include "rpc/channel.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "rpc/codec.h"
#include "rpc/log.h"
#include "rpc/loop.h"
#include "rpc/percent.h"
#include "rpc/timeout.h"

#define LOG_COMPONENT "rpc.channel"

/* Bytes a stream may have queued for sending before send() blocks. */
#define SEND_QUEUE_CAP (4u << 20)
/* Serialized HTTP/2 output held per connection before we stop asking
 * nghttp2 for more: the socket is the bottleneck then. */
#define OUT_HIGH_WATER (256u << 10)
/* Reads per readiness event, so one busy connection cannot starve others. */
#define READS_PER_EVENT 4
/* Never ask DNS again sooner than this after a connection failure. */
#define MIN_RERESOLVE_NS (1000LL * 1000 * 1000)
/* A channel in use asks DNS again this often: the addresses behind a name
 * change (a headless Service scaled up or down) and new replicas should
 * get calls without waiting for an old one to fail. */
#define DNS_REFRESH_NS (30LL * 1000 * 1000 * 1000)
#define STREAM_WINDOW (1u << 20)
#define CONN_WINDOW (16 << 20)
#define MAX_HEADER_LIST (64u << 10)
/* Assumed until the server's SETTINGS arrive (RFC 9113 recommends >= 100). */
#define INITIAL_PEER_STREAMS 100

/* ---- small intrusive list ------------------------------------------ */

struct link {
	struct link *prev, *next;
};

#define container_of(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

static void list_init(struct link *h)
{
	h->prev = h->next = h;
}

static bool list_empty(const struct link *h)
{
	return h->next == h;
}

static void list_push(struct link *h, struct link *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static void list_push_front(struct link *h, struct link *n)
{
	n->prev = h;
	n->next = h->next;
	h->next->prev = n;
	h->next = n;
}

static void list_del(struct link *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}

/* ---- types ------------------------------------------------------------ */

enum call_kind { CALL_BLOCKING, CALL_ASYNC, CALL_STREAM };

enum call_state {
	CALL_NEW,        /* not on any list (being started or between tries) */
	CALL_QUEUED,     /* in ch->queue, waiting for a connection */
	CALL_RETRY_WAIT, /* in ch->retrying, waiting for its retry timer */
	CALL_ACTIVE,     /* in conn->calls, has a stream */
	CALL_DONE,
};

struct rmsg {
	struct rmsg *next;
	ProtobufCMessage *msg;
};

struct conn;

/* Every call is a stream internally; unary calls just never expose it. */
typedef struct rpc_client_stream call;

struct rpc_client_stream {
	rpc_channel *ch;
	const rpc_method_desc *m;
	enum call_kind kind;
	atomic_int refs;

	/* Fixed at creation. */
	long long deadline_ns;          /* 0 = none */
	rpc_metadata req_md;
	rpc_metadata *headers_out, *trailers_out;
	rpc_unary_done done_cb;
	void *done_user;
	bool retain_send;               /* unary: keep the request for retries */

	/* Loop thread only. */
	enum call_state state;
	struct link link;
	struct conn *conn;
	int32_t stream_id;
	struct event *deadline_ev, *retry_ev;
	int attempts;                   /* retries made so far */
	bool got_response;              /* response bytes arrived: never retry */
	bool remote_ended;
	bool bad_http;                  /* non-200 or non-gRPC content type */
	int http_status;
	bool have_status;
	int grpc_status;
	char *grpc_message;
	rpc_metadata hdr_md, trl_md;
	rpc_msg_reader reader;
	int nmsgs;
	ProtobufCMessage *resp;         /* unary reply */
	rpc_code fail_code;             /* set by the message callback */
	const char *fail_msg;

	/* Shared with the user thread, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *sbuf;
	size_t slen, soff, scap;
	uint64_t sent_total;            /* bytes handed to nghttp2 */
	bool send_closed;
	bool kick_posted;
	struct rmsg *rq_head, *rq_tail;
	bool done;
	rpc_code code;
	char *message;
};

struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* One resolved address and its current connection. */
struct subch {
	struct addr addr;
	char name[INET6_ADDRSTRLEN + 8];
	struct conn *conn;        /* connecting or usable; NULL when idle */
	bool in_backoff;
	long long retry_at_ns;    /* no new connect before this */
	long long backoff_ms;     /* next backoff step, before jitter */
	bool seen;                /* scratch for merging a DNS answer */
};

struct conn {
	rpc_channel *ch;
	struct subch *sub;        /* NULL once draining */
	struct link link;         /* in ch->conns */
	struct link dirty_link;   /* in ch->dirty while dirty */
	char name[INET6_ADDRSTRLEN + 8];
	int fd;
	struct event *rev, *wev;
	nghttp2_session *sess;
	struct evbuffer *out;
	struct link calls;
	size_t ncalls;
	bool connecting;
	bool got_settings;        /* the server spoke HTTP/2 to us */
	bool draining;            /* no new calls (GOAWAY, or address gone) */
	bool terminated;          /* we queued our own GOAWAY */
};

struct resolve_result {
	rpc_channel *ch;
	int err;                  /* 0, or an EAI_* code */
	size_t n;
	struct addr addrs[];
};

struct rpc_channel {
	char *target, *host, *port;
	rpc_channel_config cfg;
	rpc_loop *loop;
	bool own_loop;            /* false: a caller's loop (rpc_channel_new_on_loop) */
	struct event_base *base;
	nghttp2_session_callbacks *cbs;
	atomic_bool closing;      /* set by rpc_channel_free: refuse new calls */

	/* Resolver thread handshake, under rmu. */
	pthread_t rthread;
	bool rthread_started;
	bool loop_started;
	pthread_mutex_t rmu;
	pthread_cond_t rcv;
	bool rreq, rstop;

	/* Loop thread only. */
	bool shutdown;
	struct event *flush_ev;
	bool flush_active;
	bool dispatch_wanted;
	struct link queue;        /* CALL_QUEUED */
	struct link retrying;     /* CALL_RETRY_WAIT */
	struct link conns;
	struct link dirty;
	struct subch **subs;
	size_t nsubs;
	size_t rr;
	bool resolving;
	long long last_resolve_ns;
	long long resolve_retry_at_ns;
	long long resolve_backoff_ms;
	char last_error[192];
	uint64_t rng;
	uint8_t rbuf[64 * 1024];
};

/* ---- helpers ------------------------------------------------------------ */

void rpc_channel_config_defaults(rpc_channel_config *cfg)
{
	cfg->connect_timeout_ms = 5000;
	cfg->backoff_initial_ms = 200;
	cfg->backoff_max_ms = 30000;
	cfg->backoff_multiplier = 1.6;
	cfg->backoff_jitter = 0.2;
	cfg->max_retries = 3;
	cfg->max_recv_msg = RPC_DEFAULT_MAX_MSG;
	cfg->default_timeout_ms = 0;
}

static double rng_unit(rpc_channel *ch)
{
	/* xorshift64: jitter needs spread, not cryptographic quality. */
	uint64_t x = ch->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	ch->rng = x;
	return (double)(x >> 11) / (double)(1ULL << 53);
}

/* Returns the jittered delay for the current step and advances *step_ms. */
static long long backoff_step(rpc_channel *ch, long long *step_ms)
{
	const rpc_channel_config *cfg = &ch->cfg;
	double d = (double)*step_ms;
	double j = cfg->backoff_jitter * (2.0 * rng_unit(ch) - 1.0);
	long long delay = (long long)(d * (1.0 + j));
	double next = d * cfg->backoff_multiplier;

	if (next > (double)cfg->backoff_max_ms)
		next = (double)cfg->backoff_max_ms;
	*step_ms = (long long)next;
	return delay < 1 ? 1 : delay;
}

static struct timeval tv_from_ns(long long ns)
{
	struct timeval tv;

	if (ns < 0)
		ns = 0;
	tv.tv_sec = (time_t)(ns / 1000000000LL);
	tv.tv_usec = (suseconds_t)((ns % 1000000000LL) / 1000);
	return tv;
}

static void addr_name(const struct addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *s = (const void *)&a->ss;
		inet_ntop(AF_INET, &s->sin_addr, host, sizeof(host));
		port = ntohs(s->sin_port);
		snprintf(buf, len, "%s:%u", host, port);
	} else {
		const struct sockaddr_in6 *s = (const void *)&a->ss;
		inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof(host));
		port = ntohs(s->sin6_port);
		snprintf(buf, len, "[%s]:%u", host, port);
	}
}

static void set_last_error(rpc_channel *ch, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_last_error(rpc_channel *ch, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(ch->last_error, sizeof(ch->last_error), fmt, ap);
	va_end(ap);
}

/* ---- calls: lifetime ------------------------------------------------- */

static void call_ref(call *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void rq_clear(call *c)
{
	while (c->rq_head) {
		struct rmsg *r = c->rq_head;
		c->rq_head = r->next;
		protobuf_c_message_free_unpacked(r->msg, NULL);
		free(r);
	}
	c->rq_tail = NULL;
}

static void call_unref(call *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Timers were freed on the loop thread when the call completed. */
	rpc_metadata_dispose(&c->req_md);
	rpc_metadata_dispose(&c->hdr_md);
	rpc_metadata_dispose(&c->trl_md);
	rpc_msg_reader_dispose(&c->reader);
	if (c->resp)
		protobuf_c_message_free_unpacked(c->resp, NULL);
	rq_clear(c);
	free(c->grpc_message);
	free(c->message);
	free(c->sbuf);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static call *call_new(rpc_channel *ch, const rpc_method_desc *m,
		      const rpc_call_opts *opts, enum call_kind kind, int *err)
{
	call *c = calloc(1, sizeof(*c));
	long long timeout_ms;

	*err = RPC_ERR_NOMEM;
	if (!c)
		return NULL;
	c->ch = ch;
	c->m = m;
	c->kind = kind;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	rpc_metadata_init(&c->req_md);
	rpc_metadata_init(&c->hdr_md);
	rpc_metadata_init(&c->trl_md);
	rpc_msg_reader_init(&c->reader, ch->cfg.max_recv_msg);
	list_init(&c->link);

	timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms
						  : ch->cfg.default_timeout_ms;
	if (opts && opts->deadline_ns > 0)
		c->deadline_ns = opts->deadline_ns;
	else if (timeout_ms > 0)
		c->deadline_ns = rpc_now_ns() + timeout_ms * 1000000LL;

	if (opts) {
		c->headers_out = opts->headers_out;
		c->trailers_out = opts->trailers_out;
		if (opts->metadata) {
			/* Copied: an async caller may free its list on return. */
			for (size_t i = 0; i < opts->metadata->count; i++) {
				const rpc_md_entry *e = &opts->metadata->items[i];
				int rv = rpc_metadata_add(&c->req_md, e->key,
							  e->value, e->value_len);
				if (rv < 0) {
					*err = rv;
					call_unref(c);
					return NULL;
				}
			}
		}
	}
	*err = 0;
	return c;
}

/* Appends one length-prefixed message to the send queue (caller holds mu
 * or owns the call exclusively). */
static int sbuf_append_msg(call *c, const ProtobufCMessage *msg)
{
	size_t sz = protobuf_c_message_get_packed_size(msg);
	size_t need;

	if (sz > UINT32_MAX - RPC_MSG_PREFIX_LEN)
		return RPC_ERR_TOO_LARGE;
	if (c->soff > 0 && c->soff == c->slen)
		c->soff = c->slen = 0;
	need = c->slen + RPC_MSG_PREFIX_LEN + sz;
	if (need > c->scap) {
		size_t cap = c->scap ? c->scap : 256;
		uint8_t *nb;

		/* Reclaim what nghttp2 already consumed before growing. */
		if (c->soff > 0 && !c->retain_send) {
			memmove(c->sbuf, c->sbuf + c->soff, c->slen - c->soff);
			c->slen -= c->soff;
			c->soff = 0;
			need = c->slen + RPC_MSG_PREFIX_LEN + sz;
		}
		while (cap < need)
			cap *= 2;
		if (cap != c->scap) {
			nb = realloc(c->sbuf, cap);
			if (!nb)
				return RPC_ERR_NOMEM;
			c->sbuf = nb;
			c->scap = cap;
		}
	}
	rpc_msg_prefix(c->sbuf + c->slen, false, (uint32_t)sz);
	protobuf_c_message_pack(msg, c->sbuf + c->slen + RPC_MSG_PREFIX_LEN);
	c->slen = need;
	return 0;
}

/* ---- forward declarations ------------------------------------------ */

static void ch_kick(rpc_channel *ch);
static void conn_mark_dirty(struct conn *cn);
static void request_resolve(rpc_channel *ch, bool forced);

/* ---- calls: completion and retry ------------------------------------- */

/* Takes the call off its stream. `cancel` sends RST_STREAM CANCEL: only
 * for a stream the server has not ended, because a reset after a complete
 * response is what rapid-reset protection counts against us. */
static void call_detach_stream(call *c, bool cancel)
{
	struct conn *cn = c->conn;

	if (!cn)
		return;
	list_del(&c->link);
	cn->ncalls--;
	c->conn = NULL;
	/* The data source looks the call up by stream: with NULL it finishes
	 * our half with an empty END_STREAM instead of touching freed memory. */
	nghttp2_session_set_stream_user_data(cn->sess, c->stream_id, NULL);
	if (cancel)
		nghttp2_submit_rst_stream(cn->sess, NGHTTP2_FLAG_NONE,
					  c->stream_id, NGHTTP2_CANCEL);
	else
		nghttp2_session_resume_data(cn->sess, c->stream_id);
	conn_mark_dirty(cn);
	/* A stream slot opened up. */
	if (!list_empty(&c->ch->queue))
		ch_kick(c->ch);
}

/* Removes the call from whatever list holds it; state becomes CALL_NEW. */
static void call_unlink(call *c, bool cancel)
{
	switch (c->state) {
	case CALL_QUEUED:
		list_del(&c->link);
		break;
	case CALL_RETRY_WAIT:
		list_del(&c->link);
		event_del(c->retry_ev);
		break;
	case CALL_ACTIVE:
		call_detach_stream(c, cancel && !c->remote_ended);
		break;
	case CALL_NEW:
	case CALL_DONE:
		break;
	}
	if (c->state != CALL_DONE)
		c->state = CALL_NEW;
}

static void md_move(rpc_metadata *dst, rpc_metadata *src)
{
	if (dst) {
		for (size_t i = 0; i < src->count; i++) {
			const rpc_md_entry *e = &src->items[i];
			/* Best effort: a copy failing under memory pressure
			 * loses metadata, not the call's result. */
			(void)rpc_metadata_add(dst, e->key, e->value,
					       e->value_len);
		}
	}
	rpc_metadata_dispose(src);
	rpc_metadata_init(src);
}

/* The one way a call ends. Runs on the loop thread, exactly once. */
static void call_complete(call *c, rpc_code code, const char *msg)
{
	if (c->state == CALL_DONE)
		return;
	call_unlink(c, true);
	c->state = CALL_DONE;
	if (c->deadline_ev) {
		event_free(c->deadline_ev);
		c->deadline_ev = NULL;
	}
	if (c->retry_ev) {
		event_free(c->retry_ev);
		c->retry_ev = NULL;
	}
	md_move(c->headers_out, &c->hdr_md);
	md_move(c->trailers_out, &c->trl_md);
	if (code != RPC_OK && c->resp) {
		protobuf_c_message_free_unpacked(c->resp, NULL);
		c->resp = NULL;
	}
	if (rpc_log_enabled(RPC_LOG_DEBUG))
		rpc_log(RPC_LOG_DEBUG, LOG_COMPONENT, "%s %s: %s %s",
			c->ch->target, c->m->path, rpc_code_name(code),
			msg ? msg : "");

	if (c->kind == CALL_ASYNC) {
		ProtobufCMessage *resp = c->resp;

		c->resp = NULL;
		c->done_cb(c->done_user, code, msg ? msg : "", resp);
	} else {
		pthread_mutex_lock(&c->mu);
		c->done = true;
		c->code = code;
		c->message = msg ? strdup(msg) : NULL;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);
	}
	call_unref(c); /* the loop's reference */
}

static void call_reset_attempt(call *c)
{
	c->got_response = false;
	c->remote_ended = false;
	c->bad_http = false;
	c->http_status = 0;
	c->have_status = false;
	free(c->grpc_message);
	c->grpc_message = NULL;
	rpc_metadata_dispose(&c->hdr_md);
	rpc_metadata_init(&c->hdr_md);
	rpc_metadata_dispose(&c->trl_md);
	rpc_metadata_init(&c->trl_md);
	rpc_msg_reader_dispose(&c->reader);
	rpc_msg_reader_init(&c->reader, c->ch->cfg.max_recv_msg);
	c->nmsgs = 0;
	if (c->resp) {
		protobuf_c_message_free_unpacked(c->resp, NULL);
		c->resp = NULL;
	}
	pthread_mutex_lock(&c->mu);
	if (c->retain_send)
		c->soff = 0;
	pthread_mutex_unlock(&c->mu);
}

static void call_enqueue(call *c, bool front)
{
	c->state = CALL_QUEUED;
	if (front)
		list_push_front(&c->ch->queue, &c->link);
	else
		list_push(&c->ch->queue, &c->link);
	ch_kick(c->ch);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	call *c = arg;

	(void)fd;
	(void)what;
	list_del(&c->link);
	c->state = CALL_NEW;
	call_enqueue(c, false);
}

/*
 * The call (already unlinked, CALL_NEW) failed with UNAVAILABLE. Retries
 * when that cannot duplicate work the caller did not allow: nothing came
 * back from the server, the request can be replayed, and either the method
 * is idempotent or the server provably never saw the request
 * (`transparent`: refused stream, GOAWAY). Otherwise completes.
 */
static void call_unavailable(call *c, const char *msg, bool transparent)
{
	rpc_channel *ch = c->ch;
	long long delay_ms = 0, step;
	bool replayable;

	pthread_mutex_lock(&c->mu);
	replayable = c->retain_send || c->sent_total == 0;
	pthread_mutex_unlock(&c->mu);

	if (ch->shutdown || c->got_response || !replayable ||
	    c->attempts >= ch->cfg.max_retries ||
	    !(transparent || c->m->idempotent))
		goto fail;
	if (!transparent) {
		step = ch->cfg.backoff_initial_ms;
		for (int i = 0; i < c->attempts; i++)
			backoff_step(ch, &step);
		delay_ms = backoff_step(ch, &step);
	}
	if (c->deadline_ns &&
	    rpc_now_ns() + delay_ms * 1000000LL >= c->deadline_ns)
		goto fail;

	c->attempts++;
	call_reset_attempt(c);
	if (delay_ms == 0) {
		call_enqueue(c, true);
		return;
	}
	if (!c->retry_ev) {
		c->retry_ev = evtimer_new(ch->base, retry_cb, c);
		if (!c->retry_ev)
			goto fail;
	}
	struct timeval tv = tv_from_ns(delay_ms * 1000000LL);
	if (evtimer_add(c->retry_ev, &tv) != 0)
		goto fail;
	c->state = CALL_RETRY_WAIT;
	list_push(&ch->retrying, &c->link);
	return;
fail:
	call_complete(c, RPC_UNAVAILABLE, msg);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	call_complete(arg, RPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* ---- response handling (nghttp2 callbacks) ------------------------------ */

static call *stream_call(nghttp2_session *s, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static ssize_t data_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf,
			    size_t length, uint32_t *flags,
			    nghttp2_data_source *src, void *user)
{
	call *c = stream_call(s, id);
	size_t n;
	ssize_t rv;

	(void)src;
	(void)user;
	if (!c) {
		/* Call over (the server already answered): end our half
		 * politely rather than resetting the stream. */
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return 0;
	}
	pthread_mutex_lock(&c->mu);
	n = c->slen - c->soff;
	if (n > length)
		n = length;
	if (n > 0)
		memcpy(buf, c->sbuf + c->soff, n);
	c->soff += n;
	c->sent_total += n;
	if (!c->retain_send && c->soff == c->slen)
		c->soff = c->slen = 0;
	if (c->soff == c->slen && c->send_closed)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	rv = (ssize_t)n;
	if (n == 0 && !(*flags & NGHTTP2_DATA_FLAG_EOF))
		rv = NGHTTP2_ERR_DEFERRED; /* resumed by the next send */
	else if (n > 0 && c->kind == CALL_STREAM)
		pthread_cond_broadcast(&c->cv); /* a sender may wait for room */
	pthread_mutex_unlock(&c->mu);
	return rv;
}

static int on_message(void *user, const uint8_t *data, size_t len,
		      bool compressed)
{
	call *c = user;
	ProtobufCMessage *msg;

	if (compressed) {
		/* We never offer an encoding, so a compressed reply is a
		 * server bug. */
		c->fail_code = RPC_INTERNAL;
		c->fail_msg = "compressed message without negotiated encoding";
		return 1;
	}
	if (c->kind != CALL_STREAM && c->nmsgs > 0) {
		c->fail_code = RPC_UNIMPLEMENTED;
		c->fail_msg = "more than one response to a unary call";
		return 1;
	}
	msg = protobuf_c_message_unpack(c->m->output, NULL, len, data);
	if (!msg) {
		c->fail_code = RPC_INTERNAL;
		c->fail_msg = "cannot parse response message";
		return 1;
	}
	c->nmsgs++;
	if (c->kind != CALL_STREAM) {
		c->resp = msg;
		return 0;
	}
	struct rmsg *r = malloc(sizeof(*r));
	if (!r) {
		protobuf_c_message_free_unpacked(msg, NULL);
		c->fail_code = RPC_RESOURCE_EXHAUSTED;
		c->fail_msg = "out of memory";
		return 1;
	}
	r->next = NULL;
	r->msg = msg;
	pthread_mutex_lock(&c->mu);
	if (c->rq_tail)
		c->rq_tail->next = r;
	else
		c->rq_head = r;
	c->rq_tail = r;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return 0;
}

static int on_data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t id,
			    const uint8_t *data, size_t len, void *user)
{
	call *c = stream_call(s, id);
	int rv;

	(void)flags;
	(void)user;
	if (!c)
		return 0;
	c->got_response = true;
	if (c->bad_http)
		return 0; /* an HTML error page or the like: only :status counts */
	rv = rpc_msg_reader_feed(&c->reader, data, len, on_message, c);
	if (rv == 0)
		return 0;
	if (rv == RPC_ERR_TOO_LARGE) {
		char msg[96];
		snprintf(msg, sizeof(msg),
			 "received message larger than max (%u bytes)",
			 c->ch->cfg.max_recv_msg);
		call_complete(c, RPC_RESOURCE_EXHAUSTED, msg);
	} else if (rv == RPC_ERR_NOMEM) {
		call_complete(c, RPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		call_complete(c, c->fail_code, c->fail_msg);
	}
	return 0;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	return len == n && memcmp(name, lit, n) == 0;
}

static int on_begin_headers_cb(nghttp2_session *s, const nghttp2_frame *f,
			       void *user)
{
	call *c = stream_call(s, f->hd.stream_id);

	(void)user;
	if (c)
		c->got_response = true;
	return 0;
}

static int on_header_cb(nghttp2_session *s, const nghttp2_frame *f,
			const uint8_t *name, size_t namelen,
			const uint8_t *value, size_t valuelen, uint8_t flags,
			void *user)
{
	call *c;
	bool trailers;

	(void)flags;
	(void)user;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	c = stream_call(s, f->hd.stream_id);
	if (!c)
		return 0;
	trailers = f->headers.cat != NGHTTP2_HCAT_RESPONSE;

	if (name_is(name, namelen, ":status")) {
		int st = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			st = st * 10 + (value[i] - '0');
		c->http_status = st;
		if (st != 200)
			c->bad_http = true;
	} else if (name_is(name, namelen, "grpc-status")) {
		int code = 0;
		bool ok = valuelen > 0 && valuelen <= 3;
		for (size_t i = 0; ok && i < valuelen; i++) {
			if (value[i] < '0' || value[i] > '9')
				ok = false;
			else
				code = code * 10 + (value[i] - '0');
		}
		c->have_status = true;
		/* "Error parsing returned status" is UNKNOWN in the spec. */
		c->grpc_status = ok && code <= RPC_CODE_MAX ? code : RPC_UNKNOWN;
	} else if (name_is(name, namelen, "grpc-message")) {
		free(c->grpc_message);
		c->grpc_message = rpc_percent_decode((const char *)value,
						     valuelen, NULL);
	} else if (name_is(name, namelen, "content-type")) {
		if (!trailers && (valuelen < 16 ||
				  memcmp(value, "application/grpc", 16) != 0))
			c->bad_http = true;
	} else if (namelen > 0 && name[0] != ':' &&
		   !(namelen >= 5 && memcmp(name, "grpc-", 5) == 0)) {
		rpc_metadata *md = trailers ? &c->trl_md : &c->hdr_md;
		/* Invalid entries are dropped, not fatal: metadata is
		 * advisory and the status still matters. */
		(void)rpc_metadata_add_wire(md, (const char *)name, namelen,
					    (const char *)value, valuelen);
	}
	return 0;
}

/* The server ended the stream: derive the status as the gRPC HTTP/2 spec
 * says and complete. */
static void call_finalize(call *c)
{
	rpc_code code;
	const char *msg;
	char buf[64];

	c->remote_ended = true;
	if (!c->have_status) {
		/* No grpc-status: the HTTP status decides (gRPC's mapping, which
		 * sends a bare 200 to UNKNOWN: the response is broken). */
		code = rpc_code_from_http_status(c->http_status);
		if (c->http_status != 200)
			snprintf(buf, sizeof(buf), "HTTP status %d", c->http_status);
		else
			snprintf(buf, sizeof(buf), "%s", c->bad_http
				 ? "response is not gRPC (content-type)"
				 : "missing grpc-status");
		msg = buf;
	} else {
		code = (rpc_code)c->grpc_status;
		msg = c->grpc_message;
	}
	if (code == RPC_OK && rpc_msg_reader_partial(&c->reader)) {
		code = RPC_INTERNAL;
		msg = "stream ended inside a message";
	} else if (code == RPC_OK && c->kind != CALL_STREAM && c->nmsgs != 1) {
		code = RPC_UNIMPLEMENTED;
		msg = "no response to a unary call";
	}
	call_complete(c, code, msg);
}

static int on_frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f,
			    void *user)
{
	struct conn *cn = user;
	call *c;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		c = stream_call(s, f->hd.stream_id);
		if (!c || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
			break;
		if (f->hd.type == NGHTTP2_HEADERS &&
		    f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
			/* Trailers-only: that one block carries the status,
			 * and its metadata are trailers. */
			rpc_metadata tmp = c->trl_md;
			c->trl_md = c->hdr_md;
			c->hdr_md = tmp;
		}
		call_finalize(c);
		break;
	case NGHTTP2_SETTINGS:
		if (f->hd.flags & NGHTTP2_FLAG_ACK)
			break;
		if (!cn->got_settings) {
			cn->got_settings = true;
			if (cn->sub) {
				/* A working connection ends the backoff. */
				cn->sub->backoff_ms = cn->ch->cfg.backoff_initial_ms;
				cn->sub->in_backoff = false;
			}
		}
		ch_kick(cn->ch); /* the stream limit may have changed */
		break;
	case NGHTTP2_GOAWAY: {
		int32_t last = f->goaway.last_stream_id;
		struct link *l, *next;

		rpc_log(f->goaway.error_code ? RPC_LOG_WARN : RPC_LOG_INFO,
			LOG_COMPONENT, "%s: GOAWAY from %s (%s, last stream %d)",
			cn->ch->target, cn->name,
			nghttp2_http2_strerror(f->goaway.error_code), last);
		/* New calls go to a fresh connection on the same address. */
		cn->draining = true;
		if (cn->sub && cn->sub->conn == cn)
			cn->sub->conn = NULL;
		cn->sub = NULL;
		/* Streams above last_stream_id were never processed: retry
		 * them anywhere else. */
		for (l = cn->calls.next; l != &cn->calls; l = next) {
			next = l->next;
			c = container_of(l, call, link);
			if (c->stream_id <= last)
				continue;
			call_unlink(c, false);
			call_unavailable(c, "connection going away (GOAWAY)",
					 true);
		}
		ch_kick(cn->ch);
		break;
	}
	default:
		break;
	}
	return 0;
}

static int on_frame_not_send_cb(nghttp2_session *s, const nghttp2_frame *f,
				int lib_error, void *user)
{
	struct conn *cn = user;
	struct link *l;

	(void)s;
	if (f->hd.type != NGHTTP2_HEADERS ||
	    f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	/* The request never left: the stream may not exist in nghttp2, so
	 * find the call by its id among this connection's calls. */
	for (l = cn->calls.next; l != &cn->calls; l = l->next) {
		call *c = container_of(l, call, link);
		if (c->stream_id != f->hd.stream_id)
			continue;
		call_unlink(c, false);
		call_unavailable(c, nghttp2_strerror(lib_error), true);
		break;
	}
	return 0;
}

static int on_stream_close_cb(nghttp2_session *s, int32_t id,
			      uint32_t error_code, void *user)
{
	call *c = stream_call(s, id);
	char msg[96];

	(void)user;
	if (!c)
		return 0;
	/* Closed without END_STREAM from the server (we finalize on that):
	 * a reset from the server or a session-level failure. */
	call_unlink(c, false);
	snprintf(msg, sizeof(msg), "stream reset by server: %s",
		 nghttp2_http2_strerror(error_code));
	switch (error_code) {
	case NGHTTP2_REFUSED_STREAM:
		call_unavailable(c, msg, true);
		break;
	case NGHTTP2_CANCEL:
		call_complete(c, RPC_CANCELLED, msg);
		break;
	case NGHTTP2_ENHANCE_YOUR_CALM:
		call_complete(c, RPC_RESOURCE_EXHAUSTED, msg);
		break;
	case NGHTTP2_INADEQUATE_SECURITY:
		call_complete(c, RPC_PERMISSION_DENIED, msg);
		break;
	default:
		call_complete(c, RPC_INTERNAL, msg);
		break;
	}
	return 0;
}

/* nghttp2 copies the table into each session, so one per channel is
 * enough and it can be built before the loop starts. */
static int callbacks_new(nghttp2_session_callbacks **out)
{
	nghttp2_session_callbacks *cbs;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return RPC_ERR_NOMEM;
	nghttp2_session_callbacks_set_on_begin_headers_callback(
		cbs, on_begin_headers_cb);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
		cbs, on_data_chunk_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
							      on_frame_recv_cb);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(
		cbs, on_frame_not_send_cb);
	nghttp2_session_callbacks_set_on_stream_close_callback(
		cbs, on_stream_close_cb);
	*out = cbs;
	return 0;
}

/* ---- connections ----------------------------------------------------- */

static void conn_mark_dirty(struct conn *cn)
{
	rpc_channel *ch = cn->ch;

	if (cn->dirty_link.next == &cn->dirty_link)
		list_push(&ch->dirty, &cn->dirty_link);
	if (!ch->flush_active) {
		ch->flush_active = true;
		event_active(ch->flush_ev, EV_WRITE, 0);
	}
}

static void ch_kick(rpc_channel *ch)
{
	ch->dispatch_wanted = true;
	if (!ch->flush_active && ch->flush_ev) {
		ch->flush_active = true;
		event_active(ch->flush_ev, EV_WRITE, 0);
	}
}

static void subch_backoff(rpc_channel *ch, struct subch *sub)
{
	long long delay = backoff_step(ch, &sub->backoff_ms);

	sub->in_backoff = true;
	sub->retry_at_ns = rpc_now_ns() + delay * 1000000LL;
}

/* Frees the connection and fails or retries its calls. Only from a
 * top-level callback: never while nghttp2 is on the stack. */
static void conn_close(struct conn *cn, const char *why)
{
	rpc_channel *ch = cn->ch;
	struct link calls;

	if (cn->sub && cn->sub->conn == cn) {
		cn->sub->conn = NULL;
		/* Refused, or accepted but never spoke HTTP/2: back off. A
		 * working connection that dropped reconnects at once. */
		if (!cn->got_settings)
			subch_backoff(ch, cn->sub);
	}
	if (!ch->shutdown) {
		set_last_error(ch, "%s: %s", cn->name, why);
		if (!cn->draining || !list_empty(&cn->calls))
			rpc_log(RPC_LOG_INFO, LOG_COMPONENT, "%s: connection %s: %s",
				ch->target, cn->name, why);
		if (!cn->got_settings || !cn->draining)
			request_resolve(ch, false);
	}
	list_del(&cn->link);
	if (cn->dirty_link.next != &cn->dirty_link)
		list_del(&cn->dirty_link);

	/* Take the calls first: retrying them may look at connections. */
	list_init(&calls);
	while (!list_empty(&cn->calls)) {
		struct link *l = cn->calls.next;
		call *c = container_of(l, call, link);
		list_del(l);
		c->conn = NULL;
		c->state = CALL_NEW;
		list_push(&calls, l);
	}
	cn->ncalls = 0;
	if (cn->sess)
		nghttp2_session_del(cn->sess);
	if (cn->rev)
		event_free(cn->rev);
	if (cn->wev)
		event_free(cn->wev);
	if (cn->fd >= 0)
		close(cn->fd);
	if (cn->out)
		evbuffer_free(cn->out);
	free(cn);

	while (!list_empty(&calls)) {
		struct link *l = calls.next;
		call *c = container_of(l, call, link);
		char msg[sizeof(ch->last_error) + 32];
		list_del(l);
		snprintf(msg, sizeof(msg), "connection lost (%s)", why);
		if (ch->shutdown)
			call_complete(c, RPC_CANCELLED, "channel closed");
		else
			call_unavailable(c, msg, false);
	}
	if (!ch->shutdown)
		ch_kick(ch);
}

/* Serializes what the session wants to send and writes it. Returns 0 or an
 * RPC_ERR_*; on error the caller closes the connection. */
static int conn_flush(struct conn *cn)
{
	for (;;) {
		while (evbuffer_get_length(cn->out) < OUT_HIGH_WATER) {
			const uint8_t *p;
			ssize_t n = nghttp2_session_mem_send(cn->sess, &p);
			if (n < 0)
				return RPC_ERR_PROTO;
			if (n == 0)
				break;
			if (evbuffer_add(cn->out, p, (size_t)n) != 0)
				return RPC_ERR_NOMEM;
		}
		if (evbuffer_get_length(cn->out) == 0)
			return 0;
		while (evbuffer_get_length(cn->out) > 0) {
			int w = evbuffer_write(cn->out, cn->fd);
			if (w < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					event_add(cn->wev, NULL);
					return 0;
				}
				if (errno == EINTR)
					continue;
				return RPC_ERR_IO;
			}
		}
	}
}

/* After a flush: closes connections that have nothing left to do. */
static bool conn_finished(struct conn *cn)
{
	if (cn->connecting)
		return false;
	if (cn->draining && cn->ncalls == 0 && !cn->terminated) {
		/* Our own idea to drop it (address gone, or server GOAWAY):
		 * say goodbye properly once it is idle. */
		cn->terminated = true;
		nghttp2_session_terminate_session(cn->sess, NGHTTP2_NO_ERROR);
		conn_mark_dirty(cn); /* the GOAWAY still has to go out */
		return false;
	}
	return evbuffer_get_length(cn->out) == 0 &&
	       !nghttp2_session_want_read(cn->sess) &&
	       !nghttp2_session_want_write(cn->sess);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg);

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *cn = arg;
	rpc_channel *ch = cn->ch;

	(void)what;
	for (int i = 0; i < READS_PER_EVENT; i++) {
		ssize_t n = read(fd, ch->rbuf, sizeof(ch->rbuf));
		if (n > 0) {
			ssize_t rv = nghttp2_session_mem_recv(cn->sess, ch->rbuf,
							      (size_t)n);
			if (rv < 0) {
				conn_close(cn, nghttp2_strerror((int)rv));
				return;
			}
			if ((size_t)n < sizeof(ch->rbuf))
				break;
		} else if (n == 0) {
			conn_close(cn, "closed by peer");
			return;
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			break;
		} else {
			conn_close(cn, strerror(errno));
			return;
		}
	}
	conn_mark_dirty(cn);
}

static void conn_established(struct conn *cn)
{
	rpc_channel *ch = cn->ch;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST},
	};
	const char *why = "out of memory";

	cn->connecting = false;
	if (nghttp2_option_new(&opt) != 0)
		goto fail;
	nghttp2_option_set_peer_max_concurrent_streams(opt, INITIAL_PEER_STREAMS);
	if (nghttp2_session_client_new2(&cn->sess, ch->cbs, cn,
					opt) != 0)
		goto fail;
	if (nghttp2_submit_settings(cn->sess, NGHTTP2_FLAG_NONE, iv,
				    sizeof(iv) / sizeof(iv[0])) != 0 ||
	    nghttp2_session_set_local_window_size(cn->sess, NGHTTP2_FLAG_NONE,
						  0, CONN_WINDOW) != 0)
		goto fail;
	cn->rev = event_new(ch->base, cn->fd, EV_READ | EV_PERSIST,
			    conn_read_cb, cn);
	if (!cn->rev || event_add(cn->rev, NULL) != 0)
		goto fail;
	nghttp2_option_del(opt);
	rpc_log(RPC_LOG_DEBUG, LOG_COMPONENT, "%s: connected to %s",
		ch->target, cn->name);
	conn_mark_dirty(cn); /* client preface + SETTINGS */
	ch_kick(ch);
	return;
fail:
	nghttp2_option_del(opt);
	conn_close(cn, why);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *cn = arg;

	if (cn->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (what & EV_TIMEOUT) {
			conn_close(cn, "connect timeout");
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err != 0) {
			conn_close(cn, strerror(err));
			return;
		}
		conn_established(cn);
		return;
	}
	if (conn_flush(cn) < 0)
		conn_close(cn, "write failed");
	else if (conn_finished(cn))
		conn_close(cn, "finished");
}

/* Starts a connection for the subchannel. Returns true when a connect is
 * in progress (or done), false when it failed at once. */
static bool subch_connect(rpc_channel *ch, struct subch *sub)
{
	struct conn *cn = calloc(1, sizeof(*cn));
	struct timeval tv;
	int one = 1;

	if (!cn)
		return false;
	cn->ch = ch;
	cn->sub = sub;
	cn->fd = -1;
	list_init(&cn->calls);
	list_init(&cn->dirty_link);
	list_push(&ch->conns, &cn->link);
	memcpy(cn->name, sub->name, sizeof(cn->name));
	cn->connecting = true;
	sub->conn = cn;

	cn->out = evbuffer_new();
	cn->fd = socket(sub->addr.ss.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!cn->out || cn->fd < 0) {
		conn_close(cn, cn->out ? strerror(errno) : "out of memory");
		return false;
	}
	/* gRPC messages are small and latency-bound. */
	setsockopt(cn->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	cn->wev = event_new(ch->base, cn->fd, EV_WRITE, conn_write_cb, cn);
	if (!cn->wev) {
		conn_close(cn, "out of memory");
		return false;
	}
	if (connect(cn->fd, (const struct sockaddr *)&sub->addr.ss,
		    sub->addr.len) != 0 && errno != EINPROGRESS) {
		conn_close(cn, strerror(errno));
		return false;
	}
	tv = tv_from_ns((long long)ch->cfg.connect_timeout_ms * 1000000LL);
	if (event_add(cn->wev, &tv) != 0) {
		conn_close(cn, "event_add failed");
		return false;
	}
	return true;
}

/* ---- dispatch ----------------------------------------------------------- */

static size_t conn_capacity(struct conn *cn)
{
	uint32_t max = nghttp2_session_get_remote_settings(
		cn->sess, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	return cn->ncalls < max ? max - cn->ncalls : 0;
}

static struct conn *pick_conn(rpc_channel *ch)
{
	for (size_t i = 0; i < ch->nsubs; i++) {
		size_t k = (ch->rr + i) % ch->nsubs;
		struct conn *cn = ch->subs[k]->conn;

		if (!cn || cn->connecting || cn->draining ||
		    !nghttp2_session_check_request_allowed(cn->sess) ||
		    conn_capacity(cn) == 0)
			continue;
		ch->rr = k + 1;
		return cn;
	}
	return NULL;
}

/* Connects idle subchannels. Returns true when queued calls should keep
 * waiting: something is connecting (and has not failed since it last
 * worked), resolving, or usable but full. */
static bool ch_connect_idle(rpc_channel *ch)
{
	long long now = rpc_now_ns();
	bool wait = false;

	if (ch->nsubs == 0) {
		if (!ch->resolving && now >= ch->resolve_retry_at_ns)
			request_resolve(ch, true);
		return ch->resolving;
	}
	for (size_t i = 0; i < ch->nsubs; i++) {
		struct subch *sub = ch->subs[i];

		if (!sub->conn && (!sub->in_backoff || now >= sub->retry_at_ns))
			subch_connect(ch, sub);
		/* A subchannel whose connects failed stays in transient failure
		 * until one works: calls fail fast (idempotent ones retry with
		 * backoff) rather than wait for its next attempt, or an address
		 * that answers nothing would hold every call for a connect
		 * timeout, attempt after attempt. */
		if (sub->conn && !sub->in_backoff)
			wait = true;
	}
	return wait;
}

static int call_start_stream(call *c, struct conn *cn)
{
	rpc_channel *ch = c->ch;
	size_t n = 0, cap = 8 + c->req_md.count;
	nghttp2_nv *nva = calloc(cap, sizeof(*nva));
	char **to_free = calloc(c->req_md.count + 1, sizeof(char *));
	size_t nfree = 0;
	char tbuf[RPC_TIMEOUT_BUFLEN];
	nghttp2_data_provider prd;
	int32_t id;
	int rv = RPC_ERR_NOMEM;

#define NV(k, v, vl)                                                   \
	do {                                                           \
		nva[n].name = (uint8_t *)(k);                          \
		nva[n].namelen = strlen(k);                            \
		nva[n].value = (uint8_t *)(v);                         \
		nva[n].valuelen = (vl);                                \
		nva[n].flags = NGHTTP2_NV_FLAG_NONE;                   \
		n++;                                                   \
	} while (0)

	if (!nva || !to_free)
		goto out;
	NV(":method", "POST", 4);
	NV(":scheme", "http", 4);
	NV(":path", c->m->path, strlen(c->m->path));
	NV(":authority", ch->target, strlen(ch->target));
	NV("te", "trailers", 8);
	NV("content-type", "application/grpc", 16);
	NV("user-agent", "estore-rpc/0.1", 14);
	if (c->deadline_ns) {
		size_t tl = rpc_timeout_format(c->deadline_ns - rpc_now_ns(),
					       tbuf);
		NV("grpc-timeout", tbuf, tl);
	}
	for (size_t i = 0; i < c->req_md.count; i++) {
		const rpc_md_entry *e = &c->req_md.items[i];
		const char *v;
		size_t vl;
		bool must_free;

		if (rpc_metadata_wire_value(e, &v, &vl, &must_free) != 0)
			goto out;
		if (must_free)
			to_free[nfree++] = (char *)v;
		NV(e->key, v, vl);
	}
#undef NV

	prd.source.ptr = NULL;
	prd.read_callback = data_read_cb;
	id = nghttp2_submit_request(cn->sess, NULL, nva, n, &prd, c);
	if (id < 0) {
		rv = id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? RPC_ERR_CLOSED
							      : RPC_ERR_NOMEM;
		goto out;
	}
	c->state = CALL_ACTIVE;
	c->conn = cn;
	c->stream_id = id;
	list_push(&cn->calls, &c->link);
	cn->ncalls++;
	conn_mark_dirty(cn);
	rv = 0;
out:
	for (size_t i = 0; i < nfree; i++)
		free(to_free[i]);
	free(to_free);
	free(nva);
	return rv;
}

static void ch_dispatch(rpc_channel *ch)
{
	bool wait;

	if (list_empty(&ch->queue))
		return;
	/* Connect everything idle first, so round robin has somewhere to go
	 * even while one connection can still take every call. */
	wait = ch_connect_idle(ch);
	while (!list_empty(&ch->queue)) {
		call *c = container_of(ch->queue.next, call, link);
		struct conn *cn = pick_conn(ch);
		int rv;

		if (!cn) {
			if (wait)
				break;
			/* Nothing can carry a call now: fail fast instead of
			 * letting it wait out its deadline. */
			call_unlink(c, false);
			call_unavailable(c, ch->last_error[0] ? ch->last_error
							      : "no address",
					 false);
			continue;
		}
		call_unlink(c, false);
		rv = call_start_stream(c, cn);
		if (rv == RPC_ERR_CLOSED) {
			/* Stream ids exhausted: retire the connection. */
			cn->draining = true;
			if (cn->sub && cn->sub->conn == cn)
				cn->sub->conn = NULL;
			cn->sub = NULL;
			call_enqueue(c, true);
			wait = ch_connect_idle(ch);
		} else if (rv < 0) {
			call_complete(c, RPC_INTERNAL, "cannot start stream");
		}
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	rpc_channel *ch = arg;

	(void)fd;
	(void)what;
	ch->flush_active = false;
	if (ch->dispatch_wanted) {
		ch->dispatch_wanted = false;
		ch_dispatch(ch);
	}
	while (!list_empty(&ch->dirty)) {
		struct conn *cn = container_of(ch->dirty.next, struct conn,
					       dirty_link);
		list_del(&cn->dirty_link);
		if (cn->connecting)
			continue;
		if (conn_flush(cn) < 0)
			conn_close(cn, "write failed");
		else if (conn_finished(cn))
			conn_close(cn, "finished");
	}
}

/* ---- DNS ------------------------------------------------------------- */

static void resolve_done(void *arg);

static void *resolver_main(void *arg)
{
	rpc_channel *ch = arg;

	pthread_mutex_lock(&ch->rmu);
	for (;;) {
		struct addrinfo hints, *res = NULL, *ai;
		struct resolve_result *rr;
		size_t n = 0;
		int err;

		while (!ch->rreq && !ch->rstop)
			pthread_cond_wait(&ch->rcv, &ch->rmu);
		if (ch->rstop)
			break;
		ch->rreq = false;
		pthread_mutex_unlock(&ch->rmu);

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_NUMERICSERV;
		err = getaddrinfo(ch->host, ch->port, &hints, &res);
		for (ai = err ? NULL : res; ai; ai = ai->ai_next)
			n++;
		rr = calloc(1, sizeof(*rr) + n * sizeof(struct addr));
		if (rr) {
			rr->ch = ch;
			rr->err = err;
			for (ai = err ? NULL : res; ai; ai = ai->ai_next) {
				bool dup = false;
				if (ai->ai_addrlen > sizeof(struct sockaddr_storage) ||
				    (ai->ai_family != AF_INET &&
				     ai->ai_family != AF_INET6))
					continue;
				/* /etc/hosts may list one address twice. */
				for (size_t i = 0; i < rr->n && !dup; i++)
					dup = rr->addrs[i].len == ai->ai_addrlen &&
					      memcmp(&rr->addrs[i].ss, ai->ai_addr,
						     ai->ai_addrlen) == 0;
				if (dup)
					continue;
				memcpy(&rr->addrs[rr->n].ss, ai->ai_addr,
				       ai->ai_addrlen);
				rr->addrs[rr->n].len = ai->ai_addrlen;
				rr->n++;
			}
			if (!err && rr->n == 0)
				rr->err = EAI_NONAME;
		}
		if (res)
			freeaddrinfo(res);
		/* Fails only after rpc_loop_stop, which happens after we are
		 * joined; free defensively anyway. */
		if (!rr || rpc_loop_post(ch->loop, resolve_done, rr) != 0)
			free(rr);
		pthread_mutex_lock(&ch->rmu);
	}
	pthread_mutex_unlock(&ch->rmu);
	return NULL;
}

static void request_resolve(rpc_channel *ch, bool forced)
{
	long long now = rpc_now_ns();

	if (ch->resolving || ch->shutdown)
		return;
	if (!forced && ch->last_resolve_ns &&
	    now - ch->last_resolve_ns < MIN_RERESOLVE_NS)
		return;
	ch->resolving = true;
	ch->last_resolve_ns = now;
	pthread_mutex_lock(&ch->rmu);
	ch->rreq = true;
	pthread_cond_signal(&ch->rcv);
	pthread_mutex_unlock(&ch->rmu);
}

static void subch_drop(struct subch *sub)
{
	struct conn *cn = sub->conn;

	if (cn) {
		/* Let its calls finish; it closes once idle. */
		cn->sub = NULL;
		if (cn->connecting)
			conn_close(cn, "address removed");
		else {
			cn->draining = true;
			conn_mark_dirty(cn);
		}
	}
	free(sub);
}

static struct subch *subch_new(const struct addr *a, long long backoff_ms)
{
	struct subch *sub = calloc(1, sizeof(*sub));

	if (!sub)
		return NULL;
	sub->addr = *a;
	sub->backoff_ms = backoff_ms;
	addr_name(a, sub->name, sizeof(sub->name));
	return sub;
}

static void resolve_done(void *arg)
{
	struct resolve_result *rr = arg;
	rpc_channel *ch = rr->ch;
	struct subch **subs = NULL;
	size_t n = 0;

	ch->resolving = false;
	if (ch->shutdown)
		goto out;
	if (rr->err) {
		set_last_error(ch, "resolve %s: %s", ch->host,
			       gai_strerror(rr->err));
		rpc_log(RPC_LOG_WARN, LOG_COMPONENT, "%s", ch->last_error);
		/* Known addresses stay in use; with none, calls fail fast
		 * until the next attempt after a backoff. */
		ch->resolve_retry_at_ns = rpc_now_ns() +
			backoff_step(ch, &ch->resolve_backoff_ms) * 1000000LL;
		goto kick;
	}
	ch->resolve_backoff_ms = ch->cfg.backoff_initial_ms;
	subs = calloc(rr->n, sizeof(*subs));
	if (!subs)
		goto kick;
	for (size_t i = 0; i < ch->nsubs; i++)
		ch->subs[i]->seen = false;
	/* Keep the subchannel (and its connection) of every address that is
	 * still there; new addresses start idle. */
	for (size_t i = 0; i < rr->n; i++) {
		struct subch *sub = NULL;

		for (size_t k = 0; k < ch->nsubs && !sub; k++) {
			struct subch *old = ch->subs[k];
			if (!old->seen && old->addr.len == rr->addrs[i].len &&
			    memcmp(&old->addr.ss, &rr->addrs[i].ss,
				   old->addr.len) == 0)
				sub = old;
		}
		if (!sub)
			sub = subch_new(&rr->addrs[i], ch->cfg.backoff_initial_ms);
		if (!sub)
			continue;
		sub->seen = true;
		subs[n++] = sub;
	}
	for (size_t i = 0; i < ch->nsubs; i++) {
		if (!ch->subs[i]->seen)
			subch_drop(ch->subs[i]);
	}
	free(ch->subs);
	ch->subs = subs;
	ch->nsubs = n;
	if (ch->rr >= n)
		ch->rr = 0;
	rpc_log(RPC_LOG_DEBUG, LOG_COMPONENT, "%s: %zu address(es)", ch->target,
		n);
kick:
	ch_kick(ch);
out:
	free(rr);
}

/* ---- loop-side entry points ---------------------------------------- */

static void start_on_loop(void *arg)
{
	call *c = arg;
	rpc_channel *ch = c->ch;

	if (ch->shutdown) {
		call_complete(c, RPC_CANCELLED, "channel closed");
		return;
	}
	if (ch->last_resolve_ns && rpc_now_ns() - ch->last_resolve_ns >= DNS_REFRESH_NS)
		request_resolve(ch, false);
	if (c->deadline_ns) {
		long long left = c->deadline_ns - rpc_now_ns();
		struct timeval tv = tv_from_ns(left);

		if (left <= 0) {
			call_complete(c, RPC_DEADLINE_EXCEEDED,
				      "deadline exceeded before the call started");
			return;
		}
		c->deadline_ev = evtimer_new(ch->base, deadline_cb, c);
		if (!c->deadline_ev || evtimer_add(c->deadline_ev, &tv) != 0) {
			call_complete(c, RPC_INTERNAL, "cannot arm deadline");
			return;
		}
	}
	call_enqueue(c, false);
}

static void cancel_on_loop(void *arg)
{
	call *c = arg;

	call_complete(c, RPC_CANCELLED, "cancelled by client");
	call_unref(c); /* the post's reference */
}

static void kick_on_loop(void *arg)
{
	call *c = arg;

	pthread_mutex_lock(&c->mu);
	c->kick_posted = false;
	pthread_mutex_unlock(&c->mu);
	if (c->state == CALL_ACTIVE && c->conn) {
		/* Fails harmlessly when the stream was not deferred. */
		nghttp2_session_resume_data(c->conn->sess, c->stream_id);
		conn_mark_dirty(c->conn);
	}
	call_unref(c);
}

static void shutdown_on_loop(void *arg)
{
	rpc_channel *ch = arg;

	ch->shutdown = true;
	while (!list_empty(&ch->queue))
		call_complete(container_of(ch->queue.next, call, link),
			      RPC_CANCELLED, "channel closed");
	while (!list_empty(&ch->retrying))
		call_complete(container_of(ch->retrying.next, call, link),
			      RPC_CANCELLED, "channel closed");
	while (!list_empty(&ch->conns)) {
		struct conn *cn = container_of(ch->conns.next, struct conn,
					       link);
		while (!list_empty(&cn->calls))
			call_complete(container_of(cn->calls.next, call, link),
				      RPC_CANCELLED, "channel closed");
		if (!cn->connecting) {
			/* Best effort: tell the server the resets and goodbye. */
			nghttp2_session_terminate_session(cn->sess,
							  NGHTTP2_NO_ERROR);
			(void)conn_flush(cn);
		}
		conn_close(cn, "channel closed");
	}
	for (size_t i = 0; i < ch->nsubs; i++)
		free(ch->subs[i]);
	free(ch->subs);
	ch->subs = NULL;
	ch->nsubs = 0;
	if (ch->flush_ev)
		event_free(ch->flush_ev);
	ch->flush_ev = NULL;
}

/* ---- public API ------------------------------------------------------- */

/* Splits "host:port" or "[v6]:port". */
static int parse_target(const char *target, char **host, char **port)
{
	const char *h, *he, *p;
	char *end;
	long v;

	if (target[0] == '[') {
		h = target + 1;
		he = strchr(h, ']');
		if (!he || he[1] != ':')
			return RPC_ERR_INVALID;
		p = he + 2;
	} else {
		h = target;
		he = strrchr(target, ':');
		if (!he || memchr(h, ':', (size_t)(he - h)))
			return RPC_ERR_INVALID; /* bare IPv6 needs brackets */
		p = he + 1;
	}
	if (he == h || *p == '\0')
		return RPC_ERR_INVALID;
	errno = 0;
	v = strtol(p, &end, 10);
	if (errno || *end != '\0' || v < 1 || v > 65535)
		return RPC_ERR_INVALID;
	*host = strndup(h, (size_t)(he - h));
	*port = strdup(p);
	if (!*host || !*port) {
		free(*host);
		free(*port);
		return RPC_ERR_NOMEM;
	}
	return 0;
}

static rpc_channel *channel_new(const char *target, const rpc_channel_config *cfg,
				rpc_loop *shared)
{
	rpc_channel *ch = NULL;
	char *host = NULL, *port = NULL;

	if (!target || parse_target(target, &host, &port) != 0)
		return NULL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		goto fail;
	ch->host = host;
	ch->port = port;
	host = port = NULL;
	ch->target = strdup(target);
	if (cfg)
		ch->cfg = *cfg;
	else
		rpc_channel_config_defaults(&ch->cfg);
	/* Guard the arithmetic against zero or nonsense settings. */
	if (ch->cfg.backoff_initial_ms < 1)
		ch->cfg.backoff_initial_ms = 1;
	if (ch->cfg.backoff_max_ms < ch->cfg.backoff_initial_ms)
		ch->cfg.backoff_max_ms = ch->cfg.backoff_initial_ms;
	if (ch->cfg.backoff_multiplier < 1.0)
		ch->cfg.backoff_multiplier = 1.0;
	if (ch->cfg.backoff_jitter < 0 || ch->cfg.backoff_jitter >= 1.0)
		ch->cfg.backoff_jitter = 0;
	if (ch->cfg.connect_timeout_ms < 1)
		ch->cfg.connect_timeout_ms = 1;
	if (ch->cfg.max_recv_msg == 0)
		ch->cfg.max_recv_msg = RPC_DEFAULT_MAX_MSG;
	ch->resolve_backoff_ms = ch->cfg.backoff_initial_ms;
	ch->rng = (uint64_t)rpc_now_ns() ^ (uint64_t)(uintptr_t)ch;
	if (ch->rng == 0)
		ch->rng = 0x9e3779b97f4a7c15ULL;
	atomic_init(&ch->closing, false);
	list_init(&ch->queue);
	list_init(&ch->retrying);
	list_init(&ch->conns);
	list_init(&ch->dirty);
	pthread_mutex_init(&ch->rmu, NULL);
	pthread_cond_init(&ch->rcv, NULL);
	if (!ch->target || callbacks_new(&ch->cbs) != 0)
		goto fail;

	rpc_loop_global_init();
	ch->own_loop = shared == NULL;
	ch->loop = shared ? shared : rpc_loop_new("rpc-channel");
	if (!ch->loop)
		goto fail;
	ch->base = rpc_loop_base(ch->loop);
	ch->flush_ev = event_new(ch->base, -1, 0, flush_cb, ch);
	if (!ch->flush_ev)
		goto fail;
	if (pthread_create(&ch->rthread, NULL, resolver_main, ch) != 0)
		goto fail;
	ch->rthread_started = true;
	if (ch->own_loop && rpc_loop_start(ch->loop) != 0)
		goto fail;
	ch->loop_started = true;
	return ch;
fail:
	free(host);
	free(port);
	rpc_channel_free(ch);
	return NULL;
}

rpc_channel *rpc_channel_new(const char *target, const rpc_channel_config *cfg)
{
	return channel_new(target, cfg, NULL);
}

rpc_channel *rpc_channel_new_on_loop(const char *target,
				     const rpc_channel_config *cfg, rpc_loop *loop)
{
	return loop ? channel_new(target, cfg, loop) : NULL;
}

/* Shutting down on a loop the channel does not own: the loop keeps
 * running, so the caller waits for the shutdown to have run there. */
struct shutdown_wait {
	rpc_channel *ch;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void shutdown_and_signal(void *arg)
{
	struct shutdown_wait *w = arg;

	shutdown_on_loop(w->ch);
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void shutdown_shared(rpc_channel *ch)
{
	struct shutdown_wait w = { .ch = ch, .done = false };

	/* On the loop itself, or a loop that runs no more (its posts are
	 * refused): nothing else can touch the channel, do it here. */
	if (rpc_loop_in_thread(ch->loop) || !rpc_loop_running(ch->loop)) {
		shutdown_on_loop(ch);
		return;
	}
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	if (rpc_loop_post(ch->loop, shutdown_and_signal, &w) != 0) {
		shutdown_on_loop(ch);
	} else {
		pthread_mutex_lock(&w.mu);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.mu);
		pthread_mutex_unlock(&w.mu);
	}
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

void rpc_channel_free(rpc_channel *ch)
{
	if (!ch)
		return;
	atomic_store(&ch->closing, true);
	if (ch->rthread_started) {
		/* Joined before the loop stops, so its last post still lands. */
		pthread_mutex_lock(&ch->rmu);
		ch->rstop = true;
		pthread_cond_signal(&ch->rcv);
		pthread_mutex_unlock(&ch->rmu);
		pthread_join(ch->rthread, NULL);
	}
	if (!ch->own_loop && ch->loop) {
		shutdown_shared(ch);
	} else if (ch->loop_started &&
		   rpc_loop_post(ch->loop, shutdown_on_loop, ch) == 0) {
		rpc_loop_stop(ch->loop);
	} else if (ch->loop) {
		/* No loop thread ever ran (rpc_channel_new failed late):
		 * nothing else can touch the channel, so clean up here. */
		shutdown_on_loop(ch);
	}
	if (ch->own_loop)
		rpc_loop_free(ch->loop);
	if (ch->cbs)
		nghttp2_session_callbacks_del(ch->cbs);
	pthread_cond_destroy(&ch->rcv);
	pthread_mutex_destroy(&ch->rmu);
	free(ch->target);
	free(ch->host);
	free(ch->port);
	free(ch);
}

/* Hands a new call to the loop. On failure the loop never saw it. */
static int call_post_start(call *c)
{
	if (atomic_load(&c->ch->closing))
		return RPC_ERR_CLOSED;
	call_ref(c); /* the loop's reference, dropped by call_complete */
	if (rpc_loop_post(c->ch->loop, start_on_loop, c) != 0) {
		call_unref(c);
		return RPC_ERR_CLOSED;
	}
	return 0;
}

static void status_set(rpc_status *st, rpc_code code, const char *msg)
{
	if (!st)
		return;
	st->code = code;
	st->message = msg ? strdup(msg) : NULL;
}

static int unary_prepare(rpc_channel *ch, const rpc_method_desc *m,
			 const rpc_call_opts *opts, const ProtobufCMessage *req,
			 enum call_kind kind, call **out)
{
	call *c;
	int rv;

	*out = NULL;
	if (!ch || !m || !req || m->kind != RPC_UNARY ||
	    req->descriptor != m->input)
		return RPC_ERR_INVALID;
	c = call_new(ch, m, opts, kind, &rv);
	if (!c)
		return rv;
	/* Encoded now: the caller may free `req` as soon as we return, and
	 * a retry replays these very bytes. */
	c->retain_send = true;
	c->send_closed = true;
	rv = sbuf_append_msg(c, req);
	if (rv < 0) {
		call_unref(c);
		return rv;
	}
	*out = c;
	return 0;
}

rpc_code rpc_channel_call(rpc_channel *ch, const rpc_method_desc *m,
			  const rpc_call_opts *opts,
			  const ProtobufCMessage *req, ProtobufCMessage **resp,
			  rpc_status *status)
{
	call *c = NULL;
	rpc_code code;
	int rv;

	*resp = NULL;
	if (status) {
		status->code = RPC_OK;
		status->message = NULL;
	}
	if (ch && rpc_loop_in_thread(ch->loop)) {
		/* It would wait for the very thread it blocks. */
		status_set(status, RPC_INTERNAL,
			   "blocking call on the channel's own thread");
		return RPC_INTERNAL;
	}
	rv = unary_prepare(ch, m, opts, req, CALL_BLOCKING, &c);
	if (rv == 0)
		rv = call_post_start(c);
	if (rv < 0) {
		code = rv == RPC_ERR_CLOSED ? RPC_CANCELLED : RPC_INTERNAL;
		if (rv == RPC_ERR_NOMEM)
			code = RPC_RESOURCE_EXHAUSTED;
		status_set(status, code, rpc_strerror(rv));
		if (c)
			call_unref(c);
		return code;
	}

	pthread_mutex_lock(&c->mu);
	while (!c->done)
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	code = c->code;
	if (code == RPC_OK) {
		*resp = c->resp;
		c->resp = NULL;
	}
	if (status) {
		status->code = code;
		status->message = c->message;
		c->message = NULL;
	}
	call_unref(c);
	return code;
}

int rpc_channel_call_async(rpc_channel *ch, const rpc_method_desc *m,
			   const rpc_call_opts *opts,
			   const ProtobufCMessage *req, rpc_unary_done done,
			   void *user)
{
	call *c = NULL;
	int rv;

	if (!done)
		return RPC_ERR_INVALID;
	rv = unary_prepare(ch, m, opts, req, CALL_ASYNC, &c);
	if (rv < 0)
		return rv;
	c->done_cb = done;
	c->done_user = user;
	rv = call_post_start(c);
	call_unref(c); /* nobody waits on an async call */
	return rv;
}

rpc_client_stream *rpc_channel_open(rpc_channel *ch, const rpc_method_desc *m,
				    const rpc_call_opts *opts)
{
	call *c;
	int rv;

	if (!ch || !m)
		return NULL;
	c = call_new(ch, m, opts, CALL_STREAM, &rv);
	if (!c)
		return NULL;
	if (call_post_start(c) != 0) {
		/* Reported by the first send/recv/finish, as documented. */
		c->done = true;
		c->code = RPC_UNAVAILABLE;
		c->message = strdup("channel closed");
	}
	return c;
}

static void post_kick(call *c)
{
	bool post;

	/* One pending kick is enough: it resumes whatever is queued. */
	post = !c->kick_posted && !c->done;
	if (post)
		c->kick_posted = true;
	if (!post)
		return;
	call_ref(c);
	if (rpc_loop_post(c->ch->loop, kick_on_loop, c) != 0) {
		c->kick_posted = false;
		call_unref(c);
	}
}

int rpc_client_stream_send(rpc_client_stream *s, const ProtobufCMessage *msg)
{
	size_t sz;
	int rv;

	if (!s || !msg || msg->descriptor != s->m->input)
		return RPC_ERR_INVALID;
	sz = protobuf_c_message_get_packed_size(msg) + RPC_MSG_PREFIX_LEN;
	pthread_mutex_lock(&s->mu);
	/* Blocking back-pressure: wait for nghttp2 to take bytes while the
	 * queue is over its cap (one message always fits an empty queue). */
	while (!s->done && !s->send_closed && s->slen - s->soff > 0 &&
	       s->slen - s->soff + sz > SEND_QUEUE_CAP)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->done || s->send_closed) {
		rv = RPC_ERR_CLOSED;
		goto out;
	}
	rv = sbuf_append_msg(s, msg);
	if (rv == 0)
		post_kick(s);
out:
	pthread_mutex_unlock(&s->mu);
	return rv;
}

int rpc_client_stream_close_send(rpc_client_stream *s)
{
	int rv = 0;

	if (!s)
		return RPC_ERR_INVALID;
	pthread_mutex_lock(&s->mu);
	if (s->done || s->send_closed)
		rv = RPC_ERR_CLOSED;
	else {
		s->send_closed = true;
		post_kick(s);
	}
	pthread_mutex_unlock(&s->mu);
	return rv;
}

int rpc_client_stream_recv(rpc_client_stream *s, ProtobufCMessage **msg)
{
	int rv;

	*msg = NULL;
	if (!s)
		return RPC_ERR_INVALID;
	pthread_mutex_lock(&s->mu);
	while (!s->rq_head && !s->done)
		pthread_cond_wait(&s->cv, &s->mu);
	if (s->rq_head) {
		struct rmsg *r = s->rq_head;
		s->rq_head = r->next;
		if (!s->rq_head)
			s->rq_tail = NULL;
		*msg = r->msg;
		free(r);
		rv = 1;
	} else {
		rv = s->code == RPC_OK ? 0 : RPC_ERR_CLOSED;
	}
	pthread_mutex_unlock(&s->mu);
	return rv;
}

rpc_code rpc_client_stream_finish(rpc_client_stream *s, rpc_status *status)
{
	rpc_code code;
	bool done;

	if (status) {
		status->code = RPC_OK;
		status->message = NULL;
	}
	if (!s) {
		status_set(status, RPC_INTERNAL, "no stream");
		return RPC_INTERNAL;
	}
	pthread_mutex_lock(&s->mu);
	done = s->done;
	pthread_mutex_unlock(&s->mu);
	if (!done) {
		call_ref(s);
		if (rpc_loop_post(s->ch->loop, cancel_on_loop, s) != 0)
			call_unref(s); /* loop gone: shutdown completed it */
	}
	pthread_mutex_lock(&s->mu);
	while (!s->done)
		pthread_cond_wait(&s->cv, &s->mu);
	code = s->code;
	if (status) {
		status->code = code;
		status->message = s->message;
		s->message = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	call_unref(s);
	return code;
}
