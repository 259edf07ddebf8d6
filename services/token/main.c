/*
 * estore-token - the token service (estore.token.v1.TokenService).
 *
 * Wiring only: configuration table → keys, Redis pool, store, service,
 * server with the local authenticator, dependency watcher; run until
 * SIGTERM/SIGINT. Exits 1 with a message when the configuration or the
 * keys are unusable; a Redis that is down is not a reason to exit (the
 * service reports NOT_SERVING and answers UNAVAILABLE until it returns).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estore/token/v1/token.rpc.h"
#include "rpc/log.h"
#include "rpc/server.h"
#include "services/common/config.h"
#include "services/common/deps.h"
#include "services/common/serve.h"
#include "services/common/redis.h"
#include "services/token/keys.h"
#include "services/token/service.h"
#include "services/token/store_redis.h"

#define PROGRAM "estore-token"
/* Bounds each Redis connect and command. */
#define REDIS_TIMEOUT_MS 1000

struct token_config {
	char *log_level;
	char *listen_host;
	long long io_threads;
	long long workers;
	long long port;
	long long metrics_port;
	char *redis_host;
	long long redis_port;
	char *redis_password;
	char *auth_secret;
	char *key_dir;
	char *signing_kid;
	char *issuer;
	char *audience;
	long long access_ttl_s;
	long long refresh_ttl_s;
	long long service_ttl_s;
};

#define F(name) offsetof(struct token_config, name)

static const cfg_var config_vars[] = {
	{ "LOG_LEVEL", CFG_STRING, F(log_level), "info", 0, 0, false,
	  "debug, info, warn or error" },
	{ "LISTEN_HOST", CFG_STRING, F(listen_host), "0.0.0.0", 0, 0, false,
	  "address to listen on" },
	{ "GRPC_IO_THREADS", CFG_INT, F(io_threads), "2", 1, 64, false,
	  "I/O threads" },
	{ "GRPC_WORKERS", CFG_INT, F(workers), "16", 1, 1024, false,
	  "handler threads (also the Redis pool size)" },
	{ "TOKEN_SERVICE_PORT", CFG_INT, F(port), "50052", 1, 65535, false,
	  "gRPC port" },
	{ "METRICS_PORT", CFG_INT, F(metrics_port), "0", -1, 65535, false,
	  "Prometheus /metrics port (0 = the gRPC port + 1000, -1 = off)" },
	{ "REDIS_HOST", CFG_STRING, F(redis_host), "127.0.0.1", 0, 0, false,
	  "Redis host" },
	{ "REDIS_PORT", CFG_INT, F(redis_port), "6379", 1, 65535, false,
	  "Redis port" },
	{ "REDIS_PASSWORD", CFG_STRING, F(redis_password), "", 0, 0, true,
	  "Redis password (AUTH)" },
	{ "AUTH_SERVICE_SECRET", CFG_STRING, F(auth_secret), NULL, 0, 0, true,
	  "the secret estore-auth presents for its service token" },
	{ "TOKEN_KEY_DIR", CFG_STRING, F(key_dir), NULL, 0, 0, false,
	  "directory of ES256 private keys, KID.pem" },
	{ "TOKEN_SIGNING_KID", CFG_STRING, F(signing_kid), "", 0, 0, false,
	  "kid that signs (default: the last in sorted order)" },
	{ "TOKEN_ISSUER", CFG_STRING, F(issuer), "estore", 0, 0, false,
	  "iss claim" },
	{ "TOKEN_AUDIENCE", CFG_STRING, F(audience), "estore", 0, 0, false,
	  "aud claim" },
	{ "TOKEN_ACCESS_TTL_S", CFG_INT, F(access_ttl_s), "900", 60, 86400,
	  false, "access token lifetime" },
	{ "TOKEN_REFRESH_TTL_S", CFG_INT, F(refresh_ttl_s), "2592000", 300,
	  31536000, false, "refresh token lifetime" },
	{ "TOKEN_SERVICE_TTL_S", CFG_INT, F(service_ttl_s), "3600", 60, 86400,
	  false, "service token lifetime" },
};

#define N_VARS (sizeof(config_vars) / sizeof(config_vars[0]))

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rpc_log(RPC_LOG_ERROR, "main", "%s", msg);
	/* Also plain text on stderr: whoever starts the binary by hand
	 * reads this first. */
	fprintf(stderr, PROGRAM ": %s\n", msg);
	return 1;
}

/* Settings that each parse but do not fit together. */
static const char *config_problem(const struct token_config *c)
{
	if (c->auth_secret[0] == '\0')
		return "AUTH_SERVICE_SECRET must not be empty";
	if (c->issuer[0] == '\0' || strlen(c->issuer) > 200)
		return "TOKEN_ISSUER must be 1-200 characters";
	if (c->audience[0] == '\0' || strlen(c->audience) > 200)
		return "TOKEN_AUDIENCE must be 1-200 characters";
	/* A session must outlive its access tokens: revocation of a
	 * session is what refuses them (store_redis.h). */
	if (c->refresh_ttl_s <= c->access_ttl_s)
		return "TOKEN_REFRESH_TTL_S must be longer than TOKEN_ACCESS_TTL_S";
	return NULL;
}

int main(void)
{
	static const char *const health_names[] = {
		"estore.token.v1.TokenService",
	};
	struct token_config cfg;
	rpc_server_config scfg;
	rpc_log_level level;
	char err[512], addr[300];
	const char *problem;
	keyset *keys = NULL;
	rds_pool *pool = NULL;
	tstore *store = NULL;
	token_service *svc = NULL;
	rpc_server *srv = NULL;
	deps_watch *deps = NULL;
	token_settings set;
	int rc = 1, li;

	rpc_log_set_sink(rpc_log_json_sink, PROGRAM, RPC_LOG_INFO);
	if (cfg_load(config_vars, N_VARS, &cfg, err, sizeof(err)) != 0)
		return fail("configuration: %s", err);
	if (rpc_log_level_parse(cfg.log_level, &level) != 0) {
		fail("configuration: LOG_LEVEL '%s' is not debug, info, warn "
		     "or error", cfg.log_level);
		goto out;
	}
	rpc_log_set_sink(rpc_log_json_sink, PROGRAM, level);
	cfg_log(config_vars, N_VARS, &cfg);
	problem = config_problem(&cfg);
	if (problem) {
		fail("configuration: %s", problem);
		goto out;
	}

	keys = keyset_load(cfg.key_dir, cfg.signing_kid, err, sizeof(err));
	if (!keys) {
		fail("keys: %s", err);
		goto out;
	}
	for (size_t i = 0; i < keyset_count(keys); i++)
		rpc_log(RPC_LOG_INFO, "keys", "key %s loaded%s",
			keyset_get(keys, i)->kid,
			keyset_get(keys, i) == keyset_signing(keys) ? " (signing)"
								   : "");

	pool = rds_pool_new(cfg.redis_host, (int)cfg.redis_port,
			    cfg.redis_password, (int)cfg.workers,
			    REDIS_TIMEOUT_MS);
	store = pool ? tstore_new(pool, cfg.refresh_ttl_s) : NULL;
	set = (token_settings){
		.issuer = cfg.issuer, .audience = cfg.audience,
		.access_ttl_s = cfg.access_ttl_s,
		.refresh_ttl_s = cfg.refresh_ttl_s,
		.service_ttl_s = cfg.service_ttl_s,
		.auth_secret = cfg.auth_secret,
	};
	svc = store ? token_service_new(&set, keys, store) : NULL;
	if (!svc) {
		fail("out of memory");
		goto out;
	}
	problem = token_service_self_test(svc);
	if (problem) {
		fail("keys: signing self-test failed: %s", problem);
		goto out;
	}

	rpc_server_config_defaults(&scfg);
	scfg.io_threads = (int)cfg.io_threads;
	scfg.workers = (int)cfg.workers;
	srv = rpc_server_new(&scfg);
	if (!srv) {
		fail("out of memory");
		goto out;
	}
	cfg_host_port(cfg.listen_host, cfg.port, addr, sizeof(addr));
	li = rpc_server_listen(srv, addr);
	if (li < 0) {
		fail("cannot listen on %s: %s", addr, rpc_strerror(li));
		goto out;
	}
	rpc_server_set_authenticator(srv, token_service_authenticate, svc);
	if (estore_token_v1_TokenService_register(srv, &token_service_impl,
						  svc) != 0) {
		fail("cannot register TokenService");
		goto out;
	}
	/* GetJwks only reads memory: no need to leave the I/O thread. */
	rpc_server_set_inline(srv, "/estore.token.v1.TokenService/GetJwks");

	deps = deps_watch_new(srv, health_names, 1);
	if (!deps || deps_watch_add(deps, "redis", tstore_ping, store) != 0) {
		fail("out of memory");
		goto out;
	}
	rc = svc_serve(&(svc_serve_opts){
		.srv = srv,
		.listener = li,
		.listen_host = cfg.listen_host,
		.metrics_port = cfg.metrics_port,
		.watch = deps,
		/* The watcher's first round replaces the SERVING that
		 * rpc_server_start sets. */
		.not_serving_at_start = false,
	});
out:
	/* The watcher touches the server's health: stop it first. */
	deps_watch_free(deps);
	rpc_server_free(srv);
	token_service_free(svc);
	tstore_free(store);
	rds_pool_free(pool);
	keyset_free(keys);
	cfg_free(config_vars, N_VARS, &cfg);
	return rc;
}
