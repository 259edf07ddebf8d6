/*
 * http1.c - HTTP/1.1 (and 1.0) on http_parser: requests parsed as bytes
 * arrive, handed to the handler one by one, responses written strictly in
 * request order (pipelining), whatever order the handlers answer in.
 *
 * The queue holds every request parsed and not yet answered on the wire;
 * at MAX_PIPELINE the parser is paused and the socket left unread, the
 * unparsed rest kept, so a client cannot make us hold more. Errors the
 * server makes itself (400, 408, 413, 431) join the queue as requests
 * already answered, and close the connection once written: after them the
 * parser's idea of where the next request starts is not to be trusted.
 */
#include "http_private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "httpstatus.h"

#define MAX_PIPELINE 16
/* Stop serialising responses into the output buffer past this; the
 * rest follows once the socket has taken it. */
#define OUT_HIGH (256 * 1024)

struct h1_conn {
	http_parser parser;
	struct edge_http_request *cur;      /* being parsed, not handed */
	struct edge_http_request *q_head, *q_tail;
	unsigned queued;
	uint8_t *pending;                   /* unparsed input while paused */
	size_t pending_len;
	bool paused;
	bool stopped;        /* no more requests will be read */
	bool any_request;
	bool last_was_value;
	uint32_t name_off;
	long long phase_since;              /* request start / headers end */
	long long idle_since;
	int fail_status;                    /* set by a callback that fails */
	const char *fail_msg;
};

static void h1_fail(struct http_conn *c, int status, const char *msg);

static struct http_conn *conn_of(http_parser *p)
{
	return p->data;
}

static int cb_fail(struct h1_conn *h, int status, const char *msg)
{
	if (!h->fail_status) {
		h->fail_status = status;
		h->fail_msg = msg;
	}
	return -1;
}

/* Every byte of the request line and the header lines counts, with the
 * separators that the callbacks do not see. */
static int count(struct http_conn *c, size_t n)
{
	struct edge_http_request *r = c->h1->cur;

	r->header_bytes += n;
	if (r->header_bytes > c->lim->max_header_bytes)
		return cb_fail(c->h1, 431, "request header fields too large");
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = conn_of(p);
	struct h1_conn *h = c->h1;

	h->cur = http_req_new(c, 11);
	if (!h->cur)
		return cb_fail(h, 500, "out of memory");
	h->any_request = true;
	h->last_was_value = false;
	h->name_off = 0;
	h->phase_since = http_now();
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	struct edge_http_request *r = c->h1->cur;
	int rc;

	if (count(c, len))
		return -1;
	if (!r->have_url) {
		rc = http_req_hbuf_add(r, at, len, &r->url_off);
		r->have_url = true;
	} else {
		rc = http_req_hbuf_extend(r, at, len);
	}
	r->url_len += (uint32_t)len;
	return rc ? cb_fail(c->h1, 500, "out of memory") : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	struct h1_conn *h = c->h1;
	struct edge_http_request *r = h->cur;
	bool first = r->n_hdrs == 0 && !h->name_off;
	int rc;

	if (first || h->last_was_value) {
		/* ": " and CRLF around each header line. */
		if (count(c, len + 4))
			return -1;
		rc = http_req_hbuf_add(r, at, len, &h->name_off);
	} else {
		if (count(c, len))
			return -1;
		rc = http_req_hbuf_extend(r, at, len);
	}
	h->last_was_value = false;
	return rc ? cb_fail(h, 500, "out of memory") : 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	struct h1_conn *h = c->h1;
	struct edge_http_request *r = h->cur;
	uint32_t off;
	int rc;

	if (count(c, len))
		return -1;
	if (!h->last_was_value) {
		rc = http_req_hbuf_add(r, at, len, &off);
		if (!rc)
			rc = http_req_add_header(r, h->name_off, off);
	} else {
		rc = http_req_hbuf_extend(r, at, len);
	}
	h->last_was_value = true;
	return rc ? cb_fail(h, 500, "out of memory") : 0;
}

static bool value_has_token(const char *v, const char *token)
{
	size_t n = strlen(token);

	for (const char *s = v; *s;) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (strncasecmp(s, token, n) == 0 &&
		    (s[n] == 0 || s[n] == ',' || s[n] == ' ' || s[n] == '\t' ||
		     s[n] == ';'))
			return true;
		while (*s && *s != ',')
			s++;
	}
	return false;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = conn_of(p);
	struct h1_conn *h = c->h1;
	struct edge_http_request *r = h->cur;
	const char *method = http_method_str((enum http_method)p->method);
	const char *cl = NULL, *expect;
	bool te = false;

	h->name_off = 0;
	/* Method, the spaces and "HTTP/1.1\r\n" of the request line, and
	 * the empty line. */
	if (count(c, strlen(method) + 2 + 10 + 2))
		return -1;
	if (http_req_hbuf_add(r, method, strlen(method), &r->method_off))
		return cb_fail(h, 500, "out of memory");
	r->have_method = true;
	if (!r->have_url)
		return cb_fail(h, 400, "no request target");
	for (size_t i = 0; i < r->n_hdrs; i++) {
		char *name = r->hbuf + r->hdrs[i].name;
		const char *value = r->hbuf + r->hdrs[i].value;

		for (char *s = name; *s; s++)
			if (*s >= 'A' && *s <= 'Z')
				*s = (char)(*s + 32);
		if (strcmp(name, "content-length") == 0) {
			if (cl && strcmp(cl, value) != 0)
				return cb_fail(h, 400, "conflicting content-length");
			cl = value;
		} else if (strcmp(name, "transfer-encoding") == 0) {
			te = true;
		}
	}
	/* Both framings at once is how requests get smuggled. */
	if (cl && te)
		return cb_fail(h, 400, "content-length with transfer-encoding");
	if (p->http_major != 1)
		return cb_fail(h, 400, "unsupported HTTP version");
	if (p->http_minor >= 1 && !edge_http_header(r, "host"))
		return cb_fail(h, 400, "missing host header");
	r->http10 = p->http_minor == 0;
	r->keep_alive = http_should_keep_alive(p) != 0;
	r->head = p->method == HTTP_HEAD;
	http_req_split_target(r);
	if ((p->flags & F_CONTENTLENGTH) &&
	    p->content_length > c->lim->max_body_bytes)
		return cb_fail(h, 413, "request body too large");
	expect = edge_http_header(r, "expect");
	if (expect && !r->http10 && value_has_token(expect, "100-continue") &&
	    !h->q_head) {
		/* Only with nothing queued: a 100 must not overtake the
		 * answer to an earlier pipelined request. A client kept
		 * waiting sends its body anyway after a while. */
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		if (http_conn_out(c, cont, sizeof(cont) - 1))
			return cb_fail(h, 500, "out of memory");
		http_conn_mark_dirty(c);
	}
	r->in_body = true;
	h->phase_since = http_now();
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = conn_of(p);
	bool too_big;

	if (http_req_body_add(c->h1->cur, (const uint8_t *)at, len,
			      c->lim->max_body_bytes, &too_big))
		return cb_fail(c->h1, too_big ? 413 : 500,
			       too_big ? "request body too large" : "out of memory");
	return 0;
}

static void enqueue(struct h1_conn *h, struct edge_http_request *r)
{
	r->next = NULL;
	if (h->q_tail)
		h->q_tail->next = r;
	else
		h->q_head = r;
	h->q_tail = r;
	h->queued++;
}

static int on_message_complete(http_parser *p)
{
	struct http_conn *c = conn_of(p);
	struct h1_conn *h = c->h1;
	struct edge_http_request *r = h->cur;

	h->cur = NULL;
	r->in_body = false;
	enqueue(h, r);
	if (!r->keep_alive)
		h->stopped = true;
	/* Pausing returns control to h1_parse right after this message. */
	if (h->stopped || h->queued >= MAX_PIPELINE)
		http_parser_pause(p, 1);
	http_req_dispatch(r);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ------------------------------------------------------------------ */

int h1_init(struct http_conn *c)
{
	struct h1_conn *h = calloc(1, sizeof(*h));

	if (!h)
		return -1;
	http_parser_init(&h->parser, HTTP_REQUEST);
	h->parser.data = c;
	h->idle_since = c->accepted_at;
	c->h1 = h;
	return 0;
}

/* Parses p (which may be h->pending's old contents: it is not touched
 * after the copy below). Failures queue an error response. */
static void h1_parse(struct http_conn *c, const uint8_t *p, size_t len)
{
	struct h1_conn *h = c->h1;
	size_t n = http_parser_execute(&h->parser, &settings, (const char *)p, len);
	enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);

	if (err == HPE_PAUSED) {
		/* Stopped (Connection: close): the rest is dropped, and
		 * reading goes on only to notice the client leaving. */
		if (h->stopped)
			return;
		if (n >= len)
			goto paused;
		h->pending = malloc(len - n);
		if (!h->pending) {
			c->dead = true;
			return;
		}
		memcpy(h->pending, p + n, len - n);
		h->pending_len = len - n;
paused:
		h->paused = true;
		http_conn_read(c, false);
		return;
	}
	if (err != HPE_OK) {
		int status = h->fail_status;
		const char *msg = h->fail_msg;

		if (!status) {
			status = err == HPE_HEADER_OVERFLOW ? 431 : 400;
			msg = err == HPE_HEADER_OVERFLOW
				? "request header fields too large"
				: http_errno_description(err);
		}
		h1_fail(c, status, msg);
		return;
	}
	if (h->parser.upgrade) {
		/* We speak no other protocol: the request was answered as
		 * plain HTTP, and what follows cannot be parsed. */
		h->stopped = true;
		if (h->cur)
			h1_fail(c, 400, "upgrade not supported");
	}
}

int h1_feed(struct http_conn *c, const uint8_t *p, size_t len)
{
	struct h1_conn *h = c->h1;

	/* After an error, Connection: close or a drain, input is read only
	 * to notice the client closing. */
	if (h->stopped || !len)
		return 0;
	if (h->paused) {
		/* Reading is off while paused; bytes can still come with
		 * the sniffed prefix. Keep them with the rest. */
		uint8_t *np = realloc(h->pending, h->pending_len + len);

		if (!np)
			return -1;
		memcpy(np + h->pending_len, p, len);
		h->pending = np;
		h->pending_len += len;
		return 0;
	}
	h1_parse(c, p, len);
	return c->dead ? -1 : 0;
}

/* Answers the request being parsed (or a new one) with a server error
 * and stops reading requests. */
static void h1_fail(struct http_conn *c, int status, const char *msg)
{
	struct h1_conn *h = c->h1;
	struct edge_http_request *r = h->cur;

	h->cur = NULL;
	if (!r)
		r = http_req_new(c, 11);
	if (!r) {
		c->dead = true;
		return;
	}
	r->in_body = false;
	r->keep_alive = false;
	r->close_after = true;
	if (http_req_fail(r, status, msg)) {
		/* No memory for the body: the status line alone will do. */
		free(r->rbody);
		r->rbody = NULL;
		r->rbody_len = 0;
	}
	enqueue(h, r);
	h->stopped = true;
	free(h->pending);
	h->pending = NULL;
	h->pending_len = 0;
	http_conn_mark_dirty(c);
}

static int out_fmt(struct http_conn *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int out_fmt(struct http_conn *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return http_conn_out(c, buf, (size_t)n);
}

static int serialize(struct http_conn *c, struct edge_http_request *r,
		     bool last)
{
	bool no_body = r->status == 204 || r->status == 304;
	const char *h = r->rhdrs;
	int rc;

	rc = out_fmt(c, "HTTP/1.1 %d %s\r\ndate: %s\r\n", r->status,
		     edge_http_reason(r->status), http_conn_date(c));
	if (!rc && !no_body)
		rc = out_fmt(c, "content-length: %zu\r\n", r->rbody_len);
	if (!rc && last)
		rc = out_fmt(c, "connection: close\r\n");
	else if (!rc && r->http10)
		rc = out_fmt(c, "connection: keep-alive\r\n");
	for (size_t i = 0; !rc && i < r->n_rhdrs; i++) {
		size_t nl = strlen(h), vl = strlen(h + nl + 1);

		rc = http_conn_out(c, h, nl) || http_conn_out(c, ": ", 2) ||
		     http_conn_out(c, h + nl + 1, vl) || http_conn_out(c, "\r\n", 2);
		h += nl + vl + 2;
	}
	if (!rc)
		rc = http_conn_out(c, "\r\n", 2);
	if (!rc && !no_body && !r->head && r->rbody_len)
		rc = http_conn_out(c, r->rbody, r->rbody_len);
	return rc;
}

void h1_fill(struct http_conn *c)
{
	struct h1_conn *h = c->h1;

	if (c->closing)
		return;
again:
	while (h->q_head && h->q_head->ready && c->out_len < OUT_HIGH) {
		struct edge_http_request *r = h->q_head;
		bool last;

		h->q_head = r->next;
		if (!h->q_head)
			h->q_tail = NULL;
		h->queued--;
		r->next = NULL;
		last = r->close_after || !r->keep_alive ||
		       (h->stopped && !h->q_head && !h->paused);
		if (serialize(c, r, last)) {
			c->dead = true;
			last = true;
		}
		r->sent = true;
		http_req_detach(r);
		if (last) {
			c->closing = true;
			h->stopped = true;
			while (h->q_head) {
				r = h->q_head;
				h->q_head = r->next;
				http_req_detach(r);
			}
			h->q_tail = NULL;
			h->queued = 0;
			return;
		}
		if (!h->q_head && !h->cur)
			h->idle_since = http_now();
	}
	/* Room in the queue again: parse what was held back. */
	if (h->paused && !h->stopped && h->queued < MAX_PIPELINE) {
		uint8_t *p = h->pending;
		size_t len = h->pending_len;

		h->pending = NULL;
		h->pending_len = 0;
		h->paused = false;
		http_parser_pause(&h->parser, 0);
		if (len)
			h1_parse(c, p, len);
		free(p);
		if (c->dead)
			return;
		if (!h->paused && !h->stopped)
			http_conn_read(c, true);
		goto again;
	}
	/* A drain or Connection: close with nothing left to answer. */
	if (h->stopped && !h->q_head && !c->closing) {
		h->paused = false;
		c->closing = true;
	}
}

void h1_deliver(struct http_conn *c, struct edge_http_request *r)
{
	/* r->ready is set; h1_fill writes it when its turn comes. */
}

long long h1_deadline(struct http_conn *c)
{
	struct h1_conn *h = c->h1;
	const struct http_limits *lim = c->lim;

	if (c->closing)
		return 0;
	if (h->cur)
		return h->phase_since +
		       (h->cur->in_body ? lim->body_timeout_ms : lim->header_timeout_ms) *
			       1000000LL;
	if (h->q_head || h->paused || h->stopped)
		return 0; /* waiting for a handler, which has no timeout here */
	/* A connection that never sent a byte gets the header timeout. */
	return h->idle_since + (h->any_request ? lim->idle_timeout_ms
					       : lim->header_timeout_ms) * 1000000LL;
}

void h1_timeout(struct http_conn *c, long long now)
{
	struct h1_conn *h = c->h1;
	long long d = h1_deadline(c);

	if (!d || now < d)
		return;
	if (h->cur) {
		bool body = h->cur->in_body;

		h1_fail(c, 408, body ? "request body timeout"
				     : "request header timeout");
	} else {
		h->stopped = true;
		c->closing = true;
	}
}

void h1_drain(struct http_conn *c)
{
	struct h1_conn *h = c->h1;

	h->stopped = true;
	h->paused = false;
	free(h->pending);
	h->pending = NULL;
	h->pending_len = 0;
	if (h->cur) {
		/* Half received: never given to a handler, nothing to wait
		 * for. */
		http_req_detach(h->cur);
		h->cur = NULL;
	}
	if (!h->q_head)
		c->closing = true;
}

bool h1_idle(const struct http_conn *c)
{
	return !c->h1->cur && !c->h1->q_head;
}

void h1_close(struct http_conn *c)
{
	struct h1_conn *h = c->h1;

	if (!h)
		return;
	while (h->q_head) {
		struct edge_http_request *r = h->q_head;

		h->q_head = r->next;
		http_req_detach(r);
	}
	if (h->cur)
		http_req_detach(h->cur);
	free(h->pending);
	free(h);
	c->h1 = NULL;
}
