/*
 * http_echo.c - edge_http_server with a handler that describes each
 * request back as JSON, for test_http.py:
 *
 *   {"method", "path", "query", "body", "version", "tls", "peer", "headers": {...}}
 *
 * "headers" holds the ECHOED ones present (the contract looks headers up
 * by name; it has no iteration). Special paths:
 *   /slow?ms=N     answered after N ms from another thread
 *   /status/NNN    answered with status NNN
 *
 * Prints "listening on 127.0.0.1:PORT" and runs until SIGTERM/SIGINT,
 * then drains (--drain-ms) and exits 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "edge-proxy/http.h"

static const char *const ECHOED[] = {
	"host", "content-type", "content-length", "transfer-encoding",
	"expect", "connection", "user-agent", "x-test", "x-big",
};

static atomic_int slow_running;

static void respond_json(edge_http_request *r, int status, json_t *j)
{
	static const edge_http_header_kv hdrs[] = {
		{ "content-type", "application/json" },
	};
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	if (!text) {
		edge_http_respond(r, 500, NULL, 0, NULL, 0);
		return;
	}
	edge_http_respond(r, status, hdrs, 1, text, strlen(text));
	free(text);
}

static json_t *describe(const edge_http_request *r)
{
	json_t *j = json_object(), *h = json_object();
	size_t plen, qlen, blen;
	const char *path = edge_http_path(r, &plen);
	const char *query = edge_http_query(r, &qlen);
	const uint8_t *body = edge_http_body(r, &blen);
	json_t *b = body ? json_stringn((const char *)body, blen) : json_string("");

	if (!j || !h) {
		json_decref(j);
		json_decref(h);
		json_decref(b);
		return NULL;
	}
	json_object_set_new(j, "method", json_string(edge_http_method(r)));
	json_object_set_new(j, "path", json_stringn(path, plen));
	json_object_set_new(j, "query", query ? json_stringn(query, qlen) : json_null());
	/* A body that is not UTF-8 is described by its length only. */
	json_object_set_new(j, "body", b ? b : json_null());
	json_object_set_new(j, "body_len", json_integer((json_int_t)blen));
	json_object_set_new(j, "version", json_integer(edge_http_version(r)));
	json_object_set_new(j, "tls", json_boolean(edge_http_tls(r)));
	json_object_set_new(j, "peer", json_string(edge_http_peer(r)));
	for (size_t i = 0; i < sizeof(ECHOED) / sizeof(ECHOED[0]); i++) {
		const char *v = edge_http_header(r, ECHOED[i]);

		if (v)
			json_object_set_new(h, ECHOED[i], json_string(v));
	}
	json_object_set_new(j, "headers", h);
	return j;
}

struct slow {
	edge_http_request *req;
	long ms;
};

static void *slow_main(void *arg)
{
	struct slow *s = arg;
	struct timespec ts = { s->ms / 1000, (s->ms % 1000) * 1000000L };
	json_t *j;

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	j = describe(s->req);
	if (j)
		json_object_set_new(j, "cancelled",
				    json_boolean(edge_http_cancelled(s->req)));
	respond_json(s->req, 200, j);
	json_decref(j);
	free(s);
	atomic_fetch_sub(&slow_running, 1);
	return NULL;
}

static long query_ms(const edge_http_request *r)
{
	size_t qlen;
	const char *q = edge_http_query(r, &qlen);
	char buf[32];

	if (!q || qlen < 3 || qlen >= sizeof(buf) || strncmp(q, "ms=", 3) != 0)
		return 100;
	memcpy(buf, q + 3, qlen - 3);
	buf[qlen - 3] = 0;
	return strtol(buf, NULL, 10);
}

static void handler(edge_http_request *r, void *user)
{
	size_t plen;
	const char *path = edge_http_path(r, &plen);
	json_t *j;

	if (plen == 5 && memcmp(path, "/slow", 5) == 0) {
		struct slow *s = malloc(sizeof(*s));
		pthread_attr_t attr;
		pthread_t t;

		if (!s)
			goto now;
		s->req = r;
		s->ms = query_ms(r);
		atomic_fetch_add(&slow_running, 1);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, slow_main, s) != 0) {
			atomic_fetch_sub(&slow_running, 1);
			free(s);
			pthread_attr_destroy(&attr);
			goto now;
		}
		pthread_attr_destroy(&attr);
		return;
	}
	if (plen == 11 && memcmp(path, "/status/", 8) == 0) {
		char code[4] = { path[8], path[9], path[10], 0 };

		j = describe(r);
		respond_json(r, atoi(code), j);
		json_decref(j);
		return;
	}
now:
	j = describe(r);
	respond_json(r, 200, j);
	json_decref(j);
}

static int flag_int(const char *v, long min, long max, const char *name)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*end || n < min || n > max) {
		fprintf(stderr, "http_echo: bad %s: %s\n", name, v);
		exit(2);
	}
	return (int)n;
}

int main(int argc, char **argv)
{
	edge_http_config cfg;
	edge_http_server *srv;
	char err[256];
	int drain_ms = 5000, sig;
	sigset_t set;

	edge_http_config_defaults(&cfg);
	cfg.host = "127.0.0.1";
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v) {
			fprintf(stderr, "http_echo: %s needs a value\n", f);
			return 2;
		}
		i++;
		if (!strcmp(f, "--port"))
			cfg.port = flag_int(v, 0, 65535, f);
		else if (!strcmp(f, "--io-threads"))
			cfg.io_threads = flag_int(v, 1, 64, f);
		else if (!strcmp(f, "--max-body"))
			cfg.max_body_bytes = (size_t)flag_int(v, 0, 1 << 30, f);
		else if (!strcmp(f, "--max-header"))
			cfg.max_header_bytes = (size_t)flag_int(v, 64, 1 << 24, f);
		else if (!strcmp(f, "--header-timeout-ms"))
			cfg.header_timeout_ms = flag_int(v, 1, 1 << 30, f);
		else if (!strcmp(f, "--body-timeout-ms"))
			cfg.body_timeout_ms = flag_int(v, 1, 1 << 30, f);
		else if (!strcmp(f, "--idle-timeout-ms"))
			cfg.idle_timeout_ms = flag_int(v, 1, 1 << 30, f);
		else if (!strcmp(f, "--max-connections"))
			cfg.max_connections = flag_int(v, 1, 1 << 24, f);
		else if (!strcmp(f, "--max-streams"))
			cfg.max_streams = flag_int(v, 1, 1 << 20, f);
		else if (!strcmp(f, "--tls-cert"))
			cfg.tls_cert_file = v;
		else if (!strcmp(f, "--tls-key"))
			cfg.tls_key_file = v;
		else if (!strcmp(f, "--tls-required"))
			cfg.tls_required = flag_int(v, 0, 1, f) == 1;
		else if (!strcmp(f, "--drain-ms"))
			drain_ms = flag_int(v, 0, 1 << 30, f);
		else {
			fprintf(stderr, "http_echo: unknown flag %s\n", f);
			return 2;
		}
	}
	/* Blocked before any thread exists, so only sigwait sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	srv = edge_http_server_new(&cfg, handler, NULL, err, sizeof(err));
	if (!srv || edge_http_server_start(srv, err, sizeof(err)) != 0) {
		fprintf(stderr, "http_echo: %s\n", err);
		edge_http_server_free(srv);
		return 1;
	}
	printf("listening on 127.0.0.1:%d\n", edge_http_server_port(srv));
	fflush(stdout);
	sigwait(&set, &sig);
	edge_http_server_shutdown(srv, drain_ms);
	/* Slow handlers may still hold requests: their answers are refused
	 * (-1), but they must finish before the process leaves. */
	for (int i = 0; i < 1000 && atomic_load(&slow_running) > 0; i++)
		usleep(10000);
	edge_http_server_free(srv);
	return 0;
}
