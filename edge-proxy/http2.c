/*
 * http2.c - HTTP/2 over cleartext with prior knowledge, on nghttp2's
 * server session. nghttp2 does no I/O here: http.c feeds it with
 * h2_feed (nghttp2_session_mem_recv) and collects its frames with h2_fill
 * (nghttp2_session_mem_send).
 *
 * One request per stream, created at the first HEADERS and handed to the
 * handler at END_STREAM. nghttp2 checks the framing and the pseudo-header
 * rules; we check the limits: header bytes counted in the header callback
 * (a server session does not enforce SETTINGS_MAX_HEADER_LIST_SIZE on
 * what it receives) → 431, body bytes → 413, each on its own stream with
 * the connection left alone.
 */
#include "http_private.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

/* Frames collected before one write. */
#define OUTBUF_FLUSH 65536
#define MAX_WINDOW 0x7fffffff
#define MIN_CONN_WINDOW (16 << 20)

struct h2_conn {
	nghttp2_session *s;
	struct edge_http_request *streams;   /* requests whose stream is open */
	unsigned open;
	bool over;              /* the session ended (error or both sides done) */
	long long idle_since;
};

static struct edge_http_request *stream_req(nghttp2_session *s, int32_t id)
{
	return nghttp2_session_get_stream_user_data(s, id);
}

static void link_stream(struct h2_conn *h, struct edge_http_request *r)
{
	r->prev = NULL;
	r->next = h->streams;
	if (h->streams)
		h->streams->prev = r;
	h->streams = r;
	h->open++;
}

static void unlink_stream(struct h2_conn *h, struct edge_http_request *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		h->streams = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
	h->open--;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf,
			 size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *user)
{
	struct edge_http_request *r = src->ptr;
	size_t left = r->rbody_len - r->rbody_off;
	size_t n = left < length ? left : length;

	memcpy(buf, r->rbody + r->rbody_off, n);
	r->rbody_off += n;
	if (r->rbody_off == r->rbody_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static nghttp2_nv make_nv(const char *name, const char *value)
{
	nghttp2_nv nv = {
		(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
		NGHTTP2_NV_FLAG_NONE,
	};

	return nv;
}

/* Submits r's response on its stream (nghttp2 copies the headers; the
 * body is pulled from r, which lives until the stream closes). */
static void submit(struct http_conn *c, struct edge_http_request *r)
{
	nghttp2_session *s = c->h2->s;
	bool no_body = r->status == 204 || r->status == 304;
	nghttp2_data_provider dp = { .source.ptr = r, .read_callback = read_body };
	char status[8], length[24];
	nghttp2_nv *nva = malloc((2 + r->n_rhdrs) * sizeof(*nva));
	const char *h = r->rhdrs;
	size_t n = 0;

	if (!nva) {
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, r->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
		return;
	}
	snprintf(status, sizeof(status), "%d", r->status);
	snprintf(length, sizeof(length), "%zu", r->rbody_len);
	nva[n++] = make_nv(":status", status);
	if (!no_body)
		nva[n++] = make_nv("content-length", length);
	for (size_t i = 0; i < r->n_rhdrs; i++) {
		size_t nl = strlen(h);

		nva[n++] = make_nv(h, h + nl + 1);
		h += nl + strlen(h + nl + 1) + 2;
	}
	if (nghttp2_submit_response(s, r->stream_id, nva, n,
				    no_body || r->head || !r->rbody_len ? NULL : &dp))
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, r->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	free(nva);
}

static void fail_stream(struct http_conn *c, struct edge_http_request *r,
			int status, const char *msg)
{
	if (r->ready)
		return;
	r->in_body = false;
	if (http_req_fail(r, status, msg)) {
		nghttp2_submit_rst_stream(c->h2->s, NGHTTP2_FLAG_NONE, r->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
		return;
	}
	submit(c, r);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame,
			    void *user)
{
	struct http_conn *c = user;
	struct edge_http_request *r;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	r = http_req_new(c, 20);
	if (!r)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	r->stream_id = frame->hd.stream_id;
	r->deadline = http_now() + c->lim->header_timeout_ms * 1000000LL;
	nghttp2_session_set_stream_user_data(s, r->stream_id, r);
	link_stream(c->h2, r);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	struct http_conn *c = user;
	struct edge_http_request *r = stream_req(s, frame->hd.stream_id);
	uint32_t n_off, v_off;
	int rc = 0;

	/* Trailers are accepted and ignored. */
	if (!r || frame->headers.cat != NGHTTP2_HCAT_REQUEST || r->status)
		return 0;
	/* RFC 9113's accounting for SETTINGS_MAX_HEADER_LIST_SIZE. Past
	 * the limit we stop storing and answer 431 at END_HEADERS. */
	r->header_bytes += namelen + valuelen + 32;
	if (r->header_bytes > c->lim->max_header_bytes) {
		r->status = 431;
		return 0;
	}
	if (namelen && name[0] == ':') {
		if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
			rc = http_req_hbuf_add(r, (const char *)value, valuelen,
					       &r->method_off);
			r->have_method = true;
		} else if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
			rc = http_req_hbuf_add(r, (const char *)value, valuelen,
					       &r->url_off);
			r->url_len = (uint32_t)valuelen;
			r->have_url = true;
		} else if (namelen == 10 && memcmp(name, ":authority", 10) == 0) {
			rc = http_req_hbuf_add(r, "host", 4, &n_off) ||
			     http_req_hbuf_add(r, (const char *)value, valuelen,
					       &v_off) ||
			     http_req_add_header(r, n_off, v_off);
		}
		goto out;
	}
	rc = http_req_hbuf_add(r, (const char *)name, namelen, &n_off) ||
	     http_req_hbuf_add(r, (const char *)value, valuelen, &v_off) ||
	     http_req_add_header(r, n_off, v_off);
out:
	return rc ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static void headers_done(struct http_conn *c, struct edge_http_request *r)
{
	const char *cl;

	if (r->status == 431) {
		r->status = 0;
		fail_stream(c, r, 431, "request header fields too large");
		return;
	}
	if (!r->have_method || !r->have_url) {
		fail_stream(c, r, 400, "missing :method or :path");
		return;
	}
	cl = edge_http_header(r, "content-length");
	if (cl && strtoull(cl, NULL, 10) > c->lim->max_body_bytes) {
		fail_stream(c, r, 413, "request body too large");
		return;
	}
	http_req_split_target(r);
	r->head = strcmp(r->hbuf + r->method_off, "HEAD") == 0;
	r->in_body = true;
	r->deadline = http_now() + c->lim->body_timeout_ms * 1000000LL;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame,
			 void *user)
{
	struct http_conn *c = user;
	struct edge_http_request *r;

	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	r = stream_req(s, frame->hd.stream_id);
	if (!r)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		headers_done(c, r);
	if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !r->ready &&
	    !r->handed && r->in_body) {
		r->in_body = false;
		r->deadline = 0;
		http_req_dispatch(r);
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user)
{
	struct http_conn *c = user;
	struct edge_http_request *r = stream_req(s, stream_id);
	bool too_big;

	/* After a 413 (or any early answer) the rest is dropped; nghttp2
	 * still returns the window, so the client is never stuck. */
	if (!r || r->ready || r->handed)
		return 0;
	if (http_req_body_add(r, data, len, c->lim->max_body_bytes, &too_big))
		fail_stream(c, r, too_big ? 413 : 500,
			    too_big ? "request body too large" : "out of memory");
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id,
			   uint32_t error_code, void *user)
{
	struct http_conn *c = user;
	struct edge_http_request *r = stream_req(s, stream_id);

	if (!r)
		return 0;
	nghttp2_session_set_stream_user_data(s, stream_id, NULL);
	unlink_stream(c->h2, r);
	/* Closed cleanly after our response: done. Reset or closed
	 * before it: the handler's request is cancelled. */
	if (error_code == NGHTTP2_NO_ERROR && r->ready)
		r->sent = true;
	http_req_detach(r);
	if (!c->h2->open)
		c->h2->idle_since = http_now();
	return 0;
}

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;

	if (nghttp2_session_callbacks_new(&cb) != 0)
		return;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cb);
		return;
	}
	/* Flood limits set explicitly, as in rpc/server.c: SETTINGS with
	 * many entries, unread SETTINGS/PING ACKs, rapid reset and
	 * CONTINUATION floods. */
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
	nghttp2_option_set_max_continuations(opt, 8);
	callbacks = cb;
	options = opt;
}

int h2_init(struct http_conn *c)
{
	const struct http_limits *lim = c->lim;
	uint32_t stream_win = lim->max_body_bytes < 65535 ? 65535
			    : (uint32_t)lim->max_body_bytes;
	int32_t conn_win = stream_win < MIN_CONN_WINDOW ? MIN_CONN_WINDOW
			 : (int32_t)stream_win;
	nghttp2_settings_entry settings[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)lim->max_streams },
		/* A whole body fits in a window: a client never waits on
		 * us for a WINDOW_UPDATE within the limit. */
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, stream_win },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
		  (uint32_t)lim->max_header_bytes },
	};
	struct h2_conn *h;

	pthread_once(&once, init_once);
	if (!callbacks)
		return -1;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -1;
	c->h2 = h;
	h->idle_since = http_now();
	if (nghttp2_session_server_new2(&h->s, callbacks, c, options) != 0) {
		h->s = NULL;
		return -1;
	}
	if (nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, settings,
				    sizeof(settings) / sizeof(settings[0])) ||
	    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0,
						  conn_win))
		return -1;
	return 0;
}

int h2_feed(struct http_conn *c, const uint8_t *p, size_t len)
{
	struct h2_conn *h = c->h2;
	ssize_t n;

	if (h->over || !len)
		return 0;
	n = nghttp2_session_mem_recv(h->s, p, len);
	if (n < 0) {
		/* A GOAWAY with the right code goes out before we close. */
		if (n == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
			nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
		else if (n == NGHTTP2_ERR_FLOODED)
			nghttp2_session_terminate_session(h->s, NGHTTP2_ENHANCE_YOUR_CALM);
		else if (n == NGHTTP2_ERR_NOMEM || n == NGHTTP2_ERR_CALLBACK_FAILURE)
			nghttp2_session_terminate_session(h->s, NGHTTP2_INTERNAL_ERROR);
		h->over = true;
		c->closing = true;
	}
	return 0;
}

int h2_fill(struct http_conn *c)
{
	struct h2_conn *h = c->h2;

	while (c->out_len < OUTBUF_FLUSH) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(h->s, &data);

		if (n < 0) {
			h->over = true;
			return -1;
		}
		if (n == 0)
			break;
		if (http_conn_out(c, data, (size_t)n)) {
			c->dead = true;
			return -1;
		}
	}
	if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s)) {
		h->over = true;
		return -1;
	}
	return h->over ? -1 : 0;
}

void h2_deliver(struct http_conn *c, struct edge_http_request *r)
{
	submit(c, r);
}

long long h2_deadline(struct http_conn *c)
{
	struct h2_conn *h = c->h2;
	long long d = 0;

	if (h->over)
		return 0;
	for (struct edge_http_request *r = h->streams; r; r = r->next)
		if (!r->handed && !r->ready && r->deadline &&
		    (!d || r->deadline < d))
			d = r->deadline;
	if (!h->open && !c->closing) {
		long long idle = h->idle_since + c->lim->idle_timeout_ms * 1000000LL;

		if (!d || idle < d)
			d = idle;
	}
	return d;
}

static void goaway(struct http_conn *c, const char *why)
{
	struct h2_conn *h = c->h2;

	if (c->closing)
		return;
	c->closing = true;
	nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(h->s),
			      NGHTTP2_NO_ERROR, (const uint8_t *)why, strlen(why));
}

void h2_timeout(struct http_conn *c, long long now)
{
	struct h2_conn *h = c->h2;
	struct edge_http_request *r = h->streams;

	if (h->over)
		return;
	while (r) {
		struct edge_http_request *next = r->next;

		if (!r->handed && !r->ready && r->deadline && now >= r->deadline) {
			r->deadline = 0;
			if (r->in_body) {
				fail_stream(c, r, 408, "request body timeout");
			} else {
				/* A header block left open blocks the whole
				 * connection (CONTINUATION must follow). */
				nghttp2_session_terminate_session(h->s,
								  NGHTTP2_PROTOCOL_ERROR);
				h->over = true;
				c->closing = true;
				return;
			}
		}
		r = next;
	}
	if (!h->open &&
	    now >= h->idle_since + c->lim->idle_timeout_ms * 1000000LL)
		goaway(c, "idle");
}

void h2_drain(struct http_conn *c)
{
	goaway(c, "shutting down");
}

bool h2_idle(const struct http_conn *c)
{
	return c->h2->over || !c->h2->open;
}

void h2_close(struct http_conn *c)
{
	struct h2_conn *h = c->h2;

	if (!h)
		return;
	/* nghttp2_session_del reports no stream closes. */
	while (h->streams) {
		struct edge_http_request *r = h->streams;

		unlink_stream(h, r);
		http_req_detach(r);
	}
	nghttp2_session_del(h->s);
	free(h);
	c->h2 = NULL;
}
