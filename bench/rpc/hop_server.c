/*
 * hop_server - one service-to-service hop, for the RPC benchmark: serves
 * estore.testing.v1.Echo/UnaryEcho by calling the same method on a
 * downstream server through our client channel, with the blocking stub,
 * from inside the handler (on a worker thread, as a service calling
 * another service does). The caller's deadline is propagated.
 *
 * h2load against this server versus directly against the downstream
 * estore-echo gives the latency one hop adds.
 *
 * Usage: hop_server --downstream HOST:PORT [--listen ADDR]
 *                   [--io-threads N] [--workers N]
 * Prints "listening on HOST:PORT" once it accepts calls; runs until
 * SIGTERM/SIGINT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estore/testing/v1/echo.rpc.h"
#include "rpc/channel.h"
#include "rpc/server.h"

static rpc_code relay_unary_echo(rpc_ctx *ctx,
				 const Estore__Testing__V1__EchoRequest *in,
				 Estore__Testing__V1__EchoReply *out)
{
	rpc_channel *ch = rpc_ctx_user(ctx);
	rpc_call_opts opts = { .deadline_ns = rpc_ctx_deadline(ctx) };
	Estore__Testing__V1__EchoReply *resp = NULL;
	rpc_status st = { 0 };
	rpc_code code;

	code = estore_testing_v1_Echo_unary_echo(ch, &opts, in, &resp, &st);
	if (code != RPC_OK) {
		code = rpc_ctx_error(ctx, code, "downstream: %s",
				     st.message ? st.message : rpc_code_name(code));
		rpc_status_dispose(&st);
		return code;
	}
	/* The reply must outlive this function: copy into the call's arena
	 * and give the downstream reply back at once. */
	out->message = rpc_arena_strdup(rpc_ctx_arena(ctx), resp->message);
	out->payload.len = resp->payload.len;
	out->payload.data = NULL;
	if (resp->payload.len > 0) {
		out->payload.data = rpc_arena_alloc(rpc_ctx_arena(ctx),
						    resp->payload.len);
		if (out->payload.data != NULL)
			memcpy(out->payload.data, resp->payload.data,
			       resp->payload.len);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	rpc_status_dispose(&st);
	if (out->message == NULL ||
	    (out->payload.len > 0 && out->payload.data == NULL))
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	return RPC_OK;
}

static void usage(void)
{
	fputs("usage: hop_server --downstream HOST:PORT [--listen ADDR] "
	      "[--io-threads N] [--workers N]\n", stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:0", *downstream = NULL;
	static const estore_testing_v1_Echo_impl impl = {
		.unary_echo = relay_unary_echo,
	};
	rpc_server_config cfg;
	rpc_server *srv = NULL;
	rpc_channel *ch = NULL;
	int idx, rv, rc = 1;

	rpc_server_config_defaults(&cfg);
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--downstream") == 0)
			downstream = argv[++i];
		else if (strcmp(argv[i], "--listen") == 0)
			listen = argv[++i];
		else if (strcmp(argv[i], "--io-threads") == 0)
			cfg.io_threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--workers") == 0)
			cfg.workers = atoi(argv[++i]);
		else
			usage();
	}
	if (downstream == NULL || cfg.io_threads < 1 || cfg.workers < 1)
		usage();

	ch = rpc_channel_new(downstream, NULL);
	srv = rpc_server_new(&cfg);
	if (ch == NULL || srv == NULL) {
		fputs("hop_server: cannot create the channel or the server\n", stderr);
		goto out;
	}
	idx = rpc_server_listen(srv, listen);
	if (idx < 0) {
		fprintf(stderr, "hop_server: cannot listen on %s: %s\n", listen,
			rpc_strerror(idx));
		goto out;
	}
	rv = estore_testing_v1_Echo_register(srv, &impl, ch);
	if (rv == 0)
		rv = rpc_server_start(srv);
	if (rv < 0) {
		fprintf(stderr, "hop_server: cannot start: %s\n", rpc_strerror(rv));
		goto out;
	}
	{
		char host[256];
		const char *colon = strrchr(listen, ':');
		int n = colon ? (int)(colon - listen) : 0;

		snprintf(host, sizeof(host), "%.*s", n, listen);
		printf("listening on %s:%d\n", host, rpc_server_port(srv, idx));
		fflush(stdout);
	}
	rc = rpc_server_run_until_signal(srv);
out:
	/* The server first: its handlers may still be inside the channel. */
	rpc_server_free(srv);
	rpc_channel_free(ch);
	return rc;
}
