/*
 * estore-catalog - serves estore.catalog.v1.CatalogService (plus health and
 * reflection) on LISTEN_HOST:CATALOG_SERVICE_PORT.
 *
 * Wiring only: configuration table → log sink, PostgreSQL pool, product
 * cache and search index with a change feed each, token service channel
 * (access tokens are validated there), server, dependency watcher; then
 * run until SIGTERM/SIGINT.
 *
 * PostgreSQL need not be up at start. The watcher's probe applies the
 * migrations first (retrying with backoff until they succeed) and only
 * then reports the database as reachable, so the service turns SERVING
 * only with its schema in place; until then calls answer UNAVAILABLE.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/channel.h"
#include "rpc/log.h"
#include "rpc/server.h"
#include "search_index.h"
#include "service.h"
#include "services/common/authn.h"
#include "services/common/config.h"
#include "services/common/deps.h"
#include "services/common/serve.h"
#include "services/common/pg.h"

#ifndef CATALOG_MIGRATIONS_DEFAULT_DIR
#define CATALOG_MIGRATIONS_DEFAULT_DIR "migrations"
#endif

#define SCHEMA "catalog"
#define SERVICE_NAME "estore.catalog.v1.CatalogService"

struct config {
	char *log_level;
	char *listen_host;
	long long port;
	long long metrics_port;
	long long io_threads;
	long long workers;
	char *db_host;
	long long db_port;
	char *db_user;
	char *db_password;
	char *db_name;
	long long db_pool_size;
	char *token_host;
	long long token_port;
	char *migrations_dir;
	long long cache_entries;
};

#define F(field) offsetof(struct config, field)
static const cfg_var config_vars[] = {
	{ "LOG_LEVEL", CFG_STRING, F(log_level), "info", 0, 0, false,
	  "debug, info, warn or error" },
	{ "LISTEN_HOST", CFG_STRING, F(listen_host), "0.0.0.0", 0, 0, false,
	  "address to listen on" },
	{ "CATALOG_SERVICE_PORT", CFG_INT, F(port), "50054", 0, 65535, false,
	  "port to listen on (0 = any free port, logged)" },
	{ "METRICS_PORT", CFG_INT, F(metrics_port), "0", -1, 65535, false,
	  "Prometheus /metrics port (0 = the gRPC port + 1000, -1 = off)" },
	{ "GRPC_IO_THREADS", CFG_INT, F(io_threads), "2", 1, 256, false,
	  "I/O threads" },
	{ "GRPC_WORKERS", CFG_INT, F(workers), "16", 1, 4096, false,
	  "handler threads" },
	{ "DB_HOST", CFG_STRING, F(db_host), "127.0.0.1", 0, 0, false,
	  "PostgreSQL host" },
	{ "DB_PORT", CFG_INT, F(db_port), "5432", 1, 65535, false,
	  "PostgreSQL port" },
	{ "DB_USER", CFG_STRING, F(db_user), "estore", 0, 0, false,
	  "PostgreSQL user" },
	{ "DB_PASSWORD", CFG_STRING, F(db_password), "", 0, 0, true,
	  "PostgreSQL password" },
	{ "DB_NAME", CFG_STRING, F(db_name), "estore", 0, 0, false,
	  "PostgreSQL database" },
	{ "DB_POOL_SIZE", CFG_INT, F(db_pool_size), "8", 1, 1024, false,
	  "PostgreSQL connections at most" },
	{ "TOKEN_SERVICE_HOST", CFG_STRING, F(token_host), "127.0.0.1", 0, 0,
	  false, "token service host (validates access tokens)" },
	{ "TOKEN_SERVICE_PORT", CFG_INT, F(token_port), "50052", 1, 65535,
	  false, "token service port" },
	{ "CATALOG_MIGRATIONS_DIR", CFG_STRING, F(migrations_dir),
	  CATALOG_MIGRATIONS_DEFAULT_DIR, 0, 0, false,
	  "directory of NNN_name.sql migrations" },
	{ "CATALOG_CACHE_ENTRIES", CFG_INT, F(cache_entries), "50000", 0,
	  10000000, false,
	  "products kept in the read cache at most (0 = no cache)" },
};
#undef F
#define N_VARS (sizeof(config_vars) / sizeof(config_vars[0]))

int main(void)
{
	static const char *const health_names[] = { SERVICE_NAME };
	struct config cfg = { 0 };
	rpc_server_config scfg;
	rpc_log_level level;
	rpc_server *srv = NULL;
	rpc_channel *token_ch = NULL;
	deps_watch *watch = NULL;
	cat_service svc = { 0 };
	pg_schema_probe probe = { 0 };
	cat_feed_hooks hooks;
	cat_feed *cache_feed = NULL, *search_feed = NULL;
	char err[512], addr[300], token_addr[300];
	char *conninfo = NULL;
	int rc = 1, lidx;

	/* Errors before the log sink exists go to stderr: there is no
	 * configured level yet to filter them with. */
	if (cfg_load(config_vars, N_VARS, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "estore-catalog: %s\n", err);
		return 2;
	}
	if (rpc_log_level_parse(cfg.log_level, &level) != 0) {
		fprintf(stderr, "estore-catalog: LOG_LEVEL: '%s' is not one of "
			"debug, info, warn, error\n", cfg.log_level);
		rc = 2;
		goto out_cfg;
	}
	rpc_log_set_sink(rpc_log_json_sink, "estore-catalog", level);
	cfg_log(config_vars, N_VARS, &cfg);

	conninfo = pg_conninfo(cfg.db_host, (int)cfg.db_port, cfg.db_user,
			       cfg.db_password, cfg.db_name);
	if (conninfo)
		svc.pool = pg_pool_new(conninfo, SCHEMA, (int)cfg.db_pool_size);
	svc.cache = prod_cache_new((size_t)cfg.cache_entries);
	svc.search = search_index_new();
	atomic_init(&svc.ready, false);
	cfg_host_port(cfg.token_host, cfg.token_port, token_addr,
		       sizeof(token_addr));
	token_ch = rpc_channel_new(token_addr, NULL);
	rpc_server_config_defaults(&scfg);
	scfg.io_threads = (int)cfg.io_threads;
	scfg.workers = (int)cfg.workers;
	srv = rpc_server_new(&scfg);
	if (!svc.pool || !svc.cache || !svc.search || !token_ch || !srv) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot create %s",
			!svc.pool ? "the database pool" :
			!svc.cache ? "the product cache" :
			!svc.search ? "the search index" :
			!token_ch ? "the token service channel" : "the server");
		goto out;
	}

	cfg_host_port(cfg.listen_host, cfg.port, addr, sizeof(addr));
	lidx = rpc_server_listen(srv, addr);
	if (lidx < 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot listen on %s: %s", addr,
			rpc_strerror(lidx));
		goto out;
	}
	authn_install_remote(srv, token_ch);
	if (cat_service_register(srv, &svc) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot register the service");
		goto out;
	}

	probe.pool = svc.pool;
	probe.conninfo = conninfo;
	probe.schema = SCHEMA;
	probe.migrations_dir = cfg.migrations_dir;
	probe.ready = &svc.ready;
	watch = deps_watch_new(srv, health_names, 1);
	/* Not ready until its search index is: a replica that starts beside
	 * a large catalog takes no traffic while it builds (about 30 s for
	 * a million products). Later rebuilds keep answering from the old
	 * index meanwhile. */
	if (!watch || deps_watch_add(watch, "postgres", pg_schema_probe_run, &probe) != 0 ||
	    deps_watch_add(watch, "search index", search_index_ready, svc.search) != 0) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot create the dependency watcher");
		goto out;
	}

	/* The cache stays off, and search answers UNAVAILABLE, until their
	 * feeds are connected and caught up. */
	if (cfg.cache_entries > 0) {
		prod_cache_feed_hooks(svc.cache, &hooks);
		cache_feed = cat_feed_start(conninfo, &hooks);
	}
	search_index_feed_hooks(svc.search, &hooks);
	search_feed = cat_feed_start(conninfo, &hooks);
	if ((cfg.cache_entries > 0 && !cache_feed) || !search_feed) {
		rpc_log(RPC_LOG_ERROR, "main", "cannot start the change feeds");
		goto out;
	}

	/* Migrate before listening when the database is there, so a normal
	 * start never shows SERVING without a schema. */
	(void)pg_schema_probe_run(&probe);
	rc = svc_serve(&(svc_serve_opts){
		.srv = srv,
		.listener = lidx,
		.listen_host = cfg.listen_host,
		.metrics_port = cfg.metrics_port,
		.watch = watch,
		.not_serving_at_start = !atomic_load(&svc.ready) ||
					!search_index_ready(svc.search),
		.service_name = SERVICE_NAME,
	});
out:
	/* The watcher writes health on the server: it goes first. The
	 * channel goes after the server, whose authenticator uses it; the
	 * cache after the server, whose handlers use it. */
	deps_watch_free(watch);
	rpc_server_free(srv);
	rpc_channel_free(token_ch);
	/* The feeds after the server, whose handlers read what they write. */
	cat_feed_stop(cache_feed);
	cat_feed_stop(search_feed);
	prod_cache_free(svc.cache);
	search_index_free(svc.search);
	pg_pool_free(svc.pool);
	free(conninfo);
out_cfg:
	cfg_free(config_vars, N_VARS, &cfg);
	return rc;
}
