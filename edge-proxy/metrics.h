/*
 * metrics.h - the edge's Prometheus metrics, served at /metrics:
 *
 *   edge_http_requests_total{route,code}            counter
 *   edge_http_request_duration_seconds{route}       histogram
 *   edge_http_requests_in_flight                    gauge
 *   edge_http_connections_open                      gauge (from the server)
 *   edge_upstream_responses_total{service,code}     counter, gRPC codes
 *   edge_upstream_errors_total{service}             counter: the codes that
 *       mean the service failed (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL,
 *       UNKNOWN, DATA_LOSS, UNIMPLEMENTED), not the caller
 *   edge_ratelimit_rejected_total                   counter
 *
 * A route label is the route's verb and template ("GET /v1/accounts/me"),
 * or one of the edge's own: "/healthz", "/readyz", "/openapi.json",
 * "/metrics", "preflight", "unrouted" (404, 405 and bad paths), so the
 * label set stays bounded whatever clients send. Recording is lock-free
 * (relaxed atomics): any thread, any time.
 */
#ifndef ESTORE_EDGE_METRICS_H
#define ESTORE_EDGE_METRICS_H

#include <stddef.h>

#include "rpc/service.h"

typedef struct edge_metrics edge_metrics;

/* The edge's own route labels, after the RPC routes. */
enum {
	EDGE_ROUTE_HEALTHZ,
	EDGE_ROUTE_READYZ,
	EDGE_ROUTE_OPENAPI,
	EDGE_ROUTE_METRICS,
	EDGE_ROUTE_PREFLIGHT,
	EDGE_ROUTE_UNROUTED,
	EDGE_N_OWN_ROUTES
};

/* Metrics for every http_routes entry of `services` (borrowed: they must
 * outlive the metrics). NULL on no memory. */
edge_metrics *edge_metrics_new(const rpc_service_desc *const *services,
			       size_t n_services);
void edge_metrics_free(edge_metrics *m);

/* The label index of an RPC route of those services (-1 if unknown), and
 * of the edge's own (EDGE_ROUTE_HEALTHZ, ...). */
int edge_metrics_route(const edge_metrics *m, const rpc_http_route *route);
int edge_metrics_own_route(const edge_metrics *m, int own);

void edge_metrics_request_started(edge_metrics *m);
/* A response sent: counts it under `route` (-1: "unrouted") and ends
 * one in-flight request. */
void edge_metrics_request_done(edge_metrics *m, int route, int status,
			       long long duration_ns);
/* A gRPC reply (any code) from `service` (one of those given). */
void edge_metrics_upstream(edge_metrics *m, const rpc_service_desc *service,
			   int code);
void edge_metrics_rate_limited(edge_metrics *m);

/* The Prometheus text exposition (version 0.0.4), malloc'd; NULL on no
 * memory. `open_connections` < 0 leaves that gauge out. */
char *edge_metrics_render(const edge_metrics *m, long open_connections,
			  size_t *len);

#endif
