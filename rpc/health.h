/*
 * health.h - grpc.health.v1.Health (Check and Watch) for one server.
 *
 * The server owns one rpc_health and registers it at start; programs change
 * statuses through rpc_server_set_health. "" is the whole server. Check of
 * an unknown name → NOT_FOUND; Watch of an unknown name streams
 * SERVICE_UNKNOWN and then every change.
 */
#ifndef ESTORE_RPC_HEALTH_H
#define ESTORE_RPC_HEALTH_H

typedef struct rpc_server rpc_server;
typedef struct rpc_health rpc_health;

typedef enum rpc_serving_status {
	RPC_HEALTH_UNKNOWN = 0,
	RPC_HEALTH_SERVING = 1,
	RPC_HEALTH_NOT_SERVING = 2,
	RPC_HEALTH_SERVICE_UNKNOWN = 3, /* Watch only */
} rpc_serving_status;

rpc_health *rpc_health_new(void);
void rpc_health_free(rpc_health *h);

/* Sets a status and wakes watchers. Returns 0 or RPC_ERR_NOMEM. */
int rpc_health_set(rpc_health *h, const char *service,
		   rpc_serving_status status);

/* Current status; RPC_HEALTH_SERVICE_UNKNOWN when never set. */
rpc_serving_status rpc_health_get(rpc_health *h, const char *service);

/* Every known status becomes NOT_SERVING and Watch calls end (server
 * shutdown). */
void rpc_health_shutdown(rpc_health *h);

/* Registers the Health service's methods on srv. Returns 0 or an RPC_ERR_*. */
int rpc_health_register(rpc_health *h, rpc_server *srv);

#endif
