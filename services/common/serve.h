/*
 * serve.h - the steps every service's main ends with: start the RPC
 * server, hold its health at NOT_SERVING until the dependency watcher has
 * looked (when asked), start the watcher and the metrics endpoint
 * (METRICS_PORT), log where it listens, and run until SIGTERM/SIGINT.
 */
#ifndef ESTORE_SVC_SERVE_H
#define ESTORE_SVC_SERVE_H

#include <stdbool.h>

#include "rpc/server.h"
#include "services/common/deps.h"

typedef struct svc_serve_opts {
	rpc_server *srv;
	int listener;               /* rpc_server_listen's index */
	const char *listen_host;
	long long metrics_port;     /* METRICS_PORT (svc_metrics_port_for) */
	deps_watch *watch;
	/* rpc_server_start marks everything SERVING: take that back for ""
	 * and service_name until the watcher's rounds say otherwise (a
	 * schema not migrated yet, dependencies not seen yet). */
	bool not_serving_at_start;
	const char *service_name;
} svc_serve_opts;

/* main's exit status: rpc_server_run_until_signal's, or 1 when a step
 * fails (logged; a started server is stopped again). The metrics
 * endpoint is stopped before it returns; the watcher is the caller's. */
int svc_serve(const svc_serve_opts *o);

#endif
