/*
 * gateway.c - HTTP request → gRPC call → HTTP response. See gateway.h.
 */
#include "gateway.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "grpc/health/v1/health.rpc.h"
#include "services/common/clientaddr.h"
#include "httpstatus.h"
#include "metrics.h"
#include "ratelimit.h"
#include "router.h"
#include "rpc/arena.h"
#include "rpc/log.h"
#include "rpc/loop.h"
#include "rpc/metadata.h"
#include "rpc/timeout.h"
#include "transcode.h"

#define COMPONENT "edge"
#define MAX_HEADERS 16
#define READY_TIMEOUT_MS 1000
/* "acct:" + a token's sub (at most 79 bytes), or "login:"/"anon:" + an
 * address: the two limits of an address are separate buckets, or a
 * shopper's browsing would spend the budget of its logins. */
#define RL_KEY_MAX 96

struct edge_gateway {
	edge_gateway_config cfg;
	edge_backend *backends;
	size_t n_backends;
	edge_router *router;
	edge_metrics *metrics;
	const rpc_service_desc **services;  /* the metrics' (owned) */
	edge_http_server *server;         /* for the connection gauge */
	pthread_mutex_t mu;
	pthread_cond_t idle;
	long in_flight;
};

/* What every response of one request shares. */
typedef struct reply_ctx {
	edge_gateway *g;
	edge_http_request *req;
	char request_id[65];
	const char *cors_origin;    /* the allowed Origin to echo, or NULL */
	char method[16];
	char path[160];             /* for the log line, cut short */
	char client[64];            /* the client's address (clientaddr.h) */
	long long start_ns;
	long long deadline_ns;      /* of the backend call (rpc_now_ns clock) */
	int route;                  /* metrics label, edge_metrics_route */
} reply_ctx;

typedef struct call {
	reply_ctx rc;
	const rpc_http_route *route;
	/* The request message and all it holds: one arena, dropped whole. */
	rpc_arena *arena;
	ProtobufCAllocator alloc;
	ProtobufCMessage *msg;
	rpc_metadata md;
	rpc_metadata trailers;
	/* The bearer token (in the request's Authorization header, which
	 * outlives the call) still to be checked after a rate limit. */
	const char *token;
	size_t token_len;
	bool login;                 /* Login/Register: limited per address */
} call;

/* ---- responses ---------------------------------------------------------------- */

static void in_flight_add(edge_gateway *g, long d)
{
	pthread_mutex_lock(&g->mu);
	g->in_flight += d;
	if (g->in_flight == 0)
		pthread_cond_broadcast(&g->idle);
	pthread_mutex_unlock(&g->mu);
}

/* One line a request, with the fields a log collector indexes; the
 * request's metrics with it. */
static void access_log(const reply_ctx *rc, int status, size_t bytes)
{
	long long took = rpc_now_ns() - rc->start_ns;
	const char *ua = edge_http_header(rc->req, "user-agent");
	char agent[128];

	edge_metrics_request_done(rc->g->metrics, rc->route, status, took);
	if (!rpc_log_enabled(RPC_LOG_INFO))
		return;
	snprintf(agent, sizeof(agent), "%s", ua ? ua : "");
	{
		rpc_log_field f[] = {
			{ "request_id", rc->request_id, 0 },
			{ "method", rc->method, 0 },
			{ "path", rc->path, 0 },
			{ "status", NULL, status },
			{ "duration_us", NULL, took / 1000 },
			{ "bytes", NULL, (long long)bytes },
			{ "protocol", edge_http_version(rc->req) == 20 ? "HTTP/2" : "HTTP/1.1", 0 },
			{ "scheme", edge_http_tls(rc->req) ? "https" : "http", 0 },
			{ "peer", edge_http_peer(rc->req), 0 },
			{ "client", rc->client, 0 },
			{ "user_agent", agent, 0 },
		};

		rpc_log_fields(RPC_LOG_INFO, "access", f, sizeof(f) / sizeof(f[0]),
			       "%s %s %d", rc->method, rc->path, status);
	}
}

/* Sends the response with the headers every response carries, plus
 * `extra` (may be NULL), and logs the request. */
static void respond(reply_ctx *rc, int status, const char *content_type,
		    const edge_http_header_kv *extra, size_t n_extra,
		    const char *body, size_t len)
{
	edge_http_header_kv h[MAX_HEADERS];
	size_t n = 0;

	if (content_type)
		h[n++] = (edge_http_header_kv){ "content-type", content_type };
	h[n++] = (edge_http_header_kv){ "x-request-id", rc->request_id };
	h[n++] = (edge_http_header_kv){ "x-content-type-options", "nosniff" };
	h[n++] = (edge_http_header_kv){ "cache-control", "no-store" };
	h[n++] = (edge_http_header_kv){ "content-security-policy",
					"default-src 'none'; frame-ancestors 'none'" };
	h[n++] = (edge_http_header_kv){ "referrer-policy", "no-referrer" };
	if (rc->cors_origin) {
		h[n++] = (edge_http_header_kv){ "access-control-allow-origin",
						rc->cors_origin };
		h[n++] = (edge_http_header_kv){ "access-control-expose-headers",
						"x-request-id, retry-after, www-authenticate" };
		h[n++] = (edge_http_header_kv){ "vary", "Origin" };
	}
	for (size_t i = 0; i < n_extra && n < MAX_HEADERS; i++)
		h[n++] = extra[i];
	access_log(rc, status, len);
	edge_http_respond(rc->req, status, h, n, body, len);
}

/* A JSON error response for a gRPC code. */
static void respond_error(reply_ctx *rc, int code, const char *message,
			  const edge_http_header_kv *extra, size_t n_extra)
{
	size_t len = 0;
	char *body = edge_error_body(code, message, &len);

	if (body == NULL) {
		respond(rc, 500, NULL, extra, n_extra, NULL, 0);
		return;
	}
	respond(rc, edge_http_status(code), "application/json", extra, n_extra,
		body, len);
	free(body);
}

/* ---- request pieces ------------------------------------------------------------ */

/* "127.0.0.1" from "127.0.0.1:50342", "::1" from "[::1]:50342": the port
 * changes with every connection, the address is the client. */
static void peer_address(const char *peer, char *out, size_t cap)
{
	const char *end = strrchr(peer, ':');
	size_t n = end ? (size_t)(end - peer) : strlen(peer);

	if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
		peer++;
		n -= 2;
	}
	snprintf(out, cap, "%.*s", (int)n, peer);
}

/* The client's X-Request-Id when it is short and plain, else a new one:
 * it goes into logs and metadata, so nothing else gets through. */
static void request_id(edge_http_request *req, char out[65])
{
	const char *given = edge_http_header(req, "x-request-id");
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[16];
	size_t n;

	if (given != NULL && (n = strlen(given)) > 0 && n <= 64 &&
	    strspn(given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "0123456789-_.") == n) {
		memcpy(out, given, n + 1);
		return;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++) {
		out[2 * i] = hex[rnd[i] >> 4];
		out[2 * i + 1] = hex[rnd[i] & 15];
	}
	out[32] = '\0';
}

static const char *allowed_origin(const edge_gateway *g, const char *origin)
{
	if (origin == NULL)
		return NULL;
	for (size_t i = 0; i < g->cfg.n_cors_origins; i++) {
		if (strcmp(g->cfg.cors_origins[i], "*") == 0)
			return "*";
		if (strcmp(g->cfg.cors_origins[i], origin) == 0)
			return g->cfg.cors_origins[i];
	}
	return NULL;
}

/* Applies ?a=1&b.c=x to msg. 0, or -1 with the reason in err. */
static int apply_query(ProtobufCMessage *msg, ProtobufCAllocator *alloc,
		       const char *q, size_t len, char *err, size_t errlen)
{
	const char *p = q, *end = q + len;
	char *key = malloc(len + 1), *val = malloc(len + 1);
	int rc = -1;

	if (key == NULL || val == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		long klen, vlen;
		tc_error te;

		if (stop > p) {
			klen = edge_url_decode(p, (size_t)((eq ? eq : stop) - p), key, true);
			vlen = eq ? edge_url_decode(eq + 1, (size_t)(stop - eq - 1), val, true) : 0;
			if (!eq)
				val[0] = '\0';
			if (klen < 0 || vlen < 0) {
				snprintf(err, errlen, "query: bad percent-encoding");
				goto out;
			}
			if (klen > 0 &&
			    tc_merge_field_from_string(msg, key, val, (size_t)vlen,
						       alloc, NULL, &te) != 0) {
				snprintf(err, errlen, "query parameter %s", te.message);
				goto out;
			}
		}
		p = stop + 1;
	}
	rc = 0;
out:
	free(key);
	free(val);
	return rc;
}

/* The request message from the body (per the route's `body`), the query
 * and the path variables, all allocated from `alloc` (the call's arena:
 * nothing to free on failure). 0, or the gRPC code of the failure (with
 * the HTTP status implied) and its reason in err. */
static int build_request(const rpc_http_route *route, edge_http_request *req,
			 const edge_match *m, ProtobufCAllocator *alloc,
			 ProtobufCMessage **out, char *err, size_t errlen)
{
	const ProtobufCMessageDescriptor *in = route->method->input;
	const uint8_t *body;
	size_t body_len, qlen;
	const char *q;
	ProtobufCMessage *msg = NULL;
	tc_error te;

	*out = NULL;
	body = edge_http_body(req, &body_len);
	if (route->body[0] && body_len > 0) {
		const char *ct = edge_http_header(req, "content-type");

		if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
		    (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
			snprintf(err, errlen, "the body must be JSON "
				 "(Content-Type: application/json)");
			return -415;
		}
	}
	if (strcmp(route->body, "*") == 0) {
		if (tc_from_json(in, body_len ? (const char *)body : "{}",
				 body_len ? body_len : 2, alloc, NULL, &msg, &te) != 0)
			goto bad_json;
	} else {
		msg = alloc->alloc(alloc->allocator_data, in->sizeof_message);
		if (msg == NULL)
			goto nomem;
		protobuf_c_message_init(in, msg);
		if (route->body[0]) {
			const ProtobufCFieldDescriptor *f =
				protobuf_c_message_descriptor_get_field_by_name(in, route->body);
			ProtobufCMessage *sub = NULL;

			/* The codegen checked the field exists; the edge
			 * supports message fields as bodies. */
			if (f == NULL || f->type != PROTOBUF_C_TYPE_MESSAGE ||
			    f->label == PROTOBUF_C_LABEL_REPEATED) {
				snprintf(err, errlen, "route body %s is not a message field",
					 route->body);
				return RPC_INTERNAL;
			}
			if (tc_from_json(f->descriptor,
					 body_len ? (const char *)body : "{}",
					 body_len ? body_len : 2, alloc, NULL, &sub,
					 &te) != 0)
				goto bad_json;
			*(ProtobufCMessage **)((char *)msg + f->offset) = sub;
		}
		q = edge_http_query(req, &qlen);
		if (q != NULL && qlen > 0 &&
		    apply_query(msg, alloc, q, qlen, err, errlen) != 0)
			return RPC_INVALID_ARGUMENT;
	}
	/* Path variables last: the URL names the resource, whatever the body
	 * or the query say. */
	for (size_t i = 0; i < m->n_vars; i++) {
		if (tc_merge_field_from_string(msg, m->vars[i].field, m->vars[i].value,
					       strlen(m->vars[i].value), alloc,
					       NULL, &te) != 0) {
			snprintf(err, errlen, "path: %s", te.message);
			return te.code == TC_ERR_NOMEM ? RPC_RESOURCE_EXHAUSTED :
							 RPC_INVALID_ARGUMENT;
		}
	}
	*out = msg;
	return 0;
bad_json:
	if (te.code == TC_ERR_NOMEM)
		goto nomem;
	snprintf(err, errlen, "%s", te.message);
	return RPC_INVALID_ARGUMENT;
nomem:
	snprintf(err, errlen, "out of memory");
	return RPC_RESOURCE_EXHAUSTED;
}

/* What a client may read of an error: the services' own messages for the
 * codes that describe the request; nothing of the edge's plumbing
 * (addresses, connection errors) for the others. */
static const char *public_message(int code, const char *message)
{
	switch (code) {
	case RPC_UNAVAILABLE:
		return "the service is unavailable; try again";
	case RPC_DEADLINE_EXCEEDED:
		return "the request took too long";
	case RPC_INTERNAL:
	case RPC_UNKNOWN:
	case RPC_DATA_LOSS:
		return "internal error";
	case RPC_CANCELLED:
		return "cancelled";
	default:
		return message ? message : "";
	}
}

static edge_backend *backend_of(edge_gateway *g, const rpc_method_desc *m)
{
	for (size_t i = 0; i < g->n_backends; i++) {
		const rpc_service_desc *s = g->backends[i].service;

		if (m >= s->methods && m < s->methods + s->n_methods)
			return &g->backends[i];
	}
	return NULL;
}

/* ---- the call ----------------------------------------------------------------------- */

static void call_free(call *c)
{
	rpc_arena_free(c->arena);
	rpc_metadata_dispose(&c->md);
	rpc_metadata_dispose(&c->trailers);
	free(c);
}

/* The reply, or its response_body field, as JSON. */
static char *reply_json(const rpc_http_route *route, ProtobufCMessage *resp,
			size_t *len)
{
	const ProtobufCMessage *show = resp;
	char *text = NULL;
	tc_error te;

	if (route->response_body[0]) {
		const ProtobufCFieldDescriptor *f =
			protobuf_c_message_descriptor_get_field_by_name(
				resp->descriptor, route->response_body);

		if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    f->label != PROTOBUF_C_LABEL_REPEATED) {
			show = *(ProtobufCMessage **)((char *)resp + f->offset);
			if (show == NULL) {
				text = strdup("{}");
				*len = 2;
				return text;
			}
		}
	}
	if (tc_to_json(show, NULL, &text, len, &te) != 0) {
		rpc_log(RPC_LOG_ERROR, COMPONENT, "%s: reply has no JSON form: %s",
			route->method->path, te.message);
		return NULL;
	}
	return text;
}

static void call_done(void *user, rpc_code code, const char *message,
		      ProtobufCMessage *resp)
{
	call *c = user;
	edge_gateway *g = c->rc.g;
	edge_backend *be = backend_of(g, c->route->method);

	if (be)
		edge_metrics_upstream(g->metrics, be->service, code);
	if (code == RPC_OK) {
		size_t len = 0;
		char *json = reply_json(c->route, resp, &len);

		if (json)
			respond(&c->rc, 200, "application/json", NULL, 0, json, len);
		else
			respond_error(&c->rc, RPC_INTERNAL, "internal error", NULL, 0);
		free(json);
	} else {
		edge_http_header_kv extra[2];
		size_t n = 0;
		char retry[24];

		if (code == RPC_UNAUTHENTICATED)
			extra[n++] = (edge_http_header_kv){ "www-authenticate", "Bearer" };
		if (code == RPC_RESOURCE_EXHAUSTED) {
			const rpc_md_entry *e = rpc_metadata_get(&c->trailers, "retry-after");

			/* Whole seconds only: the header is the client's. */
			if (e && e->value_len > 0 && e->value_len < sizeof(retry) &&
			    strspn((const char *)e->value, "0123456789") == e->value_len) {
				memcpy(retry, e->value, e->value_len);
				retry[e->value_len] = '\0';
			} else {
				strcpy(retry, "1");
			}
			extra[n++] = (edge_http_header_kv){ "retry-after", retry };
		}
		if (code == RPC_UNAVAILABLE || code == RPC_INTERNAL) {
			rpc_log_set_request_id(c->rc.request_id);
			rpc_log(RPC_LOG_WARN, COMPONENT, "%s: %s: %s",
				c->route->method->path, rpc_code_name(code),
				message ? message : "");
			rpc_log_set_request_id(NULL);
		}
		respond_error(&c->rc, code, public_message(code, message), extra, n);
	}
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	call_free(c);
	in_flight_add(g, -1);
}

/* Starts the prepared call; c is the call's from here on. */
static void send_call(call *c)
{
	edge_gateway *g = c->rc.g;
	edge_backend *be = backend_of(g, c->route->method);
	rpc_call_opts opts = { 0 };

	rpc_channel *ch = NULL;

	if (be != NULL) {
		size_t i = edge_http_loop_index(c->rc.req);

		ch = be->loop_channels && i < be->n_loop_channels ?
			be->loop_channels[i] : be->channel;
	}
	opts.deadline_ns = c->rc.deadline_ns;
	opts.metadata = &c->md;
	opts.trailers_out = &c->trailers;
	if (ch == NULL || rpc_channel_call_async(ch, c->route->method,
						 &opts, c->msg, call_done, c) != 0) {
		reply_ctx rc = c->rc;

		call_free(c);
		respond_error(&rc, be ? RPC_UNAVAILABLE : RPC_INTERNAL,
			      be ? "" : "internal error", NULL, 0);
		in_flight_add(g, -1);
	}
}

/* A 401 of the edge's own: the client must (re)authenticate. */
static void respond_unauthenticated(reply_ctx *rc, const char *message)
{
	edge_http_header_kv h[] = { { "www-authenticate", "Bearer" } };

	respond_error(rc, RPC_UNAUTHENTICATED, message, h, 1);
}

/* ---- rate limits ------------------------------------------------------------------- */

/* The routes limited per client address whoever calls them: the ones that
 * cost a password hash and are what credential stuffing hammers. */
static bool is_login_route(const rpc_http_route *route)
{
	return strcmp(route->method->path, "/estore.auth.v1.AuthService/Login") == 0 ||
	       strcmp(route->method->path, "/estore.auth.v1.AuthService/Register") == 0;
}


static void auth_done(void *user, rpc_code code, const char *reason,
		      const char *subject);

/* The rate limit's verdict (ratelimit.h); may run on a rate-limit
 * worker. Allowed: on to the token check still owed, or the call. */
static void limit_done(void *user, bool allowed, long long retry_after_ms)
{
	call *c = user;
	edge_gateway *g = c->rc.g;
	reply_ctx rc;
	char retry[24];

	if (allowed) {
		if (c->token) {
			const char *t = c->token;

			c->token = NULL;
			edge_auth_check(g->cfg.auth, t, c->token_len, auth_done, c);
			return;
		}
		send_call(c);
		return;
	}
	rc = c->rc;
	call_free(c);
	edge_metrics_rate_limited(g->metrics);
	snprintf(retry, sizeof(retry), "%lld", edge_rl_retry_after_s(retry_after_ms));
	{
		edge_http_header_kv h[] = { { "retry-after", retry } };

		respond_error(&rc, RPC_RESOURCE_EXHAUSTED, "rate limit exceeded", h, 1);
	}
	in_flight_add(g, -1);
}

/* Takes a token from `key`'s bucket (burst = the per-minute rate), then
 * limit_done; no limiter or a rate of 0 goes straight on. */
static void limit(call *c, const char *key, long long per_min)
{
	edge_gateway *g = c->rc.g;

	if (g->cfg.ratelimit == NULL || per_min <= 0) {
		limit_done(c, true, 0);
		return;
	}
	edge_rl_take(g->cfg.ratelimit, key, per_min, per_min, limit_done, c);
}

/* The edge's verdict on the token (auth.h); may run on the token
 * channel's thread. */
static void auth_done(void *user, rpc_code code, const char *reason,
		      const char *subject)
{
	call *c = user;
	edge_gateway *g = c->rc.g;
	reply_ctx rc;

	if (code == RPC_OK) {
		/* Login and Register were limited per address already. */
		if (!c->login && subject != NULL && subject[0] != '\0') {
			char key[RL_KEY_MAX];

			snprintf(key, sizeof(key), "acct:%s", subject);
			limit(c, key, g->cfg.rate_account_per_min);
			return;
		}
		send_call(c);
		return;
	}
	rc = c->rc;
	call_free(c);
	if (code == RPC_UNAUTHENTICATED) {
		respond_unauthenticated(&rc, reason);
	} else {
		rpc_log_set_request_id(rc.request_id);
		rpc_log(RPC_LOG_WARN, COMPONENT, "token not checked: %s",
			reason ? reason : "");
		rpc_log_set_request_id(NULL);
		respond_error(&rc, RPC_UNAVAILABLE, public_message(RPC_UNAVAILABLE, NULL),
			      NULL, 0);
	}
	in_flight_add(g, -1);
}

/* The token of "Authorization: Bearer <token>" (scheme case-insensitive,
 * RFC 7235 §2.1), or NULL when the header has another form. */
static const char *bearer_token(const char *header, size_t *len)
{
	const char *t;

	if (strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	t = header + 7;
	while (*t == ' ')
		t++;
	*len = strlen(t);
	while (*len > 0 && t[*len - 1] == ' ')
		(*len)--;
	/* token68 (RFC 7235 §2.1): no spaces inside. */
	if (*len == 0 || memchr(t, ' ', *len) != NULL)
		return NULL;
	return t;
}

/* The backend call's deadline: EDGE_REQUEST_TIMEOUT_MS from the request's
 * arrival, or sooner when the client asks with a gRPC-style
 * `grpc-timeout` header (as gRPC-Web and grpc-gateway clients send it).
 * 0, or -1 when the header is malformed. */
static int call_deadline(const edge_gateway *g, reply_ctx *rc)
{
	const char *asked = edge_http_header(rc->req, "grpc-timeout");
	long long limit = g->cfg.request_timeout_ms * 1000000LL;
	int64_t ns;

	if (asked != NULL) {
		if (rpc_timeout_parse(asked, strlen(asked), &ns) != 0)
			return -1;
		if (ns < limit)
			limit = ns;
	}
	rc->deadline_ns = rc->start_ns + limit;
	return 0;
}

static void start_call(edge_gateway *g, reply_ctx *rc, const edge_match *m)
{
	const rpc_http_route *route = m->route;
	const char *auth = edge_http_header(rc->req, "authorization");
	bool public = route->method->access == RPC_ACCESS_PUBLIC;
	const char *token = NULL;
	size_t token_len = 0;
	char err[600];
	call *c;
	int code;

	/* Refused before anything else of the request is looked at. */
	if (g->cfg.auth) {
		if (auth == NULL && !public) {
			respond_unauthenticated(rc, "an access token is required "
						"(Authorization: Bearer)");
			return;
		}
		if (auth && (token = bearer_token(auth, &token_len)) == NULL) {
			respond_unauthenticated(rc, "the Authorization header must "
						"be \"Bearer <token>\"");
			return;
		}
	}
	if (call_deadline(g, rc) != 0) {
		respond_error(rc, RPC_INVALID_ARGUMENT, "grpc-timeout: expected "
			      "1 to 8 digits and a unit (H, M, S, m, u, n), e.g. 500m",
			      NULL, 0);
		return;
	}
	c = calloc(1, sizeof(*c));
	/* Most requests fit the first block: one allocation for the
	 * message, its strings and submessages. */
	if (c == NULL || (c->arena = rpc_arena_new(1024)) == NULL) {
		free(c);
		respond_error(rc, RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	rpc_arena_pb_allocator(c->arena, &c->alloc);
	c->rc = *rc;
	c->route = route;
	rpc_metadata_init(&c->md);
	rpc_metadata_init(&c->trailers);
	code = build_request(route, rc->req, m, &c->alloc, &c->msg, err, sizeof(err));
	if (code == -415) {
		call_free(c);
		size_t len = 0;
		char *body = edge_error_body(RPC_INVALID_ARGUMENT, err, &len);

		respond(rc, 415, "application/json", NULL, 0, body, body ? len : 0);
		free(body);
		return;
	}
	if (code != 0) {
		call_free(c);
		respond_error(rc, code, code == RPC_INTERNAL ? "internal error" : err,
			      NULL, 0);
		return;
	}
	/* The services authorize for themselves: they get the token as the
	 * client sent it, and the request id for their logs. */
	if ((auth && rpc_metadata_add(&c->md, "authorization", auth,
				      strlen(auth)) != 0) ||
	    rpc_metadata_add(&c->md, "x-request-id", rc->request_id,
			     strlen(rc->request_id)) != 0 ||
	    rpc_metadata_add(&c->md, "x-forwarded-for", rc->client,
			     strlen(rc->client)) != 0) {
		call_free(c);
		respond_error(rc, RPC_INVALID_ARGUMENT,
			      "the Authorization header is not valid metadata", NULL, 0);
		return;
	}
	in_flight_add(g, 1);
	/* Asynchronous from here: the call starts (or the 401/429/503 is
	 * sent) from limit_done or auth_done, on this thread, a rate-limit
	 * worker or the token channel's thread. Login/Register: the address
	 * limit first, then a presented token's check. A token elsewhere:
	 * its check, then the account's limit (auth_done). No token: the
	 * address's anonymous limit. */
	c->login = is_login_route(route);
	if (c->login || token == NULL) {
		char key[RL_KEY_MAX];

		snprintf(key, sizeof(key), "%s:%s",
			 c->login ? "login" : "anon", rc->client);
		c->token = token;
		c->token_len = token_len;
		limit(c, key, c->login ? g->cfg.rate_login_per_min :
					 g->cfg.rate_anon_per_min);
		return;
	}
	edge_auth_check(g->cfg.auth, token, token_len, auth_done, c);
}

/* ---- /readyz ----------------------------------------------------------------------- */

typedef struct ready_check {
	reply_ctx rc;
	pthread_mutex_t mu;
	size_t pending;
	bool all_serving;
	char detail[512];
} ready_check;

typedef struct ready_one {
	ready_check *rc;
	const char *name;
} ready_one;

static void ready_finish(ready_check *rk)
{
	edge_gateway *g = rk->rc.g;

	if (rk->all_serving) {
		static const char ok[] = "{\"status\":\"ready\"}";

		respond(&rk->rc, 200, "application/json", NULL, 0, ok, sizeof(ok) - 1);
	} else {
		char msg[600];

		snprintf(msg, sizeof(msg), "not ready: %s", rk->detail);
		respond_error(&rk->rc, RPC_UNAVAILABLE, msg, NULL, 0);
	}
	pthread_mutex_destroy(&rk->mu);
	free(rk);
	in_flight_add(g, -1);
}

/* One answer in; the last one sends the response. */
static void ready_release(ready_check *rk, bool serving, const char *name)
{
	bool last;

	pthread_mutex_lock(&rk->mu);
	if (!serving) {
		size_t at = strlen(rk->detail);

		rk->all_serving = false;
		snprintf(rk->detail + at, sizeof(rk->detail) - at, "%s%s",
			 at ? ", " : "", name);
	}
	last = --rk->pending == 0;
	pthread_mutex_unlock(&rk->mu);
	if (last)
		ready_finish(rk);
}

static void ready_done(void *user, rpc_code code, const char *message,
		       ProtobufCMessage *resp)
{
	ready_one *one = user;
	ready_check *rk = one->rc;
	const char *name = one->name;
	bool serving = code == RPC_OK && resp &&
		((Grpc__Health__V1__HealthCheckResponse *)resp)->status ==
		GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;

	(void)message;
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	free(one);
	ready_release(rk, serving, name);
}

static void readyz(edge_gateway *g, reply_ctx *rc)
{
	static const Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	ready_check *rk = calloc(1, sizeof(*rk));
	rpc_call_opts opts = { .timeout_ms = READY_TIMEOUT_MS };

	if (rk == NULL) {
		respond_error(rc, RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	rk->rc = *rc;
	rk->all_serving = true;
	pthread_mutex_init(&rk->mu, NULL);
	/* One count more than calls, released after the loop: no completion
	 * can finish the check while calls are still being started. */
	rk->pending = g->n_backends + 1;
	in_flight_add(g, 1);
	for (size_t i = 0; i < g->n_backends; i++) {
		const char *name = g->backends[i].service->name;
		ready_one *one = malloc(sizeof(*one));

		if (one == NULL) {
			ready_release(rk, false, name);
			continue;
		}
		one->rc = rk;
		one->name = name;
		if (rpc_channel_call_async(g->backends[i].channel,
					   &grpc_health_v1_Health_methods[0], &opts,
					   &req.base, ready_done, one) != 0) {
			free(one);
			ready_release(rk, false, name);
		}
	}
	ready_release(rk, true, "edge");
}

/* ---- /metrics ---------------------------------------------------------------------- */

static void serve_metrics(edge_gateway *g, reply_ctx *rc)
{
	size_t len = 0;
	char *text;

	rc->route = edge_metrics_own_route(g->metrics, EDGE_ROUTE_METRICS);
	text = edge_metrics_render(g->metrics,
				   g->server ? edge_http_server_open_connections(g->server) : -1,
				   &len);
	if (text == NULL) {
		respond_error(rc, RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	respond(rc, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, 0, text, len);
	free(text);
}

/* ---- the handler ---------------------------------------------------------------------- */

void edge_gateway_handle(edge_http_request *req, void *gateway)
{
	edge_gateway *g = gateway;
	reply_ctx rc = { .g = g, .req = req, .start_ns = rpc_now_ns() };
	const char *method = edge_http_method(req);
	size_t plen;
	const char *path = edge_http_path(req, &plen);
	char allow[128];
	edge_match m;

	edge_metrics_request_started(g->metrics);
	rc.route = edge_metrics_own_route(g->metrics, EDGE_ROUTE_UNROUTED);
	request_id(req, rc.request_id);
	{
		char peer[64];

		peer_address(edge_http_peer(req), peer, sizeof(peer));
		client_address(g->cfg.trusted_proxies, peer,
				    edge_http_header(req, "x-forwarded-for"),
				    rc.client, sizeof(rc.client));
	}
	rc.cors_origin = allowed_origin(g, edge_http_header(req, "origin"));
	snprintf(rc.method, sizeof(rc.method), "%s", method);
	snprintf(rc.path, sizeof(rc.path), "%.*s", (int)(plen < 150 ? plen : 150), path);

	/* CORS preflight: answered here, never routed. */
	if (strcmp(method, "OPTIONS") == 0 &&
	    edge_http_header(req, "access-control-request-method")) {
		edge_http_header_kv h[] = {
			{ "access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE" },
			{ "access-control-allow-headers", "authorization, content-type, x-request-id" },
			{ "access-control-max-age", "600" },
		};

		rc.route = edge_metrics_own_route(g->metrics, EDGE_ROUTE_PREFLIGHT);
		respond(&rc, rc.cors_origin ? 204 : 403, NULL,
			rc.cors_origin ? h : NULL, rc.cors_origin ? 3 : 0, NULL, 0);
		return;
	}
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		if (plen == 8 && memcmp(path, "/healthz", 8) == 0) {
			static const char ok[] = "{\"status\":\"ok\"}";

			rc.route = edge_metrics_own_route(g->metrics, EDGE_ROUTE_HEALTHZ);
			respond(&rc, 200, "application/json", NULL, 0, ok, sizeof(ok) - 1);
			return;
		}
		if (plen == 7 && memcmp(path, "/readyz", 7) == 0) {
			rc.route = edge_metrics_own_route(g->metrics, EDGE_ROUTE_READYZ);
			readyz(g, &rc);
			return;
		}
		if (plen == 13 && memcmp(path, "/openapi.json", 13) == 0 &&
		    g->cfg.openapi_json != NULL) {
			rc.route = edge_metrics_own_route(g->metrics, EDGE_ROUTE_OPENAPI);
			respond(&rc, 200, "application/json", NULL, 0,
				g->cfg.openapi_json, g->cfg.openapi_len);
			return;
		}
	}
	if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
	    plen == 8 && memcmp(path, "/metrics", 8) == 0) {
		serve_metrics(g, &rc);
		return;
	}
	switch (edge_router_match(g->router, strcmp(method, "HEAD") == 0 ? "GET" : method,
				  path, plen, &m, allow, sizeof(allow))) {
	case EDGE_ROUTE_OK:
		break;
	case EDGE_ROUTE_METHOD_NOT_ALLOWED: {
		edge_http_header_kv h[] = { { "allow", allow } };
		size_t len = 0;
		char *body = edge_error_body(RPC_UNIMPLEMENTED,
					     "method not allowed on this path", &len);

		respond(&rc, 405, "application/json", h, 1, body, body ? len : 0);
		free(body);
		return;
	}
	case EDGE_ROUTE_BAD_PATH:
		respond_error(&rc, RPC_INVALID_ARGUMENT, "bad percent-encoding in the path",
			      NULL, 0);
		return;
	case EDGE_ROUTE_NO_MEMORY:
		respond_error(&rc, RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	default:
		respond_error(&rc, RPC_NOT_FOUND, "no such route", NULL, 0);
		return;
	}
	rc.route = edge_metrics_route(g->metrics, m.route);
	start_call(g, &rc, &m);
	edge_match_dispose(&m);
}

/* ---- life cycle --------------------------------------------------------------------------- */

edge_gateway *edge_gateway_new(const edge_gateway_config *cfg,
			       const edge_backend *backends, size_t n_backends,
			       char *err, size_t errlen)
{
	edge_gateway *g = calloc(1, sizeof(*g));

	if (g == NULL)
		goto nomem;
	g->cfg = *cfg;
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->idle, NULL);
	g->backends = calloc(n_backends ? n_backends : 1, sizeof(*g->backends));
	/* The metrics keep the service list: their labels are its routes. */
	g->services = calloc(n_backends ? n_backends : 1, sizeof(*g->services));
	if (g->backends == NULL || g->services == NULL)
		goto nomem;
	memcpy(g->backends, backends, n_backends * sizeof(*backends));
	g->n_backends = n_backends;
	for (size_t i = 0; i < n_backends; i++)
		g->services[i] = backends[i].service;
	g->router = edge_router_new(g->services, n_backends, err, errlen);
	if (g->router == NULL) {
		edge_gateway_free(g);
		return NULL;
	}
	g->metrics = edge_metrics_new(g->services, n_backends);
	if (g->metrics == NULL)
		goto nomem;
	return g;
nomem:
	snprintf(err, errlen, "out of memory");
	edge_gateway_free(g);
	return NULL;
}

void edge_gateway_free(edge_gateway *g)
{
	if (g == NULL)
		return;
	pthread_mutex_lock(&g->mu);
	while (g->in_flight > 0)
		pthread_cond_wait(&g->idle, &g->mu);
	pthread_mutex_unlock(&g->mu);
	edge_router_free(g->router);
	edge_metrics_free(g->metrics);
	free(g->services);
	free(g->backends);
	pthread_cond_destroy(&g->idle);
	pthread_mutex_destroy(&g->mu);
	free(g);
}

void edge_gateway_set_server(edge_gateway *g, edge_http_server *server)
{
	g->server = server;
}
