/*
 * estore-auth - serves estore.auth.v1.AuthService (plus health and
 * reflection) on LISTEN_HOST:AUTH_SERVICE_PORT.
 *
 * Wiring only: configuration table → log sink, password deny-list,
 * channels to the account and token services with our service identity,
 * the Redis pool of the login throttle, server, dependency watcher; then
 * run until SIGTERM/SIGINT.
 *
 * None of the dependencies need be up at start: the watcher reports
 * NOT_SERVING until Redis, the account service and the token service all
 * answer, and calls meanwhile fail with UNAVAILABLE.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients.h"
#include "password.h"
#include "rpc/log.h"
#include "rpc/server.h"
#include "service.h"
#include "services/common/authn.h"
#include "services/common/config.h"
#include "services/common/deps.h"
#include "services/common/clientaddr.h"
#include "services/common/serve.h"
#include "services/common/redis.h"
#include "throttle.h"

#define SERVICE_NAME "estore.auth.v1.AuthService"

/* Bounds of the argon2 parameters: the floor is OWASP's recommendation for
 * argon2id (19 MiB, t=2, p=1); the ceilings match what password.c agrees
 * to verify, so a configured value can always be checked later. */
#define ARGON2_MIN_M_KIB 19456
#define ARGON2_MAX_M_KIB 1048576

struct config {
	char *log_level;
	char *listen_host;
	long long port;
	long long metrics_port;
	long long io_threads;
	long long workers;
	char *redis_host;
	long long redis_port;
	char *redis_password;
	char *account_host;
	long long account_port;
	char *token_host;
	long long token_port;
	char *secret;
	char *denylist;
	long long m_kib;
	long long iterations;
	long long parallelism;
	long long max_hashes;
	long long max_failures;
	long long ip_max_failures;
	long long backoff_base_ms;
	char *trusted_proxies;
};

#define F(field) offsetof(struct config, field)
static const cfg_var config_vars[] = {
	{ "LOG_LEVEL", CFG_STRING, F(log_level), "info", 0, 0, false,
	  "debug, info, warn or error" },
	{ "LISTEN_HOST", CFG_STRING, F(listen_host), "0.0.0.0", 0, 0, false,
	  "address to listen on" },
	{ "AUTH_SERVICE_PORT", CFG_INT, F(port), "50053", 0, 65535, false,
	  "port to listen on (0 = any free port, logged)" },
	{ "METRICS_PORT", CFG_INT, F(metrics_port), "0", -1, 65535, false,
	  "Prometheus /metrics port (0 = the gRPC port + 1000, -1 = off)" },
	{ "GRPC_IO_THREADS", CFG_INT, F(io_threads), "2", 1, 256, false,
	  "I/O threads" },
	{ "GRPC_WORKERS", CFG_INT, F(workers), "16", 1, 4096, false,
	  "handler threads" },
	{ "REDIS_HOST", CFG_STRING, F(redis_host), "127.0.0.1", 0, 0, false,
	  "Redis host (failed-login counters)" },
	{ "REDIS_PORT", CFG_INT, F(redis_port), "6379", 1, 65535, false,
	  "Redis port" },
	{ "REDIS_PASSWORD", CFG_STRING, F(redis_password), "", 0, 0, true,
	  "Redis password" },
	{ "ACCOUNT_API_HOST", CFG_STRING, F(account_host), "127.0.0.1", 0, 0,
	  false, "account service host" },
	{ "ACCOUNT_API_PORT", CFG_INT, F(account_port), "50051", 1, 65535,
	  false, "account service port" },
	{ "TOKEN_SERVICE_HOST", CFG_STRING, F(token_host), "127.0.0.1", 0, 0,
	  false, "token service host" },
	{ "TOKEN_SERVICE_PORT", CFG_INT, F(token_port), "50052", 1, 65535,
	  false, "token service port" },
	{ "AUTH_SERVICE_SECRET", CFG_STRING, F(secret), NULL, 0, 0, true,
	  "this service's secret for its service token" },
	{ "AUTH_PASSWORD_DENYLIST", CFG_STRING, F(denylist),
	  "/usr/share/john/password.lst", 0, 0, false,
	  "file of common passwords, one a line, besides the built-in list "
	  "(empty = built-in list only)" },
	{ "AUTH_ARGON2_MEMORY_KIB", CFG_INT, F(m_kib), "19456",
	  ARGON2_MIN_M_KIB, ARGON2_MAX_M_KIB, false,
	  "argon2id memory per hash in KiB" },
	{ "AUTH_ARGON2_ITERATIONS", CFG_INT, F(iterations), "2", 2, 64, false,
	  "argon2id passes" },
	{ "AUTH_ARGON2_PARALLELISM", CFG_INT, F(parallelism), "1", 1, 16,
	  false, "argon2id lanes" },
	{ "AUTH_MAX_CONCURRENT_HASHES", CFG_INT, F(max_hashes), "2", 1, 1024,
	  false, "argon2 computations at once; more callers queue" },
	{ "AUTH_LOGIN_MAX_FAILURES", CFG_INT, F(max_failures), "5", 1, 1000,
	  false, "failed logins per account before back-off" },
	{ "AUTH_LOGIN_IP_MAX_FAILURES", CFG_INT, F(ip_max_failures), "50", 1,
	  1000000, false, "failed logins per client address before back-off" },
	{ "AUTH_LOGIN_BACKOFF_BASE_MS", CFG_INT, F(backoff_base_ms), "1000", 1,
	  900000, false, "first back-off delay; doubles with each failure" },
	{ "AUTH_TRUSTED_PROXIES", CFG_STRING, F(trusted_proxies), "", 0, 0,
	  false, "comma-separated networks of callers (the edge) whose "
	  "x-forwarded-for names the client for the per-address throttle "
	  "(empty = the caller is the client)" },
};
#undef F
#define N_VARS (sizeof(config_vars) / sizeof(config_vars[0]))

/* Timeouts towards dependencies. A Redis that is down must fail a login
 * quickly (connection refused is immediate; a black hole costs this). */
#define REDIS_TIMEOUT_MS 1000
#define CALL_TIMEOUT_MS 10000
#define PROBE_TIMEOUT_MS 1000
#define HASH_WAIT_MS 5000
#define THROTTLE_WINDOW_MS (15 * 60 * 1000LL)
#define THROTTLE_MAX_DELAY_MS (15 * 60 * 1000LL)

static bool redis_probe(void *user)
{
	return rds_ping(user);
}

/* The built-in list always; the configured file unless set to "". A file
 * that is named but missing is a configuration error: starting without
 * the list would silently weaken the policy. */
static pw_denylist *load_denylist(const char *path)
{
	pw_denylist *d = pw_denylist_new();
	size_t builtin = 0, from_file = 0;
	int rc;

	if (d == NULL || pw_denylist_load_builtin(d, &builtin) < 0) {
		rpc_log(RPC_LOG_ERROR, "main", "out of memory loading the password deny-list");
		pw_denylist_free(d);
		return NULL;
	}
	if (path[0] != '\0') {
		rc = pw_denylist_load_file(d, path, &from_file);
		if (rc < 0) {
			rpc_log(RPC_LOG_ERROR, "main",
				"AUTH_PASSWORD_DENYLIST: cannot read %s: %s", path,
				rc == RPC_ERR_IO ? strerror(errno) : rpc_strerror(rc));
			pw_denylist_free(d);
			return NULL;
		}
	}
	rpc_log(RPC_LOG_INFO, "main",
		"password deny-list: %zu built-in, %zu from %s, %zu distinct",
		builtin, from_file, path[0] != '\0' ? path : "(no file)",
		pw_denylist_size(d));
	return d;
}

int main(void)
{
	static const char *const health_names[] = { SERVICE_NAME };
	struct config cfg = { 0 };
	rpc_server_config scfg;
	rpc_log_level level;
	rpc_server *srv = NULL;
	pw_denylist *deny = NULL;
	clients *cl = NULL;
	rds_pool *redis = NULL;
	throttle *th = NULL;
	auth_service *svc = NULL;
	deps_watch *watch = NULL;
	trusted_nets *proxies = NULL;
	char err[512], addr[300], account_addr[300], token_addr[300];
	int rc = 1, lidx;

	if (cfg_load(config_vars, N_VARS, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "estore-auth: %s\n", err);
		return 2;
	}
	if (rpc_log_level_parse(cfg.log_level, &level) != 0) {
		fprintf(stderr, "estore-auth: LOG_LEVEL: '%s' is not one of "
			"debug, info, warn, error\n", cfg.log_level);
		rc = 2;
		goto out_cfg;
	}
	if (cfg.secret[0] == '\0') {
		fprintf(stderr, "estore-auth: AUTH_SERVICE_SECRET must not be empty\n");
		rc = 2;
		goto out_cfg;
	}
	rpc_log_set_sink(rpc_log_json_sink, "estore-auth", level);
	cfg_log(config_vars, N_VARS, &cfg);

	deny = load_denylist(cfg.denylist);
	if (deny == NULL) {
		rc = 2;
		goto out;
	}

	cfg_host_port(cfg.account_host, cfg.account_port, account_addr,
		       sizeof(account_addr));
	cfg_host_port(cfg.token_host, cfg.token_port, token_addr,
		       sizeof(token_addr));
	cl = clients_new(&(clients_config){
		.account_target = account_addr,
		.token_target = token_addr,
		.service_name = "auth",
		.service_secret = cfg.secret,
		.timeout_ms = CALL_TIMEOUT_MS,
		.probe_timeout_ms = PROBE_TIMEOUT_MS,
	});
	redis = rds_pool_new(cfg.redis_host, (int)cfg.redis_port,
			     cfg.redis_password, (int)cfg.workers,
			     REDIS_TIMEOUT_MS);
	if (redis != NULL)
		th = throttle_new(redis, &(throttle_config){
			.acct_max_failures = cfg.max_failures,
			.ip_max_failures = cfg.ip_max_failures,
			.base_ms = cfg.backoff_base_ms,
			.max_delay_ms = THROTTLE_MAX_DELAY_MS,
			.window_ms = THROTTLE_WINDOW_MS,
			.redis_wait_ms = REDIS_TIMEOUT_MS,
		});
	if (cl == NULL || th == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot create %s",
			cl == NULL ? "the service channels" : "the Redis pool");
		goto out;
	}
	proxies = trusted_nets_parse(cfg.trusted_proxies, err, sizeof(err));
	if (proxies == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "AUTH_TRUSTED_PROXIES: %s", err);
		rc = 2;
		goto out;
	}
	/* One argon2 run here (the dummy hash): also proves at start that
	 * the configured parameters work on this machine. */
	svc = auth_service_new(&(auth_service_config){
		.params = {
			.m_kib = (uint32_t)cfg.m_kib,
			.t = (uint32_t)cfg.iterations,
			.p = (uint32_t)cfg.parallelism,
		},
		.max_concurrent_hashes = (int)cfg.max_hashes,
		.hash_wait_ms = HASH_WAIT_MS,
		.trusted_proxies = proxies,
	}, cl, th, deny);
	if (svc == NULL) {
		rpc_log(RPC_LOG_ERROR, "main",
			"cannot set up hashing with the configured argon2 parameters");
		goto out;
	}

	rpc_server_config_defaults(&scfg);
	scfg.io_threads = (int)cfg.io_threads;
	scfg.workers = (int)cfg.workers;
	srv = rpc_server_new(&scfg);
	if (srv == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot create the server");
		goto out;
	}
	cfg_host_port(cfg.listen_host, cfg.port, addr, sizeof(addr));
	lidx = rpc_server_listen(srv, addr);
	if (lidx < 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot listen on %s: %s", addr,
			rpc_strerror(lidx));
		goto out;
	}
	authn_install_remote(srv, clients_token_channel(cl));
	if (auth_service_register(svc, srv) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot register the service");
		goto out;
	}

	watch = deps_watch_new(srv, health_names, 1);
	if (watch == NULL ||
	    deps_watch_add(watch, "redis", redis_probe, redis) != 0 ||
	    deps_watch_add(watch, "account", clients_probe_account, cl) != 0 ||
	    deps_watch_add(watch, "token", clients_probe_token, cl) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot create the dependency watcher");
		goto out;
	}
	rc = svc_serve(&(svc_serve_opts){
		.srv = srv,
		.listener = lidx,
		.listen_host = cfg.listen_host,
		.metrics_port = cfg.metrics_port,
		.watch = watch,
		.not_serving_at_start = true,
		.service_name = SERVICE_NAME,
	});
out:
	/* The watcher writes health on the server and probes through the
	 * clients: it goes first. The server's authenticator and handlers
	 * use the clients, throttle and deny-list: they go after it. */
	deps_watch_free(watch);
	rpc_server_free(srv);
	auth_service_free(svc);
	throttle_free(th);
	rds_pool_free(redis);
	clients_free(cl);
	pw_denylist_free(deny);
	trusted_nets_free(proxies);
out_cfg:
	cfg_free(config_vars, N_VARS, &cfg);
	return rc;
}
