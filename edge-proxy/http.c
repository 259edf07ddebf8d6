/*
 * http.c - the edge's HTTP server: listener, I/O threads, connections,
 * timers, requests and responses. The protocols live in http1.c
 * (http_parser) and http2.c (nghttp2); both eat bytes and produce bytes,
 * and every socket call is in this file.
 *
 *   acceptor loop: accept() → max_connections check → an I/O loop
 *   I/O loop:      recv() (or SSL_read when the first byte was a TLS
 *                  handshake) → sniff the first bytes (HTTP/2 preface or not)
 *                  → h1_feed / h2_feed → complete request → handler
 *   any thread:    edge_http_respond copies the response into the request
 *                  and posts it to the request's loop
 *   I/O loop:      h1_deliver / h2_deliver; dirty connections are filled
 *                  and written once per loop pass (one send() for many
 *                  responses or frames)
 *
 * Closing is lingering: after the last byte we shut down our side and
 * read until the client closes (or LINGER_MS), so a client still sending
 * a refused body reads our 413 instead of a reset.
 */
#include "http_private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "httpstatus.h"
#include "tls.h"

#define READ_CHUNK 65536
#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
#define LINGER_MS 1000

/* The loops, shared by the server and every request still held by a
 * handler: a late edge_http_respond must find a loop to post to (which
 * then refuses) even after the server is freed. */
struct http_core {
	atomic_int refs;
	int n;
	rpc_loop *loops[];
};

struct http_io {
	edge_http_server *srv;
	rpc_loop *loop;
	struct http_conn *conns;
	struct http_conn *dirty;
	struct event *flush_ev;
	uint8_t *readbuf;           /* PREFACE_LEN + READ_CHUNK */
	bool draining;
	time_t date_sec;
	char date[40];
};

struct edge_http_server {
	edge_http_config cfg;
	char host[256];
	struct http_limits lim;
	edge_http_handler handler;
	void *user;
	int listen_fd;
	int port;
	rpc_loop *accept_loop;
	struct evconnlistener *listener;
	struct http_io *io;
	int n_io;
	struct http_core *core;
	atomic_uint next_io;
	SSL_CTX *tls;               /* NULL: cleartext only */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int open_conns;             /* accepted and not yet closed */
	bool started;
	bool stopped;
};

static void conn_close(struct http_conn *c);
static void conn_arm_timer(struct http_conn *c);

long long http_now(void)
{
	return rpc_now_ns();
}

/* ------------------------------------------------------------------ */
/* configuration                                                       */

void edge_http_config_defaults(edge_http_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->host = "0.0.0.0";
	cfg->port = 0;
	cfg->io_threads = 2;
	cfg->max_header_bytes = 16 * 1024;
	cfg->max_body_bytes = 1024 * 1024;
	cfg->header_timeout_ms = 10000;
	cfg->body_timeout_ms = 30000;
	cfg->idle_timeout_ms = 60000;
	cfg->max_connections = 10000;
	cfg->max_streams = 100;
}

static int config_check(const edge_http_config *cfg, char *err, size_t errlen)
{
	const char *bad = NULL;

	if (!cfg->host || !cfg->host[0] || strlen(cfg->host) >= 256)
		bad = "host";
	else if (cfg->port < 0 || cfg->port > 65535)
		bad = "port";
	else if (cfg->io_threads < 1 || cfg->io_threads > 256)
		bad = "io_threads (1..256)";
	else if (cfg->max_header_bytes < 64 || cfg->max_header_bytes > (1u << 24))
		bad = "max_header_bytes (64..16 MiB)";
	/* HTTP/2 windows are 31-bit: one body must fit in one. */
	else if (cfg->max_body_bytes > 0x7fffffffu)
		bad = "max_body_bytes (at most 2 GiB - 1)";
	else if (cfg->header_timeout_ms < 1 || cfg->body_timeout_ms < 1 ||
		 cfg->idle_timeout_ms < 1)
		bad = "timeouts (at least 1 ms)";
	else if (cfg->max_connections < 1)
		bad = "max_connections";
	else if (cfg->max_streams < 1)
		bad = "max_streams";
	else if (!cfg->tls_cert_file != !cfg->tls_key_file)
		bad = "TLS configuration (a certificate needs its key and the reverse)";
	else if (cfg->tls_required && !cfg->tls_cert_file)
		bad = "TLS configuration (TLS required without a certificate)";
	if (bad && err && errlen)
		snprintf(err, errlen, "edge http: bad %s", bad);
	return bad ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* the core: loops outliving the server while requests are held        */

static void core_unref(struct http_core *core)
{
	if (!core || atomic_fetch_sub(&core->refs, 1) != 1)
		return;
	for (int i = 0; i < core->n; i++)
		rpc_loop_free(core->loops[i]);
	free(core);
}

/* ------------------------------------------------------------------ */
/* requests                                                            */

struct edge_http_request *http_req_new(struct http_conn *c, int version)
{
	struct edge_http_request *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	atomic_init(&r->refs, 1);
	atomic_init(&r->cancelled, false);
	r->core = c->io->srv->core;
	atomic_fetch_add(&r->core->refs, 1);
	r->loop = c->io->loop;
	r->io_index = (size_t)(c->io - c->io->srv->io);
	r->conn = c;
	r->version = version;
	r->tls = c->ssl != NULL;
	memcpy(r->peer, c->peer, sizeof(r->peer));
	return r;
}

void http_req_unref(struct edge_http_request *r)
{
	struct http_core *core;

	if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	core = r->core;
	free(r->hbuf);
	free(r->hdrs);
	free(r->body);
	free(r->rhdrs);
	free(r->rbody);
	free(r);
	core_unref(core);
}

void http_req_detach(struct edge_http_request *r)
{
	if (!r->conn)
		return;
	r->conn = NULL;
	if (!r->sent)
		atomic_store(&r->cancelled, true);
	http_req_unref(r);
}

static int hbuf_reserve(struct edge_http_request *r, size_t extra)
{
	size_t cap;
	char *p;

	if (r->hlen + extra <= r->hcap)
		return 0;
	cap = r->hcap ? r->hcap : 256;
	while (cap < r->hlen + extra)
		cap *= 2;
	/* Offsets are 32-bit; max_header_bytes keeps hbuf far below. */
	if (cap > UINT32_MAX)
		return -1;
	p = realloc(r->hbuf, cap);
	if (!p)
		return -1;
	r->hbuf = p;
	r->hcap = cap;
	return 0;
}

int http_req_hbuf_add(struct edge_http_request *r, const char *s, size_t len,
		      uint32_t *off)
{
	if (hbuf_reserve(r, len + 1))
		return -1;
	*off = (uint32_t)r->hlen;
	if (len)
		memcpy(r->hbuf + r->hlen, s, len);
	r->hlen += len;
	r->hbuf[r->hlen++] = 0;
	return 0;
}

int http_req_hbuf_extend(struct edge_http_request *r, const char *s,
			 size_t len)
{
	if (r->hlen == 0)
		return -1;
	if (hbuf_reserve(r, len))
		return -1;
	/* Overwrite the terminator, then put it back after the piece. */
	memcpy(r->hbuf + r->hlen - 1, s, len);
	r->hlen += len;
	r->hbuf[r->hlen - 1] = 0;
	return 0;
}

int http_req_add_header(struct edge_http_request *r, uint32_t name,
			uint32_t value)
{
	if (r->n_hdrs == r->hdrs_cap) {
		size_t cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
		struct http_hdr *h = realloc(r->hdrs, cap * sizeof(*h));

		if (!h)
			return -1;
		r->hdrs = h;
		r->hdrs_cap = cap;
	}
	r->hdrs[r->n_hdrs].name = name;
	r->hdrs[r->n_hdrs].value = value;
	r->n_hdrs++;
	return 0;
}

void http_req_split_target(struct edge_http_request *r)
{
	const char *u = r->hbuf + r->url_off;
	const char *q = memchr(u, '?', r->url_len);
	const char *hash = memchr(u, '#', r->url_len);
	size_t end = hash ? (size_t)(hash - u) : r->url_len;
	size_t plen = end;

	/* Absolute form ("http://host/p"): the path starts at the first '/'
	 * after the authority. */
	if (plen > 0 && u[0] != '/' && u[0] != '*') {
		const char *scheme_end = memchr(u, ':', plen);

		if (scheme_end && (size_t)(scheme_end - u) + 3 <= plen &&
		    scheme_end[1] == '/' && scheme_end[2] == '/') {
			const char *auth = scheme_end + 3;
			const char *slash = memchr(auth, '/',
						   plen - (size_t)(auth - u));

			r->path_off = r->url_off +
				(uint32_t)(slash ? slash - u : (long)plen);
		} else {
			r->path_off = r->url_off;
		}
	} else {
		r->path_off = r->url_off;
	}
	if (q && (size_t)(q - u) < end) {
		r->path_len = (uint32_t)(r->url_off + (size_t)(q - u) - r->path_off);
		r->has_query = true;
		r->query_off = (uint32_t)(r->url_off + (size_t)(q - u) + 1);
		r->query_len = (uint32_t)(end - (size_t)(q - u) - 1);
	} else {
		r->path_len = (uint32_t)(r->url_off + end - r->path_off);
	}
}

int http_req_body_add(struct edge_http_request *r, const uint8_t *p,
		      size_t len, size_t max, bool *too_big)
{
	*too_big = false;
	if (len > max || r->body_len > max - len) {
		*too_big = true;
		return -1;
	}
	if (r->body_len + len > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 1024;
		uint8_t *b;

		while (cap < r->body_len + len)
			cap *= 2;
		if (cap > max)
			cap = max;
		b = realloc(r->body, cap);
		if (!b)
			return -1;
		r->body = b;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, p, len);
	r->body_len += len;
	return 0;
}

static int grpc_code_for(int status)
{
	switch (status) {
	case 400: return RPC_INVALID_ARGUMENT;
	case 408: return RPC_DEADLINE_EXCEEDED;
	case 413:
	case 431: return RPC_RESOURCE_EXHAUSTED;
	case 503: return RPC_UNAVAILABLE;
	default: return RPC_INTERNAL;
	}
}

int http_req_fail(struct edge_http_request *r, int status, const char *msg)
{
	static const char ct[] = "content-type\0application/json";
	size_t len = 0;
	char *body = edge_error_body(grpc_code_for(status), msg, &len);

	r->failed = true;
	r->ready = true;
	r->status = status;
	free(r->rbody);
	free(r->rhdrs);
	r->rbody = (uint8_t *)body;
	r->rbody_len = body ? len : 0;
	r->rbody_off = 0;
	r->rhdrs = malloc(sizeof(ct));
	r->n_rhdrs = r->rhdrs ? 1 : 0;
	r->rhdrs_len = r->rhdrs ? sizeof(ct) : 0;
	if (r->rhdrs)
		memcpy(r->rhdrs, ct, sizeof(ct));
	return body && r->rhdrs ? 0 : -1;
}

void http_req_dispatch(struct edge_http_request *r)
{
	edge_http_server *s = r->conn->io->srv;

	r->handed = true;
	atomic_fetch_add(&r->refs, 1);
	s->handler(r, s->user);
}

/* ---- the contract's accessors ---------------------------------------- */

const char *edge_http_method(const edge_http_request *r)
{
	return r->have_method ? r->hbuf + r->method_off : "";
}

const char *edge_http_path(const edge_http_request *r, size_t *len)
{
	*len = r->path_len;
	return r->hbuf ? r->hbuf + r->path_off : "";
}

const char *edge_http_query(const edge_http_request *r, size_t *len)
{
	if (!r->has_query) {
		*len = 0;
		return NULL;
	}
	*len = r->query_len;
	return r->hbuf + r->query_off;
}

const char *edge_http_header(const edge_http_request *r, const char *name)
{
	for (size_t i = 0; i < r->n_hdrs; i++)
		if (strcasecmp(r->hbuf + r->hdrs[i].name, name) == 0)
			return r->hbuf + r->hdrs[i].value;
	return NULL;
}

const uint8_t *edge_http_body(const edge_http_request *r, size_t *len)
{
	*len = r->body_len;
	return r->body_len ? r->body : NULL;
}

const char *edge_http_peer(const edge_http_request *r)
{
	return r->peer;
}

int edge_http_version(const edge_http_request *r)
{
	return r->version;
}

bool edge_http_tls(const edge_http_request *r)
{
	return r->tls;
}

bool edge_http_cancelled(const edge_http_request *r)
{
	return atomic_load(&((edge_http_request *)r)->cancelled);
}

/* ---- responding ------------------------------------------------------- */

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Headers the server owns (framing, connection management) or that
 * would let a handler split the response; these are dropped. */
static bool header_acceptable(const char *name, const char *value)
{
	static const char *const ours[] = {
		"content-length", "connection", "transfer-encoding", "date",
		"keep-alive", "upgrade", "proxy-connection", "te",
	};

	if (!name || !value || !name[0])
		return false;
	for (const char *p = name; *p; p++)
		if (!is_tchar((unsigned char)*p))
			return false;
	for (const char *p = value; *p; p++)
		if (*p == '\r' || *p == '\n')
			return false;
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (strcasecmp(name, ours[i]) == 0)
			return false;
	return true;
}

static void deliver(void *arg)
{
	struct edge_http_request *r = arg;
	struct http_conn *c = r->conn;

	if (c && !c->dead) {
		r->ready = true;
		if (c->proto == PROTO_H1)
			h1_deliver(c, r);
		else
			h2_deliver(c, r);
		http_conn_mark_dirty(c);
	}
	http_req_unref(r); /* the handler's reference */
}

int edge_http_respond(edge_http_request *r, int status,
		      const edge_http_header_kv *headers, size_t n_headers,
		      const void *body, size_t len)
{
	size_t hlen = 0, n = 0;
	char *h = NULL;

	if (!r)
		return -1;
	if (atomic_load(&r->cancelled)) {
		http_req_unref(r);
		return -1;
	}
	if (status < 200 || status > 599)
		status = 500;
	for (size_t i = 0; i < n_headers; i++)
		if (header_acceptable(headers[i].name, headers[i].value))
			hlen += strlen(headers[i].name) + strlen(headers[i].value) + 2;
	if (hlen && !(h = malloc(hlen)))
		goto nomem;
	hlen = 0;
	for (size_t i = 0; h && i < n_headers; i++) {
		const char *nm = headers[i].name, *v = headers[i].value;
		size_t nl, vl;

		if (!header_acceptable(nm, v))
			continue;
		nl = strlen(nm);
		vl = strlen(v);
		/* HTTP/2 wants lower-case names; HTTP/1.1 does not care. */
		for (size_t k = 0; k < nl; k++)
			h[hlen + k] = (char)((nm[k] >= 'A' && nm[k] <= 'Z')
					     ? nm[k] + 32 : nm[k]);
		h[hlen + nl] = 0;
		memcpy(h + hlen + nl + 1, v, vl + 1);
		hlen += nl + vl + 2;
		n++;
	}
	if (len) {
		r->rbody = malloc(len);
		if (!r->rbody)
			goto nomem;
		memcpy(r->rbody, body, len);
	}
	r->rbody_len = len;
	r->rhdrs = h;
	r->rhdrs_len = hlen;
	r->n_rhdrs = n;
	r->status = status;
	goto post;
nomem:
	free(h);
	free(r->rbody);
	r->rbody = NULL;
	r->rbody_len = 0;
	r->rhdrs = NULL;
	r->rhdrs_len = r->n_rhdrs = 0;
	r->status = 500;
post:
	if (rpc_loop_post(r->loop, deliver, r) != 0) {
		http_req_unref(r);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* connections (I/O loop)                                              */

int http_conn_out(struct http_conn *c, const void *p, size_t len)
{
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 16384;
		uint8_t *o;

		while (cap < c->out_len + len)
			cap *= 2;
		o = realloc(c->out, cap);
		if (!o)
			return -1;
		c->out = o;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, p, len);
	c->out_len += len;
	return 0;
}

void http_conn_mark_dirty(struct http_conn *c)
{
	if (c->in_dirty)
		return;
	c->in_dirty = true;
	c->next_dirty = c->io->dirty;
	c->io->dirty = c;
	event_active(c->io->flush_ev, EV_WRITE, 0);
}

void http_conn_read(struct http_conn *c, bool on)
{
	if (on == c->reading)
		return;
	c->reading = on;
	if (on) {
		event_add(c->rev, NULL);
		/* Bytes TLS already took off the socket never wake the loop. */
		if (c->ssl && SSL_pending(c->ssl) > 0)
			event_active(c->rev, EV_READ, 0);
	} else {
		event_del(c->rev);
	}
}

const char *http_conn_date(struct http_conn *c)
{
	struct http_io *io = c->io;
	time_t now = time(NULL);

	if (now != io->date_sec) {
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(io->date, sizeof(io->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		io->date_sec = now;
	}
	return io->date;
}

static void server_note_closed(edge_http_server *s)
{
	pthread_mutex_lock(&s->lock);
	s->open_conns--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void conn_close(struct http_conn *c)
{
	struct http_io *io = c->io;

	if (c->proto == PROTO_H1)
		h1_close(c);
	else if (c->proto == PROTO_H2)
		h2_close(c);
	if (c->in_dirty) {
		struct http_conn **pp = &io->dirty;

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
	event_free(c->rev);
	event_free(c->wev);
	event_free(c->timer);
	if (c->ssl) {
		/* A close_notify when it can go at once; never waited for. */
		if (!c->tls_failed && !c->lingering && SSL_is_init_finished(c->ssl))
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	close(c->fd);
	free(c->out);
	free(c);
	server_note_closed(io->srv);
}

/* recv() or SSL_read: > 0 bytes, 0 at the end of the stream, or -1 with
 * errno (EAGAIN: try again when the socket is readable, or writable when
 * c->tls_want_write was set). Lingering, the bytes are only discarded,
 * so TLS is not in the way. */
static ssize_t conn_recv(struct http_conn *c, void *buf, size_t cap)
{
	int n;

	if (!c->ssl || c->lingering)
		return recv(c->fd, buf, cap, 0);
	ERR_clear_error();
	n = SSL_read(c->ssl, buf, (int)(cap > INT32_MAX ? INT32_MAX : cap));
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		c->tls_want_write = true;
		event_add(c->wev, NULL);
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_SYSCALL:
		/* The client left without a close_notify, or a socket error. */
		c->tls_failed = true;
		if (n == 0 || errno == 0)
			return 0;
		return -1;
	default:
		/* A failed handshake or a bad record: the client's problem,
		 * told to it by OpenSSL's alert; ours is only to close. */
		c->tls_failed = true;
		ERR_clear_error();
		errno = EPROTO;
		return -1;
	}
}

/* send() or SSL_write, with send()'s return convention. */
static ssize_t conn_send(struct http_conn *c, const void *p, size_t len)
{
	int n;

	if (!c->ssl)
		return send(c->fd, p, len, MSG_NOSIGNAL);
	ERR_clear_error();
	n = SSL_write(c->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len));
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
	case SSL_ERROR_WANT_READ:
		errno = EAGAIN;
		return -1;
	default:
		c->tls_failed = true;
		ERR_clear_error();
		errno = EPIPE;
		return -1;
	}
}

/* Our side is done: FIN, then read and discard until the client closes
 * or LINGER_MS pass. */
static void conn_linger(struct http_conn *c)
{
	if (c->lingering)
		return;
	c->lingering = true;
	c->linger_until = http_now() + LINGER_MS * 1000000LL;
	if (c->ssl && !c->tls_failed && SSL_is_init_finished(c->ssl)) {
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	shutdown(c->fd, SHUT_WR);
	http_conn_read(c, true);
}

/* Writes what is buffered and asks the protocol for more, until nothing
 * is left or the socket is full. Returns false when the connection must
 * be closed now. */
static bool conn_flush(struct http_conn *c)
{
	for (;;) {
		while (c->out_off < c->out_len) {
			ssize_t n = conn_send(c, c->out + c->out_off,
					      c->out_len - c->out_off);

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
			c->last_write = http_now();
		}
		c->out_off = c->out_len = 0;
		if (c->lingering)
			break;
		if (c->proto == PROTO_H1)
			h1_fill(c);
		else if (c->proto == PROTO_H2 && h2_fill(c) < 0)
			c->closing = true;
		if (c->out_len == 0)
			break;
	}
	event_del(c->wev);
	if (c->closing && !c->lingering &&
	    (c->proto != PROTO_H2 || h2_idle(c)))
		conn_linger(c);
	return true;
}

static void conn_finish(struct http_conn *c)
{
	if (c->dead || !conn_flush(c) || c->dead) {
		conn_close(c);
		return;
	}
	conn_arm_timer(c);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct http_io *io = arg;

	while (io->dirty) {
		struct http_conn *c = io->dirty;

		io->dirty = c->next_dirty;
		c->in_dirty = false;
		c->next_dirty = NULL;
		conn_finish(c);
	}
}

static void on_readable(evutil_socket_t fd, short what, void *arg);

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;

	if (c->tls_want_write) {
		/* The handshake's output went out: read on (which may close
		 * the connection, so nothing after it touches c). */
		c->tls_want_write = false;
		on_readable(fd, EV_READ, c);
		return;
	}
	conn_finish(c);
}

static long long conn_deadline(struct http_conn *c)
{
	const struct http_limits *lim = c->lim;
	long long d = 0, p = 0;

	if (c->lingering)
		return c->linger_until;
	/* A client that stops reading our output is idle too. */
	if (c->out_off < c->out_len)
		d = c->last_write + lim->idle_timeout_ms * 1000000LL;
	if (c->proto == PROTO_SNIFF)
		p = c->accepted_at + lim->header_timeout_ms * 1000000LL;
	else if (c->proto == PROTO_H1)
		p = h1_deadline(c);
	else
		p = h2_deadline(c);
	if (p && (!d || p < d))
		d = p;
	return d;
}

static void conn_arm_timer(struct http_conn *c)
{
	long long d = conn_deadline(c), left;
	struct timeval tv;

	if (!d) {
		event_del(c->timer);
		return;
	}
	left = d - http_now();
	if (left < 1000000)
		left = 1000000;
	tv.tv_sec = (time_t)(left / 1000000000LL);
	tv.tv_usec = (suseconds_t)((left % 1000000000LL) / 1000);
	event_add(c->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	long long now = http_now();

	if (c->lingering) {
		if (now >= c->linger_until) {
			conn_close(c);
			return;
		}
	} else if (c->out_off < c->out_len &&
		   now >= c->last_write + c->lim->idle_timeout_ms * 1000000LL) {
		conn_close(c);
		return;
	} else if (c->proto == PROTO_SNIFF) {
		if (now >= c->accepted_at + c->lim->header_timeout_ms * 1000000LL) {
			conn_close(c);
			return;
		}
	} else if (c->proto == PROTO_H1) {
		h1_timeout(c, now);
	} else {
		h2_timeout(c, now);
	}
	if (c->dead)
		conn_close(c);
	else
		http_conn_mark_dirty(c);
}

/* First bytes: the HTTP/2 preface picks HTTP/2, anything else HTTP/1.1.
 * `p` has PREFACE_LEN bytes of room before it for what was kept. */
static int conn_sniff(struct http_conn *c, uint8_t *p, size_t len)
{
	size_t take = PREFACE_LEN - c->sniff_len;

	if (take > len)
		take = len;
	if (memcmp(p, PREFACE + c->sniff_len, take) == 0) {
		memcpy(c->sniff + c->sniff_len, p, take);
		c->sniff_len += take;
		if (c->sniff_len < PREFACE_LEN)
			return 0;
		c->proto = PROTO_H2;
		if (h2_init(c))
			return -1;
		return h2_feed(c, c->sniff, PREFACE_LEN) < 0 ||
		       h2_feed(c, p + take, len - take) < 0 ? -1 : 0;
	}
	c->proto = PROTO_H1;
	if (h1_init(c))
		return -1;
	p -= c->sniff_len;
	memcpy(p, c->sniff, c->sniff_len);
	return h1_feed(c, p, len + c->sniff_len);
}

/* A TLS connection's first byte is a handshake record (22): an HTTP
 * request line or the HTTP/2 preface never starts so. Peeked, so that
 * OpenSSL reads the ClientHello from the socket itself. 1: TLS set up,
 * 0: cleartext, -1: close (an error, or cleartext where TLS is
 * required), -2: nothing to read yet. */
static int conn_detect_tls(struct http_conn *c)
{
	edge_http_server *s = c->io->srv;
	unsigned char first;
	ssize_t n = recv(c->fd, &first, 1, MSG_PEEK);

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -2 : -1;
	if (n == 0)
		return -1;
	if (first != 22)
		return s->cfg.tls_required ? -1 : 0;
	c->ssl = SSL_new(s->tls);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
		ERR_clear_error();
		return -1;
	}
	SSL_set_accept_state(c->ssl);
	return 1;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	uint8_t *buf = c->io->readbuf + PREFACE_LEN;
	int rc = 0;

	(void)fd;
	(void)what;
	if (c->proto == PROTO_SNIFF && c->sniff_len == 0 && !c->ssl &&
	    c->io->srv->tls) {
		int t = conn_detect_tls(c);

		if (t == -2)
			return;
		if (t < 0) {
			conn_close(c);
			return;
		}
	}
	/* TLS may hold a whole record's bytes after one read, which the
	 * socket no longer signals: read until it has none (or the
	 * protocol stops reading). */
	do {
		ssize_t n = conn_recv(c, buf, READ_CHUNK);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			break;
		if (n <= 0) {
			/* The client is gone (or done, when we linger):
			 * whatever it still waits for is cancelled. */
			conn_close(c);
			return;
		}
		if (c->lingering)
			return;
		if (c->proto == PROTO_SNIFF)
			rc = conn_sniff(c, buf, (size_t)n);
		else if (c->proto == PROTO_H1)
			rc = h1_feed(c, buf, (size_t)n);
		else
			rc = h2_feed(c, buf, (size_t)n);
		if (rc < 0 || c->dead) {
			conn_close(c);
			return;
		}
	} while (c->ssl && c->reading && SSL_pending(c->ssl) > 0);
	http_conn_mark_dirty(c);
}

struct accepted {
	int fd;
	char peer[64];
	struct http_io *io;
};

static void conn_attach(void *arg)
{
	struct accepted *a = arg;
	struct http_io *io = a->io;
	struct event_base *base = rpc_loop_base(io->loop);
	struct http_conn *c = NULL;

	/* Accepted before the listener closed, attached after the drain
	 * began: nothing was asked yet, so nothing is lost. */
	if (io->draining)
		goto fail;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail;
	c->io = io;
	c->lim = &io->srv->lim;
	c->fd = a->fd;
	memcpy(c->peer, a->peer, sizeof(c->peer));
	c->accepted_at = c->last_write = http_now();
	c->rev = event_new(base, c->fd, EV_READ | EV_PERSIST, on_readable, c);
	c->wev = event_new(base, c->fd, EV_WRITE, on_writable, c);
	c->timer = evtimer_new(base, on_timer, c);
	if (!c->rev || !c->wev || !c->timer)
		goto fail;
	http_conn_read(c, true);
	if (!c->reading)
		goto fail;
	c->next = io->conns;
	if (io->conns)
		io->conns->prev = c;
	io->conns = c;
	conn_arm_timer(c);
	free(a);
	return;
fail:
	if (c) {
		if (c->rev)
			event_free(c->rev);
		if (c->wev)
			event_free(c->wev);
		if (c->timer)
			event_free(c->timer);
		free(c);
	}
	close(a->fd);
	server_note_closed(io->srv);
	free(a);
}

/* ------------------------------------------------------------------ */
/* accepting                                                           */

static void format_peer(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%u", host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, len, "?");
	}
}

/* Over max_connections: a best-effort 503 (no loop will own this socket),
 * then close. What the client already sent is read first so that the
 * close is a FIN, not a reset that would hide the 503. */
static void reject(int fd)
{
	char head[256], sink[4096];
	size_t blen = 0;
	ssize_t got;
	char *body = edge_error_body(RPC_UNAVAILABLE, "too many connections", &blen);
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 503 %s\r\ncontent-type: application/json\r\n"
			 "content-length: %zu\r\nconnection: close\r\n\r\n",
			 edge_http_reason(503), body ? blen : 0);

	got = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
	while (got > 0 && recv(fd, sink + 1, sizeof(sink) - 1, MSG_DONTWAIT) > 0)
		;
	/* A TLS client (its first byte a handshake record) could not read a
	 * cleartext 503: it gets the close alone. */
	if (got > 0 && (unsigned char)sink[0] == 22)
		n = 0;
	if (n > 0 && send(fd, head, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) == n && body)
		(void)!send(fd, body, blen, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(body);
	shutdown(fd, SHUT_WR);
	close(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	edge_http_server *s = arg;
	struct accepted *a;
	unsigned i;
	int one = 1;

	pthread_mutex_lock(&s->lock);
	if (s->open_conns >= s->cfg.max_connections) {
		pthread_mutex_unlock(&s->lock);
		reject(fd);
		return;
	}
	s->open_conns++;
	pthread_mutex_unlock(&s->lock);
	a = malloc(sizeof(*a));
	if (!a) {
		close(fd);
		server_note_closed(s);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	evutil_make_socket_nonblocking(fd);
	i = atomic_fetch_add(&s->next_io, 1) % (unsigned)s->n_io;
	a->fd = fd;
	a->io = &s->io[i];
	format_peer(sa, a->peer, sizeof(a->peer));
	if (rpc_loop_post(a->io->loop, conn_attach, a) != 0) {
		close(fd);
		free(a);
		server_note_closed(s);
	}
}

/* ------------------------------------------------------------------ */
/* the server                                                          */

static int make_io_loops(edge_http_server *s)
{
	s->n_io = s->cfg.io_threads;
	s->core = calloc(1, sizeof(*s->core) + (size_t)s->n_io * sizeof(rpc_loop *));
	s->io = calloc((size_t)s->n_io, sizeof(*s->io));
	if (!s->core || !s->io)
		return -1;
	atomic_init(&s->core->refs, 1);
	for (int i = 0; i < s->n_io; i++) {
		struct http_io *io = &s->io[i];

		io->srv = s;
		io->loop = rpc_loop_new("edge-http");
		if (!io->loop)
			return -1;
		s->core->loops[s->core->n++] = io->loop;
		io->readbuf = malloc(PREFACE_LEN + READ_CHUNK);
		io->flush_ev = event_new(rpc_loop_base(io->loop), -1, 0, on_flush, io);
		if (!io->readbuf || !io->flush_ev)
			return -1;
	}
	return 0;
}

size_t edge_http_server_loops(const edge_http_server *s)
{
	return (size_t)s->n_io;
}

struct rpc_loop *edge_http_server_loop(edge_http_server *s, size_t i)
{
	return i < (size_t)s->n_io ? s->io[i].loop : NULL;
}

size_t edge_http_loop_index(const edge_http_request *r)
{
	return r->io_index;
}

edge_http_server *edge_http_server_new(const edge_http_config *cfg,
				       edge_http_handler handler, void *user,
				       char *err, size_t errlen)
{
	edge_http_server *s;

	if (!cfg || !handler) {
		if (err && errlen)
			snprintf(err, errlen, "edge http: no config or handler");
		return NULL;
	}
	if (config_check(cfg, err, errlen))
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		if (err && errlen)
			snprintf(err, errlen, "edge http: out of memory");
		return NULL;
	}
	s->cfg = *cfg;
	snprintf(s->host, sizeof(s->host), "%s", cfg->host);
	s->cfg.host = s->host;
	/* The files are read now: the strings need not outlive this call. */
	if (cfg->tls_cert_file) {
		char why[512];

		s->tls = edge_tls_context_new(cfg->tls_cert_file, cfg->tls_key_file,
					      why, sizeof(why));
		if (s->tls == NULL) {
			if (err && errlen)
				snprintf(err, errlen, "edge http: %s", why);
			free(s);
			return NULL;
		}
	}
	s->cfg.tls_cert_file = s->cfg.tls_key_file = NULL;
	s->lim.max_header_bytes = cfg->max_header_bytes;
	s->lim.max_body_bytes = cfg->max_body_bytes;
	s->lim.header_timeout_ms = cfg->header_timeout_ms;
	s->lim.body_timeout_ms = cfg->body_timeout_ms;
	s->lim.idle_timeout_ms = cfg->idle_timeout_ms;
	s->lim.max_streams = cfg->max_streams;
	s->handler = handler;
	s->user = user;
	s->listen_fd = -1;
	atomic_init(&s->next_io, 0);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	/* The I/O loops exist from here (started by edge_http_server_start),
	 * so channels can be put on them before the first request. */
	if (make_io_loops(s) != 0) {
		if (err && errlen)
			snprintf(err, errlen, "edge http: out of memory");
		edge_http_server_free(s);
		return NULL;
	}
	return s;
}

static int do_listen(edge_http_server *s, char *err, size_t errlen)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char port[16];
	int fd = -1, one = 1, zero = 0, rc;

	snprintf(port, sizeof(port), "%d", s->cfg.port);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(s->host, port, &hints, &res);
	if (rc != 0 || !res) {
		snprintf(err, errlen, "edge http: cannot resolve %s: %s", s->host,
			 gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "::" serves IPv4 too. */
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, 1024) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		goto fail;
	freeaddrinfo(res);
	s->listen_fd = fd;
	s->port = ss.ss_family == AF_INET
		? ntohs(((struct sockaddr_in *)&ss)->sin_port)
		: ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
fail:
	snprintf(err, errlen, "edge http: cannot listen on %s:%d: %s", s->host,
		 s->cfg.port, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

int edge_http_server_start(edge_http_server *s, char *err, size_t errlen)
{
	char dummy[8];
	sigset_t block, old;
	int rc = -1;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	if (s->started) {
		snprintf(err, errlen, "edge http: already started");
		return -1;
	}
	if (do_listen(s, err, errlen))
		return -1;
	/* Our threads never take the process's signals: SIGPIPE is avoided
	 * per send(), SIGTERM/SIGINT belong to whoever waits for them. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	s->started = true;

	for (int i = 0; i < s->n_io; i++) {
		if (rpc_loop_start(s->io[i].loop)) {
			snprintf(err, errlen, "edge http: cannot start a thread");
			goto out;
		}
	}
	s->accept_loop = rpc_loop_new("edge-accept");
	if (!s->accept_loop) {
		snprintf(err, errlen, "edge http: out of memory");
		goto out;
	}
	s->listener = evconnlistener_new(rpc_loop_base(s->accept_loop), on_accept,
					 s, LEV_OPT_CLOSE_ON_FREE, -1, s->listen_fd);
	if (!s->listener) {
		snprintf(err, errlen, "edge http: cannot watch the listener");
		goto out;
	}
	s->listen_fd = -1; /* the listener owns it */
	if (rpc_loop_start(s->accept_loop)) {
		snprintf(err, errlen, "edge http: cannot start a thread");
		goto out;
	}
	rc = 0;
out:
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

int edge_http_server_port(const edge_http_server *s)
{
	return s->port;
}

long edge_http_server_open_connections(edge_http_server *s)
{
	long n;

	pthread_mutex_lock(&s->lock);
	n = s->open_conns;
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void close_listener(void *arg)
{
	edge_http_server *s = arg;

	if (s->listener) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
}

static void drain_all(void *arg)
{
	struct http_io *io = arg;
	struct http_conn *c = io->conns;

	io->draining = true;
	while (c) {
		struct http_conn *next = c->next;

		c->draining = true;
		if (c->proto == PROTO_SNIFF) {
			conn_close(c);
		} else {
			if (c->proto == PROTO_H1)
				h1_drain(c);
			else
				h2_drain(c);
			http_conn_mark_dirty(c);
		}
		c = next;
	}
}

static void force_close_all(void *arg)
{
	struct http_io *io = arg;

	while (io->conns)
		conn_close(io->conns);
}

static void abs_deadline(int ms, struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void edge_http_server_shutdown(edge_http_server *s, int drain_ms)
{
	struct timespec until;
	bool timed_out = false;

	if (!s || !s->started || s->stopped)
		return;
	s->stopped = true;
	/* Stopping the accept loop runs close_listener first: no accept
	 * (and no conn_attach post) can follow the drain tasks. */
	if (s->accept_loop) {
		rpc_loop_post(s->accept_loop, close_listener, s);
		rpc_loop_stop(s->accept_loop);
	}
	for (int i = 0; i < s->n_io; i++)
		if (s->io[i].flush_ev)
			rpc_loop_post(s->io[i].loop, drain_all, &s->io[i]);
	abs_deadline(drain_ms > 0 ? drain_ms : 0, &until);
	pthread_mutex_lock(&s->lock);
	while (s->open_conns > 0 && !timed_out)
		timed_out = pthread_cond_timedwait(&s->cond, &s->lock, &until) ==
			    ETIMEDOUT;
	pthread_mutex_unlock(&s->lock);
	/* Past the drain: the rest is cancelled (handlers still holding
	 * requests get -1 from edge_http_respond). */
	for (int i = 0; i < s->n_io; i++) {
		if (!s->io[i].loop)
			continue;
		rpc_loop_post(s->io[i].loop, force_close_all, &s->io[i]);
		rpc_loop_stop(s->io[i].loop);
	}
}

void edge_http_server_free(edge_http_server *s)
{
	if (!s)
		return;
	edge_http_server_shutdown(s, 0);
	for (int i = 0; s->io && i < s->n_io; i++) {
		struct http_io *io = &s->io[i];

		/* Loops are stopped; a start that failed half way may have
		 * left connections nowhere, but never sockets in a loop. */
		force_close_all(io);
		if (io->flush_ev)
			event_free(io->flush_ev);
		free(io->readbuf);
	}
	free(s->io);
	if (s->listener)
		evconnlistener_free(s->listener);
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	rpc_loop_free(s->accept_loop);
	core_unref(s->core);
	SSL_CTX_free(s->tls);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
