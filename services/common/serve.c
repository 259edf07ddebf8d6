/*
 * serve.c - see serve.h.
 */
#include "services/common/serve.h"

#include "rpc/log.h"
#include "services/common/config.h"
#include "services/common/metrics_http.h"

int svc_serve(const svc_serve_opts *o)
{
	svc_metrics *metrics = NULL;
	char addr[300];
	int port, rc;

	if (rpc_server_start(o->srv) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot start the server");
		return 1;
	}
	if (o->not_serving_at_start) {
		rpc_server_set_health(o->srv, "", RPC_HEALTH_NOT_SERVING);
		rpc_server_set_health(o->srv, o->service_name, RPC_HEALTH_NOT_SERVING);
	}
	port = rpc_server_port(o->srv, o->listener);
	if (deps_watch_start(o->watch) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot start the dependency watcher");
		goto stop;
	}
	/* svc_metrics_open logs its own failure. */
	if (svc_metrics_open(o->srv, o->listen_host, o->metrics_port, port,
			     &metrics) != 0)
		goto stop;
	cfg_host_port(o->listen_host, port, addr, sizeof(addr));
	rpc_log(RPC_LOG_INFO, "main", "listening on %s", addr);
	rc = rpc_server_run_until_signal(o->srv);
	svc_metrics_stop(metrics);
	rpc_log(RPC_LOG_INFO, "main", "stopped");
	return rc;
stop:
	rpc_server_shutdown(o->srv);
	rpc_server_wait(o->srv);
	return 1;
}
