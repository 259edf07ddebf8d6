/*
 * estore-echo - serves estore.testing.v1.Echo (plus health and reflection)
 * for tests, benchmarks and probing by hand.
 *
 * Wiring only: flags → server config, listeners, the Echo service, run
 * until SIGTERM/SIGINT. For each listener it prints one line
 * "listening on HOST:PORT" on stdout once the server accepts calls, so a
 * test that asked for port 0 learns the port it got.
 */
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "echo_service.h"
#include "test_tokens.h"
#include "rpc/log.h"
#include "rpc/server.h"

#define MAX_LISTENERS 8

static const char usage_text[] =
	"usage: estore-echo --listen ADDR [--listen ADDR]... [options]\n"
	"  --listen ADDR             127.0.0.1:PORT, [::1]:PORT, :PORT ... (PORT 0 = any free port)\n"
	"  --io-threads N            I/O threads (default 2)\n"
	"  --workers N               handler threads (default 16)\n"
	"  --header-timeout-ms N     preface and request headers must complete within N ms\n"
	"  --idle-timeout-ms N       close a connection idle for N ms\n"
	"  --settings-timeout-ms N   GOAWAY when our SETTINGS are not acknowledged in N ms\n"
	"  --drain-timeout-ms N      at shutdown, wait up to N ms for in-flight calls\n"
	"  --no-inline               run UnaryEcho on the workers too (to measure inline)\n"
	"  --test-tokens             accept test bearer tokens \"test:SUBJECT:ROLES\" (tests only)\n";

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("estore-echo: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	fputs(usage_text, stderr);
	exit(2);
}

/* Strictly a decimal integer in [min, max]: a typo in a timeout must fail at
 * start, not silently become 0. */
static int parse_int(const char *flag, const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "estore-echo: %s expects an integer in %ld..%ld, got '%s'\n",
			flag, min, max, s);
		fputs(usage_text, stderr);
		exit(2);
	}
	return (int)v;
}

/* The host part of a listen address ("127.0.0.1" of "127.0.0.1:0",
 * "[::1]" of "[::1]:0"), written to out. */
static void host_part(const char *addr, char *out, size_t cap)
{
	const char *colon = strrchr(addr, ':');
	size_t n = colon != NULL ? (size_t)(colon - addr) : strlen(addr);

	if (n == 0) {
		/* ":PORT" listens on every address, like "[::]:PORT". */
		snprintf(out, cap, "[::]");
		return;
	}
	if (n >= cap)
		n = cap - 1;
	memcpy(out, addr, n);
	out[n] = '\0';
}

int main(int argc, char **argv)
{
	const char *addrs[MAX_LISTENERS];
	int n_listen = 0;
	rpc_server_config cfg;
	rpc_server *srv;
	int lidx[MAX_LISTENERS];
	bool test_tokens = false;
	int rc;

	rpc_server_config_defaults(&cfg);
	for (int i = 1; i < argc; i++) {
		const char *flag = argv[i];

		if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
			fputs(usage_text, stdout);
			return 0;
		}
		if (strcmp(flag, "--no-inline") == 0) {
			cfg.no_inline = true;
			continue;
		}
		if (strcmp(flag, "--test-tokens") == 0) {
			test_tokens = true;
			continue;
		}
		if (flag[0] != '-' || flag[1] != '-')
			usage_error("unexpected argument '%s'", flag);
		if (i + 1 >= argc)
			usage_error("%s needs a value", flag);
		const char *val = argv[++i];

		if (strcmp(flag, "--listen") == 0) {
			if (n_listen == MAX_LISTENERS)
				usage_error("at most %d --listen flags (got '%s' too)",
					    MAX_LISTENERS, val);
			addrs[n_listen++] = val;
		} else if (strcmp(flag, "--io-threads") == 0) {
			cfg.io_threads = parse_int(flag, val, 1, 256);
		} else if (strcmp(flag, "--workers") == 0) {
			cfg.workers = parse_int(flag, val, 1, 4096);
		} else if (strcmp(flag, "--header-timeout-ms") == 0) {
			cfg.header_timeout_ms = parse_int(flag, val, 1, INT_MAX);
		} else if (strcmp(flag, "--idle-timeout-ms") == 0) {
			cfg.idle_timeout_ms = parse_int(flag, val, 1, INT_MAX);
		} else if (strcmp(flag, "--settings-timeout-ms") == 0) {
			cfg.settings_ack_timeout_ms = parse_int(flag, val, 1, INT_MAX);
		} else if (strcmp(flag, "--drain-timeout-ms") == 0) {
			cfg.drain_timeout_ms = parse_int(flag, val, 0, INT_MAX);
		} else {
			usage_error("unknown option '%s'", flag);
		}
	}
	if (n_listen == 0)
		usage_error("--listen ADDR is required");

	rpc_log_set_sink(rpc_log_json_sink, "estore-echo", RPC_LOG_INFO);

	srv = rpc_server_new(&cfg);
	if (srv == NULL) {
		fputs("estore-echo: out of memory creating the server\n", stderr);
		return 1;
	}
	for (int i = 0; i < n_listen; i++) {
		lidx[i] = rpc_server_listen(srv, addrs[i]);
		if (lidx[i] < 0) {
			fprintf(stderr, "estore-echo: cannot listen on %s: %s\n",
				addrs[i], rpc_strerror(lidx[i]));
			/* A malformed address is a usage error; a taken port is
			 * a runtime failure. */
			rpc_server_free(srv);
			return lidx[i] == RPC_ERR_INVALID ? 2 : 1;
		}
	}
	if (test_tokens)
		rpc_server_set_authenticator(srv, test_tokens_authenticate, NULL);
	rc = echo_service_register(srv);
	if (rc < 0) {
		fprintf(stderr, "estore-echo: cannot register Echo: %s\n",
			rpc_strerror(rc));
		rpc_server_free(srv);
		return 1;
	}
	rc = rpc_server_start(srv);
	if (rc < 0) {
		fprintf(stderr, "estore-echo: cannot start: %s\n",
			rpc_strerror(rc));
		rpc_server_free(srv);
		return 1;
	}

	/* Printed only after start, so a test that sees the line can call. */
	for (int i = 0; i < n_listen; i++) {
		char host[256];

		host_part(addrs[i], host, sizeof(host));
		printf("listening on %s:%d\n", host,
		       rpc_server_port(srv, lidx[i]));
	}
	fflush(stdout);

	rc = rpc_server_run_until_signal(srv);
	rpc_server_free(srv);
	return rc;
}
