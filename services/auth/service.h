/*
 * service.h - estore.auth.v1.AuthService: registration, login, refresh,
 * logout and password change, over the account and token services.
 *
 * Rules (see README.md for the full list):
 *  - Passwords: policy first (password.h), then argon2id with the
 *    configured parameters; hashes made with weaker parameters are redone
 *    at the next successful login.
 *  - Login: unknown email and wrong password answer the same
 *    UNAUTHENTICATED "invalid email or password" after the same work (a
 *    dummy hash is verified for unknown emails); failures are throttled
 *    per account and per client address (throttle.h), checked before any
 *    hashing.
 *  - At most max_concurrent_hashes argon2 computations run at once; a call
 *    waits for a slot until its deadline (at most hash_wait_ms) and then
 *    gets RESOURCE_EXHAUSTED "server busy", so a login flood queues instead
 *    of starving the machine.
 *  - A dependency that is down gives UNAVAILABLE; other dependency failures
 *    are logged and answered INTERNAL without their detail.
 */
#ifndef ESTORE_AUTH_SERVICE_H
#define ESTORE_AUTH_SERVICE_H

#include "clients.h"
#include "password.h"
#include "throttle.h"
#include "rpc/server.h"

typedef struct auth_service auth_service;

typedef struct auth_service_config {
	pw_params params;              /* for new hashes and rehash decisions */
	int max_concurrent_hashes;     /* AUTH_MAX_CONCURRENT_HASHES */
	long long hash_wait_ms;        /* longest wait for a hashing slot */
	/* Callers whose x-forwarded-for metadata names the client for the
	 * per-address throttle (AUTH_TRUSTED_PROXIES: the edge's network);
	 * borrowed, NULL = none, the gRPC peer is the client. */
	const struct trusted_nets *trusted_proxies;
} auth_service_config;

/*
 * Borrows `cl`, `th` and `deny`, which must outlive the service. Computes
 * the dummy hash (one argon2 run). NULL on no memory or when hashing with
 * cfg->params fails.
 */
auth_service *auth_service_new(const auth_service_config *cfg, clients *cl,
			       throttle *th, const pw_denylist *deny);

/* auth_service_free(NULL) is a no-op. Call after the server stopped. */
void auth_service_free(auth_service *s);

/* Registers AuthService on srv (before start). Returns 0 or an RPC_ERR_*. */
int auth_service_register(auth_service *s, rpc_server *srv);

#endif
