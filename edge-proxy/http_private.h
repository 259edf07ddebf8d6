/*
 * http_private.h - what http.c (sockets, loops, timers, requests) shares
 * with the two protocol cores, http1.c and http2.c. Not part of the
 * contract: only these three files include it.
 *
 * Threads: a connection and everything reachable from it belongs to the
 * I/O loop that accepted it and is touched only there. A request is the
 * one object that crosses threads: the handler reads its (then immutable)
 * fields and calls edge_http_respond from anywhere; `refs`, `cancelled`
 * and the handover of the response through rpc_loop_post are the only
 * synchronisation needed.
 */
#ifndef ESTORE_EDGE_HTTP_PRIVATE_H
#define ESTORE_EDGE_HTTP_PRIVATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "http.h"
#include "rpc/loop.h"

struct http_conn;
struct http_core;
struct h1_conn;
struct h2_conn;

/* Offsets of a NUL-terminated name and value in the request's hbuf. */
struct http_hdr {
	uint32_t name, value;
};

struct edge_http_request {
	/* One reference for the connection (dropped when the response has
	 * been written or the connection is gone), one for the handler
	 * (dropped by edge_http_respond). */
	atomic_int refs;
	atomic_bool cancelled;
	struct http_core *core;     /* keeps the loops alive */
	rpc_loop *loop;
	size_t io_index;            /* which of the server's loops */

	/* Loop thread only. */
	struct http_conn *conn;     /* NULL once detached */
	struct edge_http_request *next;  /* HTTP/1.1 queue, HTTP/2 stream list */
	struct edge_http_request *prev;  /* HTTP/2 stream list */
	bool ready;                 /* the response is attached */
	bool handed;                /* given to the handler */
	bool failed;                /* a server-made error answers it */
	bool keep_alive;            /* HTTP/1.x: the client allows reuse */
	bool close_after;           /* close the connection once it is sent */
	bool in_body;               /* headers complete, body still coming */
	bool sent;                  /* HTTP/2: the whole response is out */
	int32_t stream_id;
	long long deadline;         /* ns: header/body timeout (HTTP/2) */

	/* The request, immutable once handed to the handler. hbuf holds
	 * the method, the target and every header name and value, each
	 * NUL-terminated, and is capped by max_header_bytes (plus the
	 * terminators). */
	int version;                /* 11 or 20 */
	bool tls;
	bool http10;                /* HTTP/1.0: keep-alive only if asked */
	bool head;
	char *hbuf;
	size_t hlen, hcap;
	size_t header_bytes;        /* counted against max_header_bytes */
	struct http_hdr *hdrs;
	size_t n_hdrs, hdrs_cap;
	bool have_method, have_url;
	uint32_t method_off, url_off, url_len;
	uint32_t path_off, path_len, query_off, query_len;
	bool has_query;
	uint8_t *body;
	size_t body_len, body_cap;
	char peer[64];

	/* The response, written by edge_http_respond before it posts to
	 * the loop. rhdrs: n_rhdrs pairs of NUL-terminated name, value. */
	int status;
	char *rhdrs;
	size_t rhdrs_len, n_rhdrs;
	uint8_t *rbody;
	size_t rbody_len, rbody_off;
};

/* Server-wide settings and counters a protocol core needs. */
struct http_limits {
	size_t max_header_bytes;
	size_t max_body_bytes;
	int header_timeout_ms;
	int body_timeout_ms;
	int idle_timeout_ms;
	int max_streams;
};

struct http_conn {
	struct http_io *io;
	const struct http_limits *lim;
	struct http_conn *prev, *next;   /* io->conns */
	struct http_conn *next_dirty;
	bool in_dirty;
	int fd;
	struct event *rev, *wev, *timer;
	char peer[64];
	enum { PROTO_SNIFF, PROTO_H1, PROTO_H2 } proto;
	uint8_t sniff[24];
	size_t sniff_len;
	struct h1_conn *h1;
	struct h2_conn *h2;
	SSL *ssl;            /* TLS: every byte in and out goes through it */
	bool tls_want_write; /* SSL_read must write first (handshake) */
	bool tls_failed;     /* fatal TLS error: no close_notify */
	uint8_t *out;
	size_t out_len, out_off, out_cap;
	long long accepted_at, last_write;
	bool reading;        /* rev is armed */
	bool draining;       /* server shutdown: finish what is in flight */
	bool closing;        /* close once the output is flushed */
	bool dead;           /* close now, without a flush */
	bool lingering;      /* our side shut down, reading until the client closes */
	long long linger_until;
};

/* ---- http.c, for the protocol cores ------------------------------- */

/* A new request for connection c (refs 1, the connection's). NULL on no
 * memory. */
struct edge_http_request *http_req_new(struct http_conn *c, int version);
void http_req_unref(struct edge_http_request *r);
/* Detaches r from its connection: the connection's reference goes,
 * and when the response was not complete the request is cancelled. */
void http_req_detach(struct edge_http_request *r);

/* Appends len bytes and a NUL to hbuf; the offset of the copy in *off.
 * Returns 0 or -1 (no memory). */
int http_req_hbuf_add(struct edge_http_request *r, const char *s, size_t len,
		      uint32_t *off);
/* Appends to the last string of hbuf (a field arriving in pieces). */
int http_req_hbuf_extend(struct edge_http_request *r, const char *s,
			 size_t len);
int http_req_add_header(struct edge_http_request *r, uint32_t name,
			uint32_t value);
/* Splits the target at url_off into path and query. */
void http_req_split_target(struct edge_http_request *r);
/* Appends to the body; -1 when it would pass max_body_bytes (*too_big
 * set) or on no memory. */
int http_req_body_add(struct edge_http_request *r, const uint8_t *p,
		      size_t len, size_t max, bool *too_big);
/* Makes r answer itself with the JSON error body for `status`. -1 on no
 * memory. */
int http_req_fail(struct edge_http_request *r, int status, const char *msg);
/* Gives r to the handler (adds the handler's reference). */
void http_req_dispatch(struct edge_http_request *r);

/* Output buffer: appends, growing; -1 on no memory. */
int http_conn_out(struct http_conn *c, const void *p, size_t len);
/* Asks for a flush (fill + write) before the loop sleeps. */
void http_conn_mark_dirty(struct http_conn *c);
/* Starts or stops reading from the socket. */
void http_conn_read(struct http_conn *c, bool on);
/* An HTTP-date for now, cached per second per loop. */
const char *http_conn_date(struct http_conn *c);
long long http_now(void);

/* ---- the protocol cores -------------------------------------------
 * Each: init (0 or -1), feed received bytes (-1: close now), fill the
 * output buffer before a write, deliver a response posted by the handler,
 * the next deadline (0 = none) and its expiry, drain, and close (detach
 * every request; the socket is http.c's). */
int h1_init(struct http_conn *c);
int h1_feed(struct http_conn *c, const uint8_t *p, size_t len);
void h1_fill(struct http_conn *c);
void h1_deliver(struct http_conn *c, struct edge_http_request *r);
long long h1_deadline(struct http_conn *c);
void h1_timeout(struct http_conn *c, long long now);
void h1_drain(struct http_conn *c);
void h1_close(struct http_conn *c);
/* True when a response is wanted by nobody and nothing is half read:
 * the connection may close at once on shutdown. */
bool h1_idle(const struct http_conn *c);

int h2_init(struct http_conn *c);
int h2_feed(struct http_conn *c, const uint8_t *p, size_t len);
/* -1: the session is over, close once the output is written. */
int h2_fill(struct http_conn *c);
void h2_deliver(struct http_conn *c, struct edge_http_request *r);
long long h2_deadline(struct http_conn *c);
void h2_timeout(struct http_conn *c, long long now);
void h2_drain(struct http_conn *c);
void h2_close(struct http_conn *c);
bool h2_idle(const struct http_conn *c);

#endif
