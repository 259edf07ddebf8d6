/*
 * estore-edge - the JSON/HTTP front door (edge-proxy/README.md).
 *
 * Wiring only: configuration table → a channel per backend service → the
 * gateway (routes from the services' generated descriptors) → the HTTP
 * server; run until SIGTERM/SIGINT, then drain. A backend that is down is
 * not a reason to exit: its routes answer 503 and /readyz says which.
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estore/account/v1/account.rpc.h"
#include "estore/auth/v1/auth.rpc.h"
#include "estore/catalog/v1/catalog.rpc.h"
#include "estore/token/v1/token.rpc.h"
#include "auth.h"
#include "services/common/clientaddr.h"
#include "gateway.h"
#include "http.h"
#include "ratelimit.h"
#include "rpc/log.h"
#include "services/common/config.h"

#define PROGRAM "estore-edge"
#define MAX_CORS_ORIGINS 32
#define N_BACKENDS 4

/* generated/openapi.json, compiled in (CMake writes openapi_doc.c). */
extern const char edge_openapi_json[];
extern const size_t edge_openapi_json_len;

struct config {
	char *log_level;
	char *listen_host;
	long long port;
	long long io_threads;
	long long max_body;
	long long max_header;
	long long header_timeout_ms;
	long long body_timeout_ms;
	long long idle_timeout_ms;
	long long max_connections;
	long long request_timeout_ms;
	long long drain_ms;
	char *cors_origins;
	char *account_host;
	long long account_port;
	char *auth_host;
	long long auth_port;
	char *token_host;
	long long token_port;
	char *catalog_host;
	long long catalog_port;
	long long jwks_refresh_ms;
	long long jwks_min_refresh_ms;
	long long revocation_cache_ms;
	char *token_issuer;
	char *token_audience;
	char *redis_host;
	long long redis_port;
	char *redis_password;
	long long rate_login;
	long long rate_account;
	long long rate_anon;
	char *trusted_proxies;
	char *tls_cert_file;
	char *tls_key_file;
	bool tls_required;
};

#define F(field) offsetof(struct config, field)
static const cfg_var config_vars[] = {
	{ "LOG_LEVEL", CFG_STRING, F(log_level), "info", 0, 0, false,
	  "debug, info, warn or error" },
	{ "LISTEN_HOST", CFG_STRING, F(listen_host), "0.0.0.0", 0, 0, false,
	  "address to listen on" },
	{ "EDGE_PORT", CFG_INT, F(port), "8080", 0, 65535, false,
	  "HTTP port (HTTP/1.1 and h2c; TLS too with EDGE_TLS_CERT_FILE)" },
	{ "EDGE_IO_THREADS", CFG_INT, F(io_threads), "2", 1, 64, false,
	  "HTTP event-loop threads" },
	{ "EDGE_MAX_BODY_BYTES", CFG_INT, F(max_body), "1048576", 1, 1 << 30,
	  false, "largest request body (413 beyond)" },
	{ "EDGE_MAX_HEADER_BYTES", CFG_INT, F(max_header), "16384", 1024,
	  1 << 20, false, "largest request header block (431 beyond)" },
	{ "EDGE_HEADER_TIMEOUT_MS", CFG_INT, F(header_timeout_ms), "10000", 1,
	  3600000, false, "time to send the headers (408 after)" },
	{ "EDGE_BODY_TIMEOUT_MS", CFG_INT, F(body_timeout_ms), "30000", 1,
	  3600000, false, "time to send the body (408 after)" },
	{ "EDGE_IDLE_TIMEOUT_MS", CFG_INT, F(idle_timeout_ms), "60000", 1,
	  86400000, false, "idle keep-alive connections close after this" },
	{ "EDGE_MAX_CONNECTIONS", CFG_INT, F(max_connections), "10000", 1,
	  1000000, false, "open connections at most" },
	{ "EDGE_REQUEST_TIMEOUT_MS", CFG_INT, F(request_timeout_ms), "15000", 1,
	  600000, false, "deadline of each call to a service (504 after)" },
	{ "EDGE_DRAIN_MS", CFG_INT, F(drain_ms), "10000", 0, 600000, false,
	  "on SIGTERM, time for requests in flight to finish" },
	{ "EDGE_CORS_ORIGINS", CFG_STRING, F(cors_origins), "", 0, 0, false,
	  "comma-separated origins allowed by CORS (\"*\" = any; empty = none)" },
	{ "ACCOUNT_API_HOST", CFG_STRING, F(account_host), "127.0.0.1", 0, 0,
	  false, "account service host" },
	{ "ACCOUNT_API_PORT", CFG_INT, F(account_port), "50051", 1, 65535,
	  false, "account service port" },
	{ "AUTH_SERVICE_HOST", CFG_STRING, F(auth_host), "127.0.0.1", 0, 0,
	  false, "auth service host" },
	{ "AUTH_SERVICE_PORT", CFG_INT, F(auth_port), "50053", 1, 65535, false,
	  "auth service port" },
	{ "TOKEN_SERVICE_HOST", CFG_STRING, F(token_host), "127.0.0.1", 0, 0,
	  false, "token service host" },
	{ "TOKEN_SERVICE_PORT", CFG_INT, F(token_port), "50052", 1, 65535,
	  false, "token service port" },
	{ "CATALOG_SERVICE_HOST", CFG_STRING, F(catalog_host), "127.0.0.1", 0,
	  0, false, "catalog service host" },
	{ "CATALOG_SERVICE_PORT", CFG_INT, F(catalog_port), "50054", 1, 65535,
	  false, "catalog service port" },
	{ "EDGE_JWKS_REFRESH_MS", CFG_INT, F(jwks_refresh_ms), "300000", 1000,
	  86400000, false, "the token service's JWKS is refetched this often" },
	{ "EDGE_JWKS_MIN_REFRESH_MS", CFG_INT, F(jwks_min_refresh_ms), "5000",
	  100, 3600000, false,
	  "a token with an unknown kid refetches the JWKS at most this often" },
	{ "EDGE_REVOCATION_CACHE_MS", CFG_INT, F(revocation_cache_ms), "1000", 0,
	  60000, false, "a token found not revoked is trusted this long "
	  "(a revoked token passes the edge at most this long; 0 = no cache)" },
	{ "TOKEN_ISSUER", CFG_STRING, F(token_issuer), "estore", 0, 0, false,
	  "\"iss\" of accepted access tokens (as the token service signs)" },
	{ "TOKEN_AUDIENCE", CFG_STRING, F(token_audience), "estore", 0, 0, false,
	  "\"aud\" of accepted access tokens (as the token service signs)" },
	{ "REDIS_HOST", CFG_STRING, F(redis_host), "127.0.0.1", 0, 0, false,
	  "Redis host (rate limits)" },
	{ "REDIS_PORT", CFG_INT, F(redis_port), "6379", 1, 65535, false,
	  "Redis port" },
	{ "REDIS_PASSWORD", CFG_STRING, F(redis_password), "", 0, 0, true,
	  "Redis password (empty = none)" },
	{ "EDGE_RATE_LOGIN_PER_MIN", CFG_INT, F(rate_login), "10", 0, 1000000,
	  false, "login/register requests a client address may make a minute "
	  "(burst the same; 0 = no limit)" },
	{ "EDGE_RATE_ACCOUNT_PER_MIN", CFG_INT, F(rate_account), "600", 0,
	  1000000, false, "requests with a token an account may make a minute "
	  "(burst the same; 0 = no limit)" },
	{ "EDGE_RATE_ANON_PER_MIN", CFG_INT, F(rate_anon), "300", 0, 1000000,
	  false, "requests without a token a client address may make a minute "
	  "(burst the same; 0 = no limit)" },
	{ "EDGE_TRUSTED_PROXIES", CFG_STRING, F(trusted_proxies), "", 0, 0,
	  false, "comma-separated networks of proxies in front of the edge "
	  "(10.0.0.0/8, ...) whose X-Forwarded-For names the client "
	  "(empty = the TCP peer is the client)" },
	{ "EDGE_TLS_CERT_FILE", CFG_STRING, F(tls_cert_file), "", 0, 0, false,
	  "PEM certificate chain: TLS (h2 or HTTP/1.1 by ALPN) on EDGE_PORT "
	  "beside cleartext (empty = no TLS)" },
	{ "EDGE_TLS_KEY_FILE", CFG_STRING, F(tls_key_file), "", 0, 0, false,
	  "PEM private key of EDGE_TLS_CERT_FILE" },
	{ "EDGE_TLS_REQUIRED", CFG_BOOL, F(tls_required), "false", 0, 0, false,
	  "close cleartext connections (needs EDGE_TLS_CERT_FILE)" },
};
#undef F
#define N_VARS (sizeof(config_vars) / sizeof(config_vars[0]))

/* The HTTP server exists before the gateway (the gateway's channels live
 * on the server's loops), so its handler finds the gateway through here;
 * set before the server starts, read only after. */
struct app {
	edge_gateway *gw;
};

static void handle(edge_http_request *req, void *user)
{
	edge_gateway_handle(req, ((struct app *)user)->gw);
}

/* One channel to `addr` on each HTTP loop; NULL on failure. */
static rpc_channel **loop_channels(edge_http_server *http, const char *addr)
{
	size_t n = edge_http_server_loops(http);
	rpc_channel **chs = calloc(n ? n : 1, sizeof(*chs));

	for (size_t i = 0; chs && i < n; i++) {
		chs[i] = rpc_channel_new_on_loop(addr, NULL, edge_http_server_loop(http, i));
		if (chs[i] == NULL) {
			while (i-- > 0)
				rpc_channel_free(chs[i]);
			free(chs);
			return NULL;
		}
	}
	return chs;
}

static void loop_channels_free(rpc_channel **chs, size_t n)
{
	for (size_t i = 0; chs && i < n; i++)
		rpc_channel_free(chs[i]);
	free(chs);
}

/* Splits "a, b,c" in place into at most `max` trimmed, non-empty items. */
static size_t split_origins(char *s, const char **out, size_t max)
{
	size_t n = 0;

	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ",")) {
		char *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok)
			out[n++] = tok;
	}
	return n;
}

int main(void)
{
	struct config cfg = { 0 };
	rpc_log_level level;
	rpc_channel *account = NULL, *auth = NULL, *token = NULL;
	rpc_channel *catalog = NULL;
	edge_auth *tokens = NULL;
	edge_auth_config ac;
	edge_rl *limits = NULL;
	edge_rl_config rlc;
	edge_gateway *gw = NULL;
	edge_http_server *http = NULL;
	struct app app = { 0 };
	trusted_nets *proxies = NULL;
	/* Per HTTP loop: account, auth, token, catalog. */
	rpc_channel **on_loops[N_BACKENDS] = { NULL };
	size_t n_loops = 0;
	edge_http_config hc;
	edge_gateway_config gc = { 0 };
	const char *origins[MAX_CORS_ORIGINS];
	char err[512], addr[300];
	sigset_t stop;
	int sig, rc = 1;

	if (cfg_load(config_vars, N_VARS, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, PROGRAM ": %s\n", err);
		return 2;
	}
	if (rpc_log_level_parse(cfg.log_level, &level) != 0) {
		fprintf(stderr, PROGRAM ": LOG_LEVEL: '%s' is not one of debug, "
			"info, warn, error\n", cfg.log_level);
		rc = 2;
		goto out_cfg;
	}
	if (!cfg.token_issuer[0] || !cfg.token_audience[0]) {
		fprintf(stderr, PROGRAM ": TOKEN_ISSUER and TOKEN_AUDIENCE must "
			"not be empty\n");
		rc = 2;
		goto out_cfg;
	}
	rpc_log_set_sink(rpc_log_json_sink, PROGRAM, level);
	cfg_log(config_vars, N_VARS, &cfg);

	/* Signals are taken by sigwait below; every thread started from here
	 * on inherits the mask. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	cfg_host_port(cfg.account_host, cfg.account_port, addr, sizeof(addr));
	account = rpc_channel_new(addr, NULL);
	cfg_host_port(cfg.auth_host, cfg.auth_port, addr, sizeof(addr));
	auth = rpc_channel_new(addr, NULL);
	cfg_host_port(cfg.token_host, cfg.token_port, addr, sizeof(addr));
	token = rpc_channel_new(addr, NULL);
	cfg_host_port(cfg.catalog_host, cfg.catalog_port, addr, sizeof(addr));
	catalog = rpc_channel_new(addr, NULL);
	if (!account || !auth || !token || !catalog) {
		rpc_log(RPC_LOG_ERROR, "main", "bad service address or no memory");
		goto out;
	}
	/* Bearer tokens are checked here against the token service's JWKS
	 * and revocation; the token service being down is not a reason to
	 * exit (tokens get 503 until it answers). */
	edge_auth_config_defaults(&ac);
	ac.token_channel = token;
	ac.issuer = cfg.token_issuer;
	ac.audience = cfg.token_audience;
	ac.jwks_refresh_ms = cfg.jwks_refresh_ms;
	ac.jwks_min_refresh_ms = cfg.jwks_min_refresh_ms;
	ac.revocation_cache_ms = cfg.revocation_cache_ms;
	if (ac.call_timeout_ms > cfg.request_timeout_ms)
		ac.call_timeout_ms = cfg.request_timeout_ms;
	tokens = edge_auth_new(&ac, err, sizeof(err));
	if (tokens == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "token checks: %s", err);
		goto out;
	}
	/* Rate limits in Redis; Redis being down is not a reason to exit
	 * (the limits fail open until it answers). */
	edge_rl_config_defaults(&rlc);
	rlc.redis_host = cfg.redis_host;
	rlc.redis_port = (int)cfg.redis_port;
	rlc.redis_password = cfg.redis_password;
	limits = edge_rl_new(&rlc, err, sizeof(err));
	if (limits == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "rate limits: %s", err);
		goto out;
	}
	proxies = trusted_nets_parse(cfg.trusted_proxies, err, sizeof(err));
	if (proxies == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "EDGE_TRUSTED_PROXIES: %s", err);
		rc = 2;
		goto out;
	}
	edge_http_config_defaults(&hc);
	hc.host = cfg.listen_host;
	hc.port = (int)cfg.port;
	hc.io_threads = (int)cfg.io_threads;
	hc.max_body_bytes = (size_t)cfg.max_body;
	hc.max_header_bytes = (size_t)cfg.max_header;
	hc.header_timeout_ms = (int)cfg.header_timeout_ms;
	hc.body_timeout_ms = (int)cfg.body_timeout_ms;
	hc.idle_timeout_ms = (int)cfg.idle_timeout_ms;
	hc.max_connections = (int)cfg.max_connections;
	hc.tls_cert_file = cfg.tls_cert_file[0] ? cfg.tls_cert_file : NULL;
	hc.tls_key_file = cfg.tls_key_file[0] ? cfg.tls_key_file : NULL;
	hc.tls_required = cfg.tls_required;
	http = edge_http_server_new(&hc, handle, &app, err, sizeof(err));
	if (http == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "HTTP server: %s", err);
		goto out;
	}
	/* Each HTTP loop calls the services over channels of its own: a
	 * request, its call and the reply stay on one thread. */
	n_loops = edge_http_server_loops(http);
	{
		const char *hosts[N_BACKENDS] = { cfg.account_host, cfg.auth_host,
						  cfg.token_host, cfg.catalog_host };
		long long ports[N_BACKENDS] = { cfg.account_port, cfg.auth_port,
						cfg.token_port, cfg.catalog_port };

		for (int b = 0; b < N_BACKENDS; b++) {
			cfg_host_port(hosts[b], ports[b], addr, sizeof(addr));
			on_loops[b] = loop_channels(http, addr);
			if (on_loops[b] == NULL) {
				rpc_log(RPC_LOG_ERROR, "main", "bad service address or no memory");
				goto out;
			}
		}
	}
	{
		const edge_backend backends[] = {
			{ &estore_account_v1_AccountService_service, account,
			  on_loops[0], n_loops },
			{ &estore_auth_v1_AuthService_service, auth, on_loops[1], n_loops },
			{ &estore_token_v1_TokenService_service, token, on_loops[2], n_loops },
			{ &estore_catalog_v1_CatalogService_service, catalog,
			  on_loops[3], n_loops },
		};

		gc.request_timeout_ms = cfg.request_timeout_ms;
		gc.cors_origins = origins;
		gc.n_cors_origins = split_origins(cfg.cors_origins, origins,
						  MAX_CORS_ORIGINS);
		gc.openapi_json = edge_openapi_json;
		gc.openapi_len = edge_openapi_json_len;
		gc.auth = tokens;
		gc.ratelimit = limits;
		gc.rate_login_per_min = cfg.rate_login;
		gc.rate_account_per_min = cfg.rate_account;
		gc.rate_anon_per_min = cfg.rate_anon;
		gc.trusted_proxies = proxies;
		gw = edge_gateway_new(&gc, backends,
				      sizeof(backends) / sizeof(backends[0]),
				      err, sizeof(err));
	}
	if (gw == NULL) {
		rpc_log(RPC_LOG_ERROR, "main", "routes: %s", err);
		goto out;
	}
	app.gw = gw;
	edge_gateway_set_server(gw, http);
	if (edge_http_server_start(http, err, sizeof(err)) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "HTTP server: %s", err);
		goto out;
	}
	cfg_host_port(cfg.listen_host, edge_http_server_port(http), addr,
		       sizeof(addr));
	rpc_log(RPC_LOG_INFO, "main", "listening on http://%s", addr);

	while (sigwait(&stop, &sig) != 0)
		;
	rpc_log(RPC_LOG_INFO, "main", "%s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	rc = 0;
out:
	/* Order: no new requests, answers for those in flight; the loops'
	 * channels (their calls end, cancelled if still running), which
	 * lets the gateway see nothing in flight; then the rest. */
	if (http)
		edge_http_server_shutdown(http, (int)cfg.drain_ms);
	for (int b = 0; b < N_BACKENDS; b++)
		loop_channels_free(on_loops[b], n_loops);
	edge_gateway_free(gw);
	edge_http_server_free(http);
	edge_auth_free(tokens);
	edge_rl_free(limits);
	trusted_nets_free(proxies);
	rpc_channel_free(account);
	rpc_channel_free(auth);
	rpc_channel_free(token);
	rpc_channel_free(catalog);
	rpc_log(RPC_LOG_INFO, "main", "stopped");
out_cfg:
	cfg_free(config_vars, N_VARS, &cfg);
	return rc;
}
