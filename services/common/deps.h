/*
 * deps.h - watches a service's dependencies (PostgreSQL, Redis, other
 * services) from a background thread and reflects them in gRPC health:
 * while any dependency is down the server reports NOT_SERVING (for "" and
 * the named services), and SERVING again once all are back. Probes are
 * retried with exponential backoff and jitter (capped at a few seconds) so
 * a dead database is not hammered; transitions are logged.
 */
#ifndef ESTORE_SVC_DEPS_H
#define ESTORE_SVC_DEPS_H

#include <stdbool.h>

typedef struct rpc_server rpc_server;
typedef struct deps_watch deps_watch;

/* A probe: true when the dependency answers. Called from the watcher
 * thread only. */
typedef bool (*deps_probe_fn)(void *user);

deps_watch *deps_watch_new(rpc_server *srv, const char *const *services,
			   int n_services);
/* Adds a probe (before start). name: "postgres", "redis", "account"... */
int deps_watch_add(deps_watch *w, const char *name, deps_probe_fn fn,
		   void *user);
/* Runs the probes once synchronously (so health is right before the
 * first call), then starts the thread. Call it after rpc_server_start,
 * which marks everything SERVING (if called before, the thread corrects
 * health at its next round). Returns 0 or an RPC_ERR_*. */
int deps_watch_start(deps_watch *w);
/* True when every dependency answered at the last probe. */
bool deps_watch_healthy(deps_watch *w);
/* Stops the thread (waiting for a probe in progress) and frees; call it
 * before rpc_server_free. NULL is a no-op. */
void deps_watch_free(deps_watch *w);

#endif
