/*
 * estore-health - asks a server's grpc.health.v1.Health/Check whether it
 * is SERVING. For compose healthchecks and ./estore up, which need a
 * probe that speaks gRPC without grpcurl or Python.
 *
 *   estore-health [--timeout-ms N] ADDR [SERVICE]
 *
 * Exit 0 when SERVING; 1 otherwise with one line on stderr saying why;
 * 2 on a usage error.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.rpc.h"
#include "rpc/channel.h"
#include "rpc/status.h"

static const char usage_text[] =
	"usage: estore-health [--timeout-ms N] ADDR [SERVICE]\n"
	"  ADDR             host:port of a gRPC server (e.g. 127.0.0.1:50051)\n"
	"  SERVICE          a service name (e.g. estore.account.v1.AccountService);\n"
	"                   default \"\", the whole server\n"
	"  --timeout-ms N   give up after N ms (default 2000)\n"
	"exit status: 0 SERVING, 1 anything else, 2 usage error\n";

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "estore-health: %s\n", why);
	fputs(usage_text, stderr);
	return 2;
}

static const char *status_name(int s)
{
	switch (s) {
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING:
		return "SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING:
		return "NOT_SERVING";
	case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
		return "SERVICE_UNKNOWN";
	default:
		return "UNKNOWN";
	}
}

int main(int argc, char **argv)
{
	const char *addr = NULL, *service = "";
	long timeout_ms = 2000;
	rpc_channel_config cfg;
	rpc_channel *ch;
	rpc_call_opts opts = { 0 };
	rpc_status st = { 0 };
	Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *resp = NULL;
	rpc_code code;
	int n_pos = 0, rc;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			fputs(usage_text, stdout);
			return 0;
		}
		if (strcmp(a, "--timeout-ms") == 0) {
			char *end;

			if (i + 1 >= argc)
				return usage("--timeout-ms needs a value");
			errno = 0;
			timeout_ms = strtol(argv[++i], &end, 10);
			if (errno != 0 || end == argv[i] || *end != '\0' ||
			    timeout_ms < 1 || timeout_ms > INT_MAX)
				return usage("--timeout-ms expects a positive integer");
			continue;
		}
		if (a[0] == '-' && a[1] == '-')
			return usage("unknown option");
		if (n_pos == 0)
			addr = a;
		else if (n_pos == 1)
			service = a;
		else
			return usage("too many arguments");
		n_pos++;
	}
	if (!addr)
		return usage("ADDR is required");

	rpc_channel_config_defaults(&cfg);
	cfg.connect_timeout_ms = (int)timeout_ms;
	/* One look, no retries: the caller (a healthcheck loop) retries. */
	cfg.max_retries = 0;
	ch = rpc_channel_new(addr, &cfg);
	if (!ch) {
		fprintf(stderr, "estore-health: %s: not a host:port address\n",
			addr);
		return 2;
	}
	req.service = (char *)service;
	opts.timeout_ms = timeout_ms;
	code = grpc_health_v1_Health_check(ch, &opts, &req, &resp, &st);
	if (code != RPC_OK) {
		fprintf(stderr, "estore-health: %s: %s%s%s\n", addr,
			rpc_code_name(code), st.message ? ": " : "",
			st.message ? st.message : "");
		rc = 1;
	} else if (resp->status !=
		   GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
		fprintf(stderr, "estore-health: %s%s%s: %s\n", addr,
			*service ? " " : "", service, status_name(resp->status));
		rc = 1;
	} else {
		rc = 0;
	}
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	rpc_status_dispose(&st);
	rpc_channel_free(ch);
	return rc;
}
