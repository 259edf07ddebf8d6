/*
 * metrics.c - counters and histograms of metrics.h, and their text form.
 *
 * Every counter is a relaxed atomic in one flat array per kind, sized when
 * the metrics are made: recording is an index and an atomic add, never a
 * lock or an allocation. Status codes index directly (100..599), which
 * costs 4 KiB per route and keeps recording branch-free; only non-zero
 * series are printed.
 */
#include "metrics.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/metrics.h"
#include "rpc/status.h"

#define STATUS_MIN 100
#define N_STATUS 500

static const char *const OWN_LABELS[EDGE_N_OWN_ROUTES] = {
	[EDGE_ROUTE_HEALTHZ] = "/healthz",
	[EDGE_ROUTE_READYZ] = "/readyz",
	[EDGE_ROUTE_OPENAPI] = "/openapi.json",
	[EDGE_ROUTE_METRICS] = "/metrics",
	[EDGE_ROUTE_PREFLIGHT] = "preflight",
	[EDGE_ROUTE_UNROUTED] = "unrouted",
};

struct route_series {
	_Atomic uint64_t status[N_STATUS];
	rpc_latency latency;
};

struct edge_metrics {
	const rpc_service_desc *const *services;
	size_t n_services;
	size_t n_rpc_routes;                 /* labels 0..n_rpc_routes-1 */
	size_t n_routes;                     /* + the edge's own */
	struct route_series *routes;
	_Atomic uint64_t *upstream;          /* [service][code] */
	_Atomic long in_flight;
	_Atomic uint64_t rate_limited;
};

edge_metrics *edge_metrics_new(const rpc_service_desc *const *services,
			       size_t n_services)
{
	edge_metrics *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->services = services;
	m->n_services = n_services;
	for (size_t i = 0; i < n_services; i++)
		m->n_rpc_routes += services[i]->n_http_routes;
	m->n_routes = m->n_rpc_routes + EDGE_N_OWN_ROUTES;
	m->routes = calloc(m->n_routes, sizeof(*m->routes));
	m->upstream = calloc((n_services ? n_services : 1) * (RPC_CODE_MAX + 1),
			     sizeof(*m->upstream));
	if (m->routes == NULL || m->upstream == NULL) {
		edge_metrics_free(m);
		return NULL;
	}
	return m;
}

void edge_metrics_free(edge_metrics *m)
{
	if (m == NULL)
		return;
	free(m->routes);
	free(m->upstream);
	free(m);
}

int edge_metrics_route(const edge_metrics *m, const rpc_http_route *route)
{
	size_t base = 0;

	for (size_t i = 0; i < m->n_services; i++) {
		const rpc_service_desc *s = m->services[i];

		if (route >= s->http_routes && route < s->http_routes + s->n_http_routes)
			return (int)(base + (size_t)(route - s->http_routes));
		base += s->n_http_routes;
	}
	return -1;
}

int edge_metrics_own_route(const edge_metrics *m, int own)
{
	if (own < 0 || own >= EDGE_N_OWN_ROUTES)
		own = EDGE_ROUTE_UNROUTED;
	return (int)m->n_rpc_routes + own;
}

void edge_metrics_request_started(edge_metrics *m)
{
	atomic_fetch_add_explicit(&m->in_flight, 1, memory_order_relaxed);
}

void edge_metrics_request_done(edge_metrics *m, int route, int status,
			       long long duration_ns)
{
	struct route_series *r;

	if (route < 0 || (size_t)route >= m->n_routes)
		route = edge_metrics_own_route(m, EDGE_ROUTE_UNROUTED);
	r = &m->routes[route];
	if (status < STATUS_MIN || status >= STATUS_MIN + N_STATUS)
		status = 500;
	atomic_fetch_add_explicit(&r->status[status - STATUS_MIN], 1,
				  memory_order_relaxed);
	rpc_latency_observe(&r->latency, duration_ns);
	atomic_fetch_sub_explicit(&m->in_flight, 1, memory_order_relaxed);
}

void edge_metrics_upstream(edge_metrics *m, const rpc_service_desc *service,
			   int code)
{
	for (size_t i = 0; i < m->n_services; i++) {
		if (m->services[i] != service)
			continue;
		if (code < 0 || code > RPC_CODE_MAX)
			code = RPC_UNKNOWN;
		atomic_fetch_add_explicit(&m->upstream[i * (RPC_CODE_MAX + 1) + (size_t)code],
					  1, memory_order_relaxed);
		return;
	}
}

void edge_metrics_rate_limited(edge_metrics *m)
{
	atomic_fetch_add_explicit(&m->rate_limited, 1, memory_order_relaxed);
}

/* ---- the text form ------------------------------------------------------- */

static uint64_t load(const _Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* Route templates hold no quote, backslash or newline (the codegen's
 * paths are URL paths), so they go into a label as they are. */
static void route_label(const edge_metrics *m, size_t i, char *out, size_t cap)
{
	size_t base = 0;

	if (i >= m->n_rpc_routes) {
		snprintf(out, cap, "%s", OWN_LABELS[i - m->n_rpc_routes]);
		return;
	}
	for (size_t s = 0; s < m->n_services; s++) {
		const rpc_service_desc *d = m->services[s];

		if (i < base + d->n_http_routes) {
			const rpc_http_route *r = &d->http_routes[i - base];

			snprintf(out, cap, "%s %s", r->verb, r->pattern);
			return;
		}
		base += d->n_http_routes;
	}
	snprintf(out, cap, "?");
}

char *edge_metrics_render(const edge_metrics *m, long open_connections,
			  size_t *len)
{
	rpc_text t = { 0 };
	char label[256], labels[300];

	rpc_text_printf(&t, "# HELP edge_http_requests_total HTTP requests answered, by route and status.\n"
			"# TYPE edge_http_requests_total counter\n");
	for (size_t i = 0; i < m->n_routes; i++) {
		route_label(m, i, label, sizeof(label));
		for (int s = 0; s < N_STATUS; s++) {
			uint64_t v = load(&m->routes[i].status[s]);

			if (v)
				rpc_text_printf(&t, "edge_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
						label, s + STATUS_MIN, (unsigned long long)v);
		}
	}

	rpc_text_printf(&t, "# HELP edge_http_request_duration_seconds Time from a whole request "
			"received to its response handed to the connection.\n"
			"# TYPE edge_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i < m->n_routes; i++) {
		route_label(m, i, label, sizeof(label));
		snprintf(labels, sizeof(labels), "route=\"%s\"", label);
		rpc_latency_write(&t, "edge_http_request_duration_seconds", labels,
				  &m->routes[i].latency);
	}

	rpc_text_printf(&t, "# HELP edge_http_requests_in_flight Requests received and not yet answered.\n"
			"# TYPE edge_http_requests_in_flight gauge\n"
			"edge_http_requests_in_flight %ld\n",
			atomic_load_explicit(&m->in_flight, memory_order_relaxed));
	if (open_connections >= 0)
		rpc_text_printf(&t, "# HELP edge_http_connections_open Client connections open.\n"
				"# TYPE edge_http_connections_open gauge\n"
				"edge_http_connections_open %ld\n", open_connections);

	rpc_text_printf(&t, "# HELP edge_upstream_responses_total Replies from the services, by gRPC code.\n"
			"# TYPE edge_upstream_responses_total counter\n");
	for (size_t s = 0; s < m->n_services; s++)
		for (int c = 0; c <= RPC_CODE_MAX; c++) {
			uint64_t v = load(&m->upstream[s * (RPC_CODE_MAX + 1) + (size_t)c]);

			if (v)
				rpc_text_printf(&t, "edge_upstream_responses_total{service=\"%s\",code=\"%s\"} %llu\n",
						m->services[s]->name, rpc_code_name((rpc_code)c),
						(unsigned long long)v);
		}
	rpc_text_printf(&t, "# HELP edge_upstream_errors_total Calls a service failed "
			"(unavailable, deadline exceeded, internal, unknown, data loss, unimplemented).\n"
			"# TYPE edge_upstream_errors_total counter\n");
	for (size_t s = 0; s < m->n_services; s++) {
		static const int failed[] = {
			RPC_UNAVAILABLE, RPC_DEADLINE_EXCEEDED, RPC_INTERNAL,
			RPC_UNKNOWN, RPC_DATA_LOSS, RPC_UNIMPLEMENTED,
		};
		uint64_t v = 0;

		for (size_t k = 0; k < sizeof(failed) / sizeof(failed[0]); k++)
			v += load(&m->upstream[s * (RPC_CODE_MAX + 1) + (size_t)failed[k]]);
		rpc_text_printf(&t, "edge_upstream_errors_total{service=\"%s\"} %llu\n",
				m->services[s]->name, (unsigned long long)v);
	}
	rpc_text_printf(&t, "# HELP edge_ratelimit_rejected_total Requests refused with 429 by the edge's rate limits.\n"
			"# TYPE edge_ratelimit_rejected_total counter\n"
			"edge_ratelimit_rejected_total %llu\n",
			(unsigned long long)load(&m->rate_limited));
	rpc_process_metrics_write(&t);
	return rpc_text_take(&t, len);
}
