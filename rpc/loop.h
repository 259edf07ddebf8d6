/*
 * loop.h - one thread running one libevent event_base, with a thread-safe
 * way to run a function on it.
 *
 * The server's I/O threads and the client channel's thread are rpc_loops.
 * Everything that touches a connection or an nghttp2 session happens on its
 * loop thread; other threads hand work over with rpc_loop_post().
 */
#ifndef ESTORE_RPC_LOOP_H
#define ESTORE_RPC_LOOP_H

#include <stdbool.h>

struct event_base;
typedef struct rpc_loop rpc_loop;

typedef void (*rpc_loop_fn)(void *arg);

/* Creates the event_base (the thread starts in rpc_loop_start). `name` is
 * used for the thread name. NULL on failure. */
rpc_loop *rpc_loop_new(const char *name);

/* Starts the thread. Returns 0 or RPC_ERR_IO. */
int rpc_loop_start(rpc_loop *loop);

struct event_base *rpc_loop_base(rpc_loop *loop);

/* Queues fn(arg) to run on the loop thread, in posting order. Safe from any
 * thread, including the loop's own. Returns 0, RPC_ERR_NOMEM, or
 * RPC_ERR_CLOSED after rpc_loop_stop (fn is then not called). */
int rpc_loop_post(rpc_loop *loop, rpc_loop_fn fn, void *arg);

/* True when called on the loop's own thread. */
bool rpc_loop_in_thread(const rpc_loop *loop);

/* True between rpc_loop_start and rpc_loop_stop: posted work will run.
 * For the thread that starts and stops the loop. */
bool rpc_loop_running(const rpc_loop *loop);

/* Runs the posted queue dry, stops the event loop and joins the thread.
 * Must not be called from the loop thread. */
void rpc_loop_stop(rpc_loop *loop);

/* Stops if needed and frees. rpc_loop_free(NULL) is a no-op. */
void rpc_loop_free(rpc_loop *loop);

/* Monotonic clock in nanoseconds. */
long long rpc_now_ns(void);

/* Call once per process before creating loops: enables libevent's thread
 * support. Idempotent. */
void rpc_loop_global_init(void);

#endif
