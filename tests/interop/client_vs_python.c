/*
 * client_vs_python.c - our client channel (rpc/channel.c) against a stock
 * gRPC server: python3-grpcio running tests/interop/echo_server.py.
 *
 *   interop_client_vs_python --python /usr/bin/python3 \
 *       --server tests/interop/echo_server.py --proto-path proto \
 *       [--protoc protoc] [--grpc-python-plugin PATH]
 *
 * The server is started on a port the kernel picks, killed by its PID
 * (SIGKILL, to look like a crash) and restarted on the same port to check
 * that the channel recovers. Exits 0 when every check passed.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "estore/testing/v1/echo.pb-c.h"
#include "estore/testing/v1/echo.rpc.h"
#include "rpc/channel.h"
#include "rpc/log.h"
#include "rpc/loop.h"

typedef Estore__Testing__V1__EchoRequest EchoRequest;
typedef Estore__Testing__V1__EchoReply EchoReply;
typedef Estore__Testing__V1__StreamRequest StreamRequest;

static int failures;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			failures++;                                       \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,     \
				__LINE__, #cond);                         \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
		}                                                         \
	} while (0)

static const char *opt_python = "/usr/bin/python3";
static const char *opt_server;
static const char *opt_proto;
static const char *opt_protoc = "protoc";
static const char *opt_plugin = "/usr/bin/grpc_python_plugin";

static const rpc_method_desc *M_UNARY = &estore_testing_v1_Echo_methods[0];
static const rpc_method_desc *M_SSTREAM = &estore_testing_v1_Echo_methods[1];
static const rpc_method_desc *M_CSTREAM = &estore_testing_v1_Echo_methods[2];
static const rpc_method_desc *M_BIDI = &estore_testing_v1_Echo_methods[3];

/* ---- the python server ------------------------------------------------ */

static pid_t server_pid = -1;

static void server_kill(int sig)
{
	if (server_pid <= 0)
		return;
	kill(server_pid, sig);
	waitpid(server_pid, NULL, 0);
	server_pid = -1;
}

static void server_kill_atexit(void)
{
	server_kill(SIGKILL);
}

/* Starts echo_server.py on `port` (0 = any); returns the bound port or -1. */
static int server_start(int port)
{
	char portarg[16];
	int fds[2];
	char line[64];
	size_t have = 0;
	long long until = rpc_now_ns() + 60LL * 1000000000LL;

	snprintf(portarg, sizeof(portarg), "%d", port);
	if (pipe(fds) != 0)
		return -1;
	server_pid = fork();
	if (server_pid < 0)
		return -1;
	if (server_pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		execl(opt_python, opt_python, opt_server, "--proto-path", opt_proto,
		      "--port", portarg, "--protoc", opt_protoc,
		      "--grpc-python-plugin", opt_plugin, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	/* The port line, bounded in time: a broken server must fail the test,
	 * not hang it. */
	while (have < sizeof(line) - 1 && rpc_now_ns() < until) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 500) <= 0)
			continue;
		n = read(fds[0], line + have, sizeof(line) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		line[have] = '\0';
		if (strchr(line, '\n'))
			break;
	}
	close(fds[0]);
	line[have] = '\0';
	port = atoi(line);
	if (port <= 0) {
		fprintf(stderr, "server did not report a port (got '%s')\n", line);
		server_kill(SIGKILL);
		return -1;
	}
	return port;
}

/* ---- helpers ----------------------------------------------------------- */

/* The channel's connection events, interleaved with our results: what a
 * reader of a failed ctest log needs. */
static void log_to_stderr(void *user, rpc_log_level level,
			  const char *component, const char *request_id,
			  const rpc_log_field *fields, size_t n_fields,
			  const char *message)
{
	(void)user;
	(void)request_id;
	(void)fields;
	(void)n_fields;
	fprintf(stderr, "  [%d %s] %s\n", (int)level, component, message);
}

static double ms_since(long long t0)
{
	return (double)(rpc_now_ns() - t0) / 1e6;
}

static rpc_code unary(rpc_channel *ch, const rpc_method_desc *m,
		      const rpc_call_opts *opts, const EchoRequest *req,
		      EchoReply **reply, rpc_status *st)
{
	ProtobufCMessage *resp = NULL;
	rpc_code code = rpc_channel_call(ch, m, opts, &req->base, &resp, st);

	*reply = (EchoReply *)resp;
	return code;
}

static void reply_free(EchoReply *r)
{
	if (r)
		protobuf_c_message_free_unpacked(&r->base, NULL);
}

static bool md_has(const rpc_metadata *md, const char *key, const void *val,
		   size_t len)
{
	const rpc_md_entry *e = rpc_metadata_get(md, key);

	return e && e->value_len == len && memcmp(e->value, val, len) == 0;
}

/* ---- checks ------------------------------------------------------------ */

static void test_unary(rpc_channel *ch)
{
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	uint8_t payload[3] = {0, 0xff, 7};
	rpc_call_opts opts = {.timeout_ms = 5000};
	rpc_status st = {0};
	EchoReply *r = NULL;
	rpc_code code;

	req.message = "hello";
	req.payload.data = payload;
	req.payload.len = sizeof(payload);
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	CHECK(code == RPC_OK, "code %s: %s", rpc_code_name(code),
	      st.message ? st.message : "");
	CHECK(r && strcmp(r->message, "hello") == 0, "reply message");
	CHECK(r && r->payload.len == 3 && memcmp(r->payload.data, payload, 3) == 0,
	      "reply payload");
	reply_free(r);
	rpc_status_dispose(&st);

	/* The generated typed stub goes through the same path. */
	r = NULL;
	req.message = "typed";
	code = estore_testing_v1_Echo_unary_echo(ch, NULL, &req, &r, NULL);
	CHECK(code == RPC_OK && r && strcmp(r->message, "typed") == 0,
	      "typed stub: %s", rpc_code_name(code));
	reply_free(r);
}

static void test_error_status(rpc_channel *ch)
{
	/* Non-ASCII and '%' so that percent-encoding must round-trip. */
	static const char msg[] = "n\xc3\xa9 tr\xc3\xb6v\xc3\xa9 100% \xe6\x97\xa5\xe6\x9c\xac \xe2\x9c\x93";
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_status st = {0};
	EchoReply *r = NULL;
	rpc_code code;

	req.status_code = RPC_NOT_FOUND;
	req.status_message = (char *)msg;
	code = unary(ch, M_UNARY, NULL, &req, &r, &st);
	CHECK(code == RPC_NOT_FOUND, "code %s", rpc_code_name(code));
	CHECK(st.code == RPC_NOT_FOUND, "status code");
	CHECK(st.message && strcmp(st.message, msg) == 0, "message '%s'",
	      st.message ? st.message : "(null)");
	CHECK(r == NULL, "no reply on error");
	rpc_status_dispose(&st);
}

static void test_unimplemented(rpc_channel *ch)
{
	rpc_method_desc m = *M_UNARY;
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_status st = {0};
	EchoReply *r = NULL;
	rpc_code code;

	m.path = "/estore.testing.v1.Echo/NoSuchMethod";
	code = unary(ch, &m, NULL, &req, &r, &st);
	CHECK(code == RPC_UNIMPLEMENTED, "code %s", rpc_code_name(code));
	reply_free(r);
	rpc_status_dispose(&st);
}

static void test_deadline(rpc_channel *ch)
{
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 200};
	rpc_status st = {0};
	EchoReply *r = NULL;
	long long t0 = rpc_now_ns();
	rpc_code code;
	double ms;

	req.sleep_ms = 3000;
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	ms = ms_since(t0);
	CHECK(code == RPC_DEADLINE_EXCEEDED, "code %s", rpc_code_name(code));
	CHECK(ms >= 150 && ms < 1500, "took %.0f ms for a 200 ms deadline", ms);
	reply_free(r);
	rpc_status_dispose(&st);

	/* The server sees the deadline (grpc-timeout), a little less than
	 * what we set, never more. */
	{
		rpc_metadata md, hdrs;
		const rpc_md_entry *e;
		rpc_call_opts o2 = {.timeout_ms = 4000};

		rpc_metadata_init(&md);
		rpc_metadata_init(&hdrs);
		rpc_metadata_add(&md, "x-want-deadline", "1", 1);
		o2.metadata = &md;
		o2.headers_out = &hdrs;
		req.sleep_ms = 0;
		code = unary(ch, M_UNARY, &o2, &req, &r, &st);
		e = rpc_metadata_get(&hdrs, "x-deadline-ms");
		CHECK(code == RPC_OK && e && atoi((const char *)e->value) > 2000 &&
		      atoi((const char *)e->value) <= 4000,
		      "server-side deadline %s", e ? (const char *)e->value : "missing");
		reply_free(r);
		r = NULL;
		rpc_status_dispose(&st);
		rpc_metadata_dispose(&md);
		rpc_metadata_dispose(&hdrs);
		req.sleep_ms = 3000;
	}

	/* An absolute deadline (propagation) wins over timeout_ms. */
	opts.timeout_ms = 60000;
	opts.deadline_ns = rpc_now_ns() + 150LL * 1000000;
	t0 = rpc_now_ns();
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	ms = ms_since(t0);
	CHECK(code == RPC_DEADLINE_EXCEEDED && ms < 1500, "abs deadline: %s %.0f ms",
	      rpc_code_name(code), ms);
	reply_free(r);
	rpc_status_dispose(&st);

	/* The channel is still healthy after cancelling streams. */
	req.sleep_ms = 0;
	req.message = "after";
	opts.deadline_ns = 0;
	opts.timeout_ms = 5000;
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	CHECK(code == RPC_OK, "after deadline: %s", rpc_code_name(code));
	reply_free(r);
	rpc_status_dispose(&st);
}

static void test_metadata(rpc_channel *ch)
{
	static const uint8_t bin[] = {0x00, 0x01, 0xfe, 0xff, '=', '\n'};
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_metadata md, hdrs, trls;
	rpc_call_opts opts = {.timeout_ms = 5000};
	rpc_status st = {0};
	EchoReply *r = NULL;
	rpc_code code;

	rpc_metadata_init(&md);
	rpc_metadata_init(&hdrs);
	rpc_metadata_init(&trls);
	CHECK(rpc_metadata_add(&md, "x-text", "hello world", 11) == 0, "add");
	CHECK(rpc_metadata_add(&md, "x-data-bin", bin, sizeof(bin)) == 0, "add bin");
	opts.metadata = &md;
	opts.headers_out = &hdrs;
	opts.trailers_out = &trls;
	req.message = "md";
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	CHECK(code == RPC_OK, "code %s", rpc_code_name(code));
	CHECK(md_has(&hdrs, "x-text", "hello world", 11), "header x-text");
	CHECK(md_has(&hdrs, "x-data-bin", bin, sizeof(bin)), "header x-data-bin");
	CHECK(md_has(&trls, "trailer-x-text", "hello world", 11), "trailer x-text");
	CHECK(md_has(&trls, "trailer-x-data-bin", bin, sizeof(bin)),
	      "trailer x-data-bin");
	CHECK(rpc_metadata_get(&hdrs, "content-type") == NULL &&
	      rpc_metadata_get(&trls, "grpc-status") == NULL,
	      "protocol headers are not metadata");
	reply_free(r);
	rpc_status_dispose(&st);

	/* Trailers-only (error before any reply): metadata are trailers. */
	rpc_metadata_dispose(&hdrs);
	rpc_metadata_dispose(&trls);
	rpc_metadata_init(&hdrs);
	rpc_metadata_init(&trls);
	req.status_code = RPC_PERMISSION_DENIED;
	req.status_message = "no";
	r = NULL;
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	CHECK(code == RPC_PERMISSION_DENIED, "code %s", rpc_code_name(code));
	CHECK(md_has(&trls, "trailer-x-text", "hello world", 11),
	      "trailer on error");
	reply_free(r);
	rpc_status_dispose(&st);
	rpc_metadata_dispose(&md);
	rpc_metadata_dispose(&hdrs);
	rpc_metadata_dispose(&trls);
}

static void test_max_recv(const char *target)
{
	rpc_channel_config cfg;
	rpc_channel *small;
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_status st = {0};
	EchoReply *r = NULL;
	rpc_code code;

	rpc_channel_config_defaults(&cfg);
	cfg.max_recv_msg = 1024;
	small = rpc_channel_new(target, &cfg);
	CHECK(small != NULL, "channel");
	if (!small)
		return;
	req.reply_bytes = 4096;
	code = unary(small, M_UNARY, NULL, &req, &r, &st);
	CHECK(code == RPC_RESOURCE_EXHAUSTED, "code %s", rpc_code_name(code));
	reply_free(r);
	rpc_status_dispose(&st);
	req.reply_bytes = 512;
	r = NULL;
	code = unary(small, M_UNARY, NULL, &req, &r, &st);
	CHECK(code == RPC_OK && r && r->payload.len == 512, "small reply: %s",
	      rpc_code_name(code));
	reply_free(r);
	rpc_status_dispose(&st);
	rpc_channel_free(small);
}

struct async_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int pending;
	int ok;
	int bad;
	bool on_loop_thread;
};

static void async_done(void *user, rpc_code code, const char *message,
		       ProtobufCMessage *resp)
{
	struct async_wait *w = user;
	EchoReply *r = (EchoReply *)resp;

	(void)message;
	pthread_mutex_lock(&w->mu);
	if (code == RPC_OK && r && strcmp(r->message, "async") == 0)
		w->ok++;
	else
		w->bad++;
	w->pending--;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
}

/* n calls in flight at once, each holding its stream for sleep_ms: beyond
 * the server's 16 streams the channel must queue, not overrun. */
static void test_async(rpc_channel *ch, int n, long long sleep_ms)
{
	struct async_wait w = {.pending = n};
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 20000};
	struct timespec until;

	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	req.message = "async";
	req.sleep_ms = sleep_ms;
	for (int i = 0; i < n; i++) {
		int rv = rpc_channel_call_async(ch, M_UNARY, &opts, &req.base,
						async_done, &w);
		CHECK(rv == 0, "async start %d", rv);
		if (rv != 0) {
			pthread_mutex_lock(&w.mu);
			w.pending--;
			pthread_mutex_unlock(&w.mu);
		}
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	pthread_mutex_lock(&w.mu);
	while (w.pending > 0)
		if (pthread_cond_timedwait(&w.cv, &w.mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&w.mu);
	CHECK(w.pending == 0 && w.ok == n, "async: %d ok, %d bad, %d pending of %d",
	      w.ok, w.bad, w.pending, n);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

struct worker {
	rpc_channel *ch;
	int id;
	int calls;
	int ok;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char msg[32];

	for (int i = 0; i < w->calls; i++) {
		EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
		rpc_call_opts opts = {.timeout_ms = 10000};
		EchoReply *r = NULL;
		rpc_code code;

		snprintf(msg, sizeof(msg), "w%d-%d", w->id, i);
		req.message = msg;
		code = unary(w->ch, M_UNARY, &opts, &req, &r, NULL);
		if (code == RPC_OK && r && strcmp(r->message, msg) == 0)
			w->ok++;
		reply_free(r);
	}
	return NULL;
}

static void test_concurrent(rpc_channel *ch)
{
	enum { THREADS = 8, PER = 25 };
	struct worker w[THREADS];
	pthread_t t[THREADS];
	int ok = 0;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.ch = ch, .id = i, .calls = PER};
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		ok += w[i].ok;
	}
	CHECK(ok == THREADS * PER, "%d of %d concurrent calls succeeded", ok,
	      THREADS * PER);
}

static void test_server_stream(rpc_channel *ch)
{
	StreamRequest req = ESTORE__TESTING__V1__STREAM_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 10000};
	rpc_client_stream *s;
	ProtobufCMessage *m;
	rpc_status st = {0};
	rpc_code code;
	int n = 0, rv;

	req.message = "s";
	req.count = 5;
	req.reply_bytes = 100000; /* several DATA frames per reply */
	s = rpc_channel_open(ch, M_SSTREAM, &opts);
	CHECK(s != NULL, "open");
	if (!s)
		return;
	CHECK(rpc_client_stream_send(s, &req.base) == 0, "send");
	CHECK(rpc_client_stream_close_send(s) == 0, "close_send");
	CHECK(rpc_client_stream_send(s, &req.base) == RPC_ERR_CLOSED,
	      "send after close_send");
	while ((rv = rpc_client_stream_recv(s, &m)) == 1) {
		EchoReply *r = (EchoReply *)m;
		CHECK(r->index == n && r->payload.len == 100000, "reply %d", n);
		n++;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	CHECK(rv == 0, "recv end %d", rv);
	CHECK(n == 5, "got %d replies", n);
	code = rpc_client_stream_finish(s, &st);
	CHECK(code == RPC_OK, "finish %s", rpc_code_name(code));
	rpc_status_dispose(&st);

	/* Replies, then an error status. */
	req.reply_bytes = 0;
	req.count = 2;
	req.status_code = RPC_ABORTED;
	req.status_message = "stop";
	s = estore_testing_v1_Echo_server_stream_open(ch, &opts);
	CHECK(s && estore_testing_v1_Echo_server_stream_client_send(s, &req) == 0,
	      "typed open/send");
	if (!s)
		return;
	rpc_client_stream_close_send(s);
	n = 0;
	while ((rv = rpc_client_stream_recv(s, &m)) == 1) {
		n++;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	CHECK(n == 2 && rv == RPC_ERR_CLOSED, "n %d rv %d", n, rv);
	code = rpc_client_stream_finish(s, &st);
	CHECK(code == RPC_ABORTED && st.message && strcmp(st.message, "stop") == 0,
	      "finish %s", rpc_code_name(code));
	rpc_status_dispose(&st);

	/* Abandoned mid-stream: finish cancels, the channel stays usable. */
	req.count = 1000;
	req.interval_ms = 10;
	req.status_code = 0;
	s = rpc_channel_open(ch, M_SSTREAM, &opts);
	if (!s)
		return;
	rpc_client_stream_send(s, &req.base);
	rpc_client_stream_close_send(s);
	rv = rpc_client_stream_recv(s, &m);
	CHECK(rv == 1, "first reply %d", rv);
	if (rv == 1)
		protobuf_c_message_free_unpacked(m, NULL);
	code = rpc_client_stream_finish(s, &st);
	CHECK(code == RPC_CANCELLED, "cancel: %s", rpc_code_name(code));
	rpc_status_dispose(&st);
}

static void test_client_and_bidi(rpc_channel *ch)
{
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 10000};
	const char *parts[] = {"a", "b", "c"};
	rpc_client_stream *s;
	ProtobufCMessage *m = NULL;
	rpc_status st = {0};
	rpc_code code;
	int rv;

	s = rpc_channel_open(ch, M_CSTREAM, &opts);
	if (!s) {
		CHECK(0, "open");
		return;
	}
	for (int i = 0; i < 3; i++) {
		req.message = (char *)parts[i];
		CHECK(rpc_client_stream_send(s, &req.base) == 0, "send %d", i);
	}
	rpc_client_stream_close_send(s);
	rv = rpc_client_stream_recv(s, &m);
	CHECK(rv == 1 && strcmp(((EchoReply *)m)->message, "abc") == 0 &&
	      ((EchoReply *)m)->index == 3, "client stream reply");
	if (rv == 1)
		protobuf_c_message_free_unpacked(m, NULL);
	code = rpc_client_stream_finish(s, &st);
	CHECK(code == RPC_OK, "client stream %s", rpc_code_name(code));
	rpc_status_dispose(&st);

	/* Bidi in lock step: each reply arrives before the next request. */
	s = rpc_channel_open(ch, M_BIDI, &opts);
	if (!s) {
		CHECK(0, "open");
		return;
	}
	for (int i = 0; i < 3; i++) {
		req.message = (char *)parts[i];
		CHECK(rpc_client_stream_send(s, &req.base) == 0, "bidi send");
		rv = rpc_client_stream_recv(s, &m);
		CHECK(rv == 1 && strcmp(((EchoReply *)m)->message, parts[i]) == 0,
		      "bidi reply %d", i);
		if (rv == 1)
			protobuf_c_message_free_unpacked(m, NULL);
	}
	rpc_client_stream_close_send(s);
	rv = rpc_client_stream_recv(s, &m);
	CHECK(rv == 0, "bidi end %d", rv);
	code = rpc_client_stream_finish(s, &st);
	CHECK(code == RPC_OK, "bidi %s", rpc_code_name(code));
	rpc_status_dispose(&st);
}

struct bg_call {
	rpc_channel *ch;
	const rpc_method_desc *m;
	long long sleep_ms;
	rpc_code code;
	long long end_ns;
};

static void *bg_call_main(void *arg)
{
	struct bg_call *b = arg;
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 10000};
	EchoReply *r = NULL;

	req.message = "bg";
	req.sleep_ms = b->sleep_ms;
	b->code = unary(b->ch, b->m, &opts, &req, &r, NULL);
	b->end_ns = rpc_now_ns();
	reply_free(r);
	return NULL;
}

/* A graceful stop (GOAWAY): the call already running completes, then new
 * calls find nothing to connect to. Leaves the server stopped. */
static void test_graceful_stop(rpc_channel *ch)
{
	struct bg_call b = {.ch = ch, .m = M_UNARY, .sleep_ms = 800};
	pthread_t t;
	int status = 0;

	pthread_create(&t, NULL, bg_call_main, &b);
	usleep(300 * 1000);
	kill(server_pid, SIGUSR1);
	pthread_join(t, NULL);
	CHECK(b.code == RPC_OK, "in-flight call across GOAWAY: %s",
	      rpc_code_name(b.code));
	waitpid(server_pid, &status, 0);
	server_pid = -1;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exit %d",
	      status);
}

/* The server is gone: calls fail with UNAVAILABLE well before their
 * deadline, and keep failing fast while the channel backs off. */
static void test_server_down(rpc_channel *ch)
{
	rpc_method_desc once = *M_UNARY;
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 10000};
	rpc_status st = {0};
	EchoReply *r = NULL;
	long long t0;
	rpc_code code;
	double ms;

	once.idempotent = false; /* no retries: the pure fail-fast path */

	/* A call in flight when the server dies fails at once. */
	struct bg_call b = {.ch = ch, .m = &once, .sleep_ms = 5000};
	pthread_t t;
	pthread_create(&t, NULL, bg_call_main, &b);
	usleep(300 * 1000);
	t0 = rpc_now_ns();
	server_kill(SIGKILL);
	pthread_join(t, NULL);
	ms = (double)(b.end_ns - t0) / 1e6;
	CHECK(b.code == RPC_UNAVAILABLE && ms < 1000,
	      "in flight: %s %.0f ms after the kill", rpc_code_name(b.code), ms);
	fprintf(stderr, "in flight: UNAVAILABLE %.1f ms after the kill\n", ms);

	t0 = rpc_now_ns();
	code = unary(ch, &once, &opts, &req, &r, &st);
	ms = ms_since(t0);
	CHECK(code == RPC_UNAVAILABLE, "code %s", rpc_code_name(code));
	CHECK(ms < 1000, "UNAVAILABLE took %.0f ms (deadline 10 s)", ms);
	fprintf(stderr, "server down: UNAVAILABLE after %.1f ms (%s)\n", ms,
		st.message ? st.message : "");
	rpc_status_dispose(&st);

	t0 = rpc_now_ns();
	code = unary(ch, &once, &opts, &req, &r, &st);
	ms = ms_since(t0);
	CHECK(code == RPC_UNAVAILABLE && ms < 200,
	      "in backoff: %s after %.0f ms", rpc_code_name(code), ms);
	fprintf(stderr, "in backoff: UNAVAILABLE after %.1f ms\n", ms);
	rpc_status_dispose(&st);

	/* Idempotent: retried with backoff, still far below the deadline. */
	t0 = rpc_now_ns();
	code = unary(ch, M_UNARY, &opts, &req, &r, &st);
	ms = ms_since(t0);
	CHECK(code == RPC_UNAVAILABLE && ms < 5000,
	      "with retries: %s after %.0f ms", rpc_code_name(code), ms);
	fprintf(stderr, "idempotent, retried: UNAVAILABLE after %.1f ms\n", ms);
	reply_free(r);
	rpc_status_dispose(&st);
}

static void test_recovery(rpc_channel *ch, int port)
{
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 2000};
	long long t0;
	rpc_code code = RPC_UNAVAILABLE;
	int got;

	got = server_start(port);
	CHECK(got == port, "restart on port %d: got %d", port, got);
	if (got != port)
		return;
	/* Bounded: backoff is capped by the channel config (2 s here). */
	t0 = rpc_now_ns();
	req.message = "back";
	while (ms_since(t0) < 15000) {
		EchoReply *r = NULL;

		code = unary(ch, M_UNARY, &opts, &req, &r, NULL);
		reply_free(r);
		if (code == RPC_OK)
			break;
		usleep(100 * 1000);
	}
	CHECK(code == RPC_OK, "no recovery after %.0f ms: %s", ms_since(t0),
	      rpc_code_name(code));
	fprintf(stderr, "recovered after %.0f ms\n", ms_since(t0));
}

/* A DNS name rather than an address literal. */
static void test_dns_name(int port)
{
	char target[64];
	rpc_channel *ch;
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	EchoReply *r = NULL;
	rpc_code code;

	snprintf(target, sizeof(target), "localhost:%d", port);
	ch = rpc_channel_new(target, NULL);
	CHECK(ch != NULL, "channel");
	if (!ch)
		return;
	req.message = "dns";
	for (int i = 0; i < 4; i++) {
		code = unary(ch, M_UNARY, NULL, &req, &r, NULL);
		CHECK(code == RPC_OK && r && strcmp(r->message, "dns") == 0,
		      "call %d: %s", i, rpc_code_name(code));
		reply_free(r);
		r = NULL;
	}
	rpc_channel_free(ch);
}

static void test_refused_at_start(void)
{
	/* Nothing listens on port 1 of loopback. */
	rpc_channel *ch = rpc_channel_new("127.0.0.1:1", NULL);
	rpc_method_desc once = *M_UNARY;
	EchoRequest req = ESTORE__TESTING__V1__ECHO_REQUEST__INIT;
	rpc_call_opts opts = {.timeout_ms = 10000};
	rpc_status st = {0};
	EchoReply *r = NULL;
	long long t0 = rpc_now_ns();
	rpc_code code;

	once.idempotent = false;
	CHECK(ch != NULL, "channel");
	if (!ch)
		return;
	code = unary(ch, &once, &opts, &req, &r, &st);
	CHECK(code == RPC_UNAVAILABLE && ms_since(t0) < 1000,
	      "%s after %.0f ms", rpc_code_name(code), ms_since(t0));
	rpc_status_dispose(&st);
	rpc_channel_free(ch);

	/* A name that cannot resolve fails fast too, and says why. */
	ch = rpc_channel_new("name-that-does-not-exist.invalid:50051", NULL);
	CHECK(ch != NULL, "channel");
	if (ch) {
		t0 = rpc_now_ns();
		code = unary(ch, &once, &opts, &req, &r, &st);
		CHECK(code == RPC_UNAVAILABLE && ms_since(t0) < 9000 &&
		      st.message && strstr(st.message, "resolve"),
		      "%s after %.0f ms: %s", rpc_code_name(code), ms_since(t0),
		      st.message ? st.message : "");
		rpc_status_dispose(&st);
		rpc_channel_free(ch);
	}

	CHECK(rpc_channel_new("no-port", NULL) == NULL, "bad target");
	CHECK(rpc_channel_new("::1:80", NULL) == NULL, "bare v6");
	CHECK(rpc_channel_new("host:99999", NULL) == NULL, "bad port");
}

int main(int argc, char **argv)
{
	rpc_channel_config cfg;
	rpc_channel *ch;
	char target[64];
	int port;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--python") == 0)
			opt_python = argv[i + 1];
		else if (strcmp(argv[i], "--server") == 0)
			opt_server = argv[i + 1];
		else if (strcmp(argv[i], "--proto-path") == 0)
			opt_proto = argv[i + 1];
		else if (strcmp(argv[i], "--protoc") == 0)
			opt_protoc = argv[i + 1];
		else if (strcmp(argv[i], "--grpc-python-plugin") == 0)
			opt_plugin = argv[i + 1];
	}
	if (!opt_server || !opt_proto) {
		fprintf(stderr, "usage: %s --server echo_server.py --proto-path DIR"
				" [--python P] [--protoc P] [--grpc-python-plugin P]\n",
			argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	atexit(server_kill_atexit);
	rpc_log_set_sink(log_to_stderr, NULL,
			 getenv("ESTORE_TEST_DEBUG") ? RPC_LOG_DEBUG : RPC_LOG_INFO);

	port = server_start(0);
	if (port < 0)
		return 1;
	snprintf(target, sizeof(target), "127.0.0.1:%d", port);
	rpc_channel_config_defaults(&cfg);
	cfg.backoff_max_ms = 2000; /* keeps the recovery check short */
	ch = rpc_channel_new(target, &cfg);
	if (!ch) {
		fprintf(stderr, "rpc_channel_new(%s) failed\n", target);
		return 1;
	}

#define RUN(t)                                          \
	do {                                            \
		int before = failures;                  \
		t;                                      \
		fprintf(stderr, "%s %s\n",              \
			failures == before ? "ok  " : "FAIL", #t); \
	} while (0)

	RUN(test_unary(ch));
	RUN(test_error_status(ch));
	RUN(test_unimplemented(ch));
	RUN(test_deadline(ch));
	RUN(test_metadata(ch));
	RUN(test_max_recv(target));
	RUN(test_async(ch, 1, 0));
	RUN(test_async(ch, 300, 20));
	RUN(test_concurrent(ch));
	RUN(test_server_stream(ch));
	RUN(test_client_and_bidi(ch));
	RUN(test_dns_name(port));
	RUN(test_refused_at_start());
	RUN(test_server_down(ch));
	RUN(test_recovery(ch, port));
	RUN(test_unary(ch));
	RUN(test_graceful_stop(ch));
	RUN(test_recovery(ch, port));
	RUN(test_unary(ch));

	rpc_channel_free(ch);
	server_kill(SIGTERM);
	fprintf(stderr, "%s: %d failure(s)\n", argv[0], failures);
	return failures ? 1 : 0;
}
