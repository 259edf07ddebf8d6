/*
 * gateway.h - the edge's request pipeline: one HTTP request in (http.h),
 * one gRPC call to the service whose RPC declares the route, one JSON
 * response out.
 *
 *   route (router.h) → request message from body, path variables and
 *   query (transcode.h) → the bearer token checked (auth.h) and the
 *   rate limit taken (ratelimit.h; see edge_gateway_config) → async
 *   call on the backend's channel with the request's deadline, its
 *   Authorization and X-Request-Id as metadata → reply as JSON, or the gRPC status as HTTP status + JSON error body
 *   (httpstatus.h).
 *
 * Also served here: GET /healthz (the process answers), GET /readyz (every
 * backend answers SERVING on grpc.health.v1, checked per request),
 * GET /openapi.json (the generated document), CORS preflights.
 *
 * Every response carries X-Request-Id (the client's when it sent a sane
 * one, else a new one; the services get it as metadata and log it),
 * X-Content-Type-Options: nosniff, Cache-Control: no-store and a
 * Content-Security-Policy that allows nothing (responses are data, never
 * pages). Each request is logged as one line.
 */
#ifndef ESTORE_EDGE_GATEWAY_H
#define ESTORE_EDGE_GATEWAY_H

#include <stddef.h>

#include "auth.h"
#include "http.h"
#include "ratelimit.h"
#include "rpc/channel.h"
#include "rpc/service.h"

typedef struct edge_gateway edge_gateway;

/* A service the edge fronts: its routes go to `channel`, or, when given,
 * to the channel of the HTTP loop the request came in on
 * (loop_channels[edge_http_loop_index(req)], made with
 * rpc_channel_new_on_loop on edge_http_server_loop): the call and its
 * reply then stay on that loop's thread. All borrowed; they must outlive
 * the gateway. /readyz uses `channel`. */
typedef struct edge_backend {
	const rpc_service_desc *service;
	rpc_channel *channel;
	rpc_channel *const *loop_channels;
	size_t n_loop_channels;
} edge_backend;

typedef struct edge_gateway_config {
	long long request_timeout_ms;    /* deadline of each call; → 504 */
	const char *const *cors_origins; /* exact origins allowed; "*" = any */
	size_t n_cors_origins;
	const char *openapi_json;        /* served at /openapi.json (borrowed) */
	size_t openapi_len;
	/* Checks Authorization: Bearer before a call starts (borrowed; NULL
	 * = no check at the edge, the services alone decide). A route whose
	 * RPC is not ACCESS_PUBLIC needs a token the edge accepts; a PUBLIC
	 * one is open, but a token presented to it must be valid too. No or
	 * a refused token → 401 with WWW-Authenticate: Bearer; a verdict
	 * that cannot be reached → 503. */
	edge_auth *auth;
	/* Rate limits (borrowed; NULL = none), per minute with a burst of
	 * the same, 0 = that limit off. Login and Register are limited per
	 * client address; a request whose token the edge verified, per
	 * account (the token's sub); one without a token, per address.
	 * Over the limit → 429 (RESOURCE_EXHAUSTED, "rate limit exceeded")
	 * with Retry-After in whole seconds. /healthz, /readyz,
	 * /openapi.json and CORS preflights are never limited; Redis away →
	 * allowed (ratelimit.h). */
	edge_rl *ratelimit;
	/* Proxies in front of the edge (borrowed; NULL = none): from them,
	 * X-Forwarded-For names the client (clientaddr.h), which keys the
	 * address limits, is logged and goes to the services as metadata
	 * x-forwarded-for. From anyone else the header is ignored. */
	const struct trusted_nets *trusted_proxies;
	long long rate_login_per_min;
	long long rate_account_per_min;
	long long rate_anon_per_min;
} edge_gateway_config;

/* NULL with a message in err when the routes do not build (router.h) or
 * on no memory. Backends and config strings are borrowed. */
edge_gateway *edge_gateway_new(const edge_gateway_config *cfg,
			       const edge_backend *backends, size_t n_backends,
			       char *err, size_t errlen);

/* Waits for calls in flight to complete (their responses are sent or
 * dropped), then frees. NULL is a no-op. Call after the HTTP server has
 * drained, before freeing the channels. */
void edge_gateway_free(edge_gateway *g);

/* The server whose open connections /metrics reports (borrowed; set it
 * before the server starts). */
void edge_gateway_set_server(edge_gateway *g, edge_http_server *server);

/* The edge_http_handler: pass the gateway as `user`. */
void edge_gateway_handle(edge_http_request *req, void *gateway);

#endif
