/*
 * metrics_http.h - a service's Prometheus endpoint: GET /metrics on a port
 * of its own (by convention the gRPC port + 1000, METRICS_PORT), with the
 * RPC server's series (rpc_server_metrics_write) and the process's
 * (rpc_process_metrics_write). libevent's evhttp serves it on a thread of
 * its own, so a scrape never waits behind RPC traffic, nor the reverse.
 */
#ifndef ESTORE_SVC_METRICS_HTTP_H
#define ESTORE_SVC_METRICS_HTTP_H

#include <stddef.h>

#include "rpc/server.h"

typedef struct svc_metrics svc_metrics;

/* Serves `srv`'s metrics on host:port (port 0: any free port). NULL with
 * the reason in err when the port cannot be bound. */
svc_metrics *svc_metrics_start(rpc_server *srv, const char *host, int port,
			       char *err, size_t errlen);

/* The port bound. */
int svc_metrics_port(const svc_metrics *m);

/* Stops serving and frees; before the server is freed. NULL is a no-op. */
void svc_metrics_stop(svc_metrics *m);

/* The metrics port of a service on `grpc_port`: `configured` when it is
 * above 0, else grpc_port + 1000 (DESIGN.md), or -1 when that is no port
 * or `configured` is negative (off). */
int svc_metrics_port_for(long long configured, long long grpc_port);

/* What every service's main does: starts the endpoint on host and the
 * port svc_metrics_port_for picks, and logs where. 0 with *out NULL when
 * metrics are off, 0 with *out set, or -1 (logged) when the port cannot
 * be served. */
int svc_metrics_open(rpc_server *srv, const char *host, long long configured,
		     int grpc_port, svc_metrics **out);

#endif
