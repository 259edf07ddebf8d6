/*
 * server.h - the gRPC server: h2c (prior knowledge) over IPv4 and IPv6.
 *
 * Threads: one acceptor (the thread that calls rpc_server_start hands it a
 * loop of its own), `io_threads` loops each owning a set of connections and
 * their nghttp2 sessions, and `workers` pool threads that run handlers.
 * Handlers are synchronous and may block; their results return to the I/O
 * thread of the call's connection.
 *
 * A call's life: HEADERS → (request messages) → handler on a worker →
 * (reply messages) → trailers. Every call also gets a per-call arena that
 * is freed when the call ends.
 *
 * Every server serves grpc.health.v1.Health and server reflection
 * (grpc.reflection.v1 and v1alpha) for the services registered on it.
 */
#ifndef ESTORE_RPC_SERVER_H
#define ESTORE_RPC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/arena.h"
#include "rpc/health.h"
#include "rpc/metadata.h"
#include "rpc/service.h"
#include "rpc/status.h"

typedef struct rpc_server rpc_server;

typedef struct rpc_server_config {
	int io_threads;                  /* default 2 */
	int workers;                     /* handler threads, default 16 */
	uint32_t max_recv_msg;           /* default 4 MiB; larger → RESOURCE_EXHAUSTED */
	uint32_t max_send_msg;           /* default 4 MiB */
	uint32_t max_concurrent_streams; /* advertised; default 100 */
	uint32_t max_header_list;        /* bytes, counted by us; default 16 KiB */
	int settings_ack_timeout_ms;     /* default 10 s: no ack → GOAWAY SETTINGS_TIMEOUT */
	int header_timeout_ms;           /* default 10 s: preface/headers must complete */
	int idle_timeout_ms;             /* default 300 s with no open stream → GOAWAY */
	int drain_timeout_ms;            /* default 30 s for in-flight calls at shutdown */
	size_t max_queued_bytes;         /* per-call send/receive queue cap; default 8 MiB */
	bool no_inline;                  /* run even inline methods on the workers
					    (to measure what inline saves) */
} rpc_server_config;

void rpc_server_config_defaults(rpc_server_config *cfg);

/* NULL when out of memory. The config is copied. */
rpc_server *rpc_server_new(const rpc_server_config *cfg);

/*
 * Binds a listening socket (before rpc_server_start). Accepted forms:
 * "127.0.0.1:PORT", "[::1]:PORT", "0.0.0.0:PORT", "[::]:PORT" (IPv6 and
 * IPv4), "localhost:PORT", ":PORT" (same as "[::]:PORT"). PORT 0 picks a
 * free port: see rpc_server_port. Returns the listener index (>= 0),
 * RPC_ERR_INVALID, RPC_ERR_RESOLVE or RPC_ERR_IO.
 */
int rpc_server_listen(rpc_server *srv, const char *addr);

/* The bound port of listener `index`, or -1. */
int rpc_server_port(const rpc_server *srv, int index);

/* Registers one method of `svc` (before start). `impl` is the typed
 * implementation the generated invoke function casts back; `user` is
 * returned by rpc_ctx_user() in its calls. Returns 0, RPC_ERR_EXISTS or
 * RPC_ERR_NOMEM. Generated code calls this for every method of a service
 * (see generated *_register functions). */
int rpc_server_add_method(rpc_server *srv, const rpc_service_desc *svc,
			  const rpc_method_desc *m, void (*impl)(void),
			  void *user);

/* The health name that only says the process answers: SERVING from
 * rpc_server_start until the drain, whatever the service's dependencies
 * do ("" and the service names follow those). For liveness probes, which
 * must not restart a healthy process because its database is away. */
#define RPC_HEALTH_LIVENESS "liveness"

/* Starts the acceptor, I/O and worker threads and returns. The health
 * status of "", of every registered service and of RPC_HEALTH_LIVENESS
 * becomes SERVING.
 * Returns 0 or RPC_ERR_IO / RPC_ERR_NOMEM. */
int rpc_server_start(rpc_server *srv);

/* Graceful stop, safe from any thread (not from a signal handler): stop
 * accepting, health → NOT_SERVING, GOAWAY on every connection, let in-flight
 * calls finish for up to drain_timeout_ms, then cancel the rest. Returns at
 * once; rpc_server_wait blocks until done. */
void rpc_server_shutdown(rpc_server *srv);

/* Blocks until the server has stopped after rpc_server_shutdown. */
void rpc_server_wait(rpc_server *srv);

/* Blocks until SIGTERM or SIGINT, then shuts down and waits. Returns 0
 * when every in-flight call finished within the drain timeout, 1 when some
 * had to be cancelled. The signals are blocked in all server threads. */
int rpc_server_run_until_signal(rpc_server *srv);

/* Shuts down if needed and frees. rpc_server_free(NULL) is a no-op. */
void rpc_server_free(rpc_server *srv);

/* Declares that the unary method at `path` (already added) never blocks:
 * its handler then runs on the connection's I/O thread, saving two thread
 * hand-offs per call. Such a handler must not sleep, wait for I/O or make
 * blocking calls; when it finds it has to (e.g. depending on the request),
 * it returns rpc_ctx_offload(ctx) before doing anything else and is run
 * again, from the start, on a worker. Returns 0 or RPC_ERR_INVALID
 * (unknown path, not unary, or server started). */
int rpc_server_set_inline(rpc_server *srv, const char *path);

/* ---- authentication ------------------------------------------------- */

/* Roles of an account, as bits. */
enum {
	RPC_ROLE_CUSTOMER = 1u << 0,
	RPC_ROLE_VENDOR = 1u << 1,
	RPC_ROLE_ADMIN = 1u << 2,
};

/* Who is calling, as established by the authenticator. */
typedef struct rpc_identity {
	char subject[80];      /* account id (UUID) or "service:<name>" */
	char token_id[64];     /* jti of the access token */
	unsigned roles;        /* RPC_ROLE_* bits */
	bool is_service;
	long long expires_at;  /* unix seconds */
} rpc_identity;

/*
 * Verifies a bearer token (the value after "Bearer " in the authorization
 * metadata). Returns RPC_OK with *out filled, RPC_UNAUTHENTICATED for a
 * token that is not valid, or RPC_UNAVAILABLE when validity cannot be
 * established now (never "valid" by default). Set the status message with
 * rpc_ctx_error. Runs on a worker thread and may block.
 */
typedef rpc_code (*rpc_authenticator)(void *user, rpc_ctx *ctx,
				      const char *token, size_t len,
				      rpc_identity *out);

/*
 * Installs the authenticator (before start). Before a handler runs, the
 * server enforces the method's access rule (rpc_method_desc.access):
 * a missing token → UNAUTHENTICATED (except PUBLIC), a failed verification
 * → the authenticator's code, a role or service requirement not met →
 * PERMISSION_DENIED. Without an authenticator every method that needs a
 * token is refused with UNAUTHENTICATED.
 */
void rpc_server_set_authenticator(rpc_server *srv, rpc_authenticator fn,
				  void *user);

/* Health of a service name ("" = whole server), served by
 * grpc.health.v1.Health; watchers are notified. Thread-safe. Returns 0 or
 * RPC_ERR_NOMEM. */
int rpc_server_set_health(rpc_server *srv, const char *service,
			  rpc_serving_status status);

/* The services registered so far (each once, in registration order): fills
 * up to `max` entries and returns the total count. Used by reflection. */
size_t rpc_server_services(const rpc_server *srv,
			   const rpc_service_desc **out, size_t max);

/* ---- inside a handler ---------------------------------------------- */

/* Incoming custom metadata of the call. */
const rpc_metadata *rpc_ctx_metadata(const rpc_ctx *ctx);

/* First value of an incoming key, or NULL; *len set when non-NULL. */
const char *rpc_ctx_metadata_get(const rpc_ctx *ctx, const char *key,
				 size_t *len);

/* Outgoing metadata: headers go with the first reply (or the trailers-only
 * response), trailers with the status. Returns 0, RPC_ERR_INVALID,
 * RPC_ERR_NOMEM, or RPC_ERR_CLOSED when headers were already sent. */
int rpc_ctx_add_header(rpc_ctx *ctx, const char *key, const void *value,
		       size_t len);
int rpc_ctx_add_trailer(rpc_ctx *ctx, const char *key, const void *value,
			size_t len);

/* Absolute deadline on the rpc_now_ns() clock, 0 when the caller set none. */
long long rpc_ctx_deadline(const rpc_ctx *ctx);

/* True once the client reset the stream, the deadline passed, or the
 * server is stopping past its drain timeout. Long handlers poll this. */
bool rpc_ctx_cancelled(const rpc_ctx *ctx);

/* Sleeps up to `ms`, waking early when the call is cancelled. Returns 0
 * after the full sleep, RPC_ERR_CANCELLED when woken by cancellation, and
 * RPC_ERR_INVALID at once when running inline on an I/O thread. */
int rpc_ctx_sleep(rpc_ctx *ctx, long long ms);

/* "ipv4:127.0.0.1:43210" or "ipv6:[::1]:43210". */
const char *rpc_ctx_peer(const rpc_ctx *ctx);

/* The full method path, "/pkg.Service/Method". */
const char *rpc_ctx_method(const rpc_ctx *ctx);

/* The `user` pointer given at registration. */
void *rpc_ctx_user(const rpc_ctx *ctx);

/* The call's arena: allocate reply fields here; freed when the call ends. */
rpc_arena *rpc_ctx_arena(rpc_ctx *ctx);

/* Sets the status message sent with a non-OK code and returns `code`, so
 * handlers write: return rpc_ctx_error(ctx, RPC_NOT_FOUND, "no account %s", id); */
rpc_code rpc_ctx_error(rpc_ctx *ctx, rpc_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The verified caller, or NULL for an anonymous call. */
const rpc_identity *rpc_ctx_identity(const rpc_ctx *ctx);

/* The caller's bearer token (for forwarding to another service), or NULL;
 * *len set when non-NULL. */
const char *rpc_ctx_bearer(const rpc_ctx *ctx, size_t *len);

/* True while the handler runs inline on an I/O thread (see
 * rpc_server_set_inline); blocking functions then refuse to block. */
bool rpc_ctx_on_io_thread(const rpc_ctx *ctx);

/* Returned by an inline handler that must block: the server re-runs it on
 * a worker. Outside the gRPC code range, never sent on the wire. */
#define RPC_OFFLOAD ((rpc_code)100)
rpc_code rpc_ctx_offload(rpc_ctx *ctx);

/* ---- streams (inside streaming handlers) ---------------------------- */

/* Queues a reply message. Blocks while the call's send queue is over its
 * cap (the client reads slowly). Returns 0, RPC_ERR_CANCELLED when the call
 * is gone, RPC_ERR_TOO_LARGE (message over max_send_msg; nothing sent), or
 * RPC_ERR_NOMEM. */
int rpc_stream_send(rpc_stream *s, const ProtobufCMessage *msg);

/* Waits for the next request message. Returns 1 with *msg set (free it with
 * protobuf_c_message_free_unpacked(*msg, NULL)), 0 when the client has
 * finished sending, RPC_ERR_CANCELLED, or RPC_ERR_PROTO when the message
 * did not parse or holds a string that is not UTF-8 or has a NUL byte
 * (the handler should return RPC_INVALID_ARGUMENT). */
int rpc_stream_recv(rpc_stream *s, ProtobufCMessage **msg);

/* The call a stream belongs to. */
rpc_ctx *rpc_stream_ctx(rpc_stream *s);

/* ---- metrics ----------------------------------------------------------- */

struct rpc_text;

/* Appends the server's Prometheus series: grpc_server_handled_total
 * {grpc_type, grpc_service, grpc_method, grpc_code}, the
 * grpc_server_handling_seconds histogram per method, calls in flight and
 * open connections (rpc/metrics.h). Any thread, once methods are added. */
void rpc_server_metrics_write(rpc_server *srv, struct rpc_text *t);

#endif
