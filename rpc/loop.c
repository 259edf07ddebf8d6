/*
 * loop.c - a thread with a libevent loop and a cross-thread task queue.
 *
 * Posted tasks go on a mutex-protected list and the loop is woken with
 * event_active on a persistent user event; libevent's pthread support makes
 * that call safe from any thread. Tasks run in posting order.
 */
#include "rpc/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "rpc/status.h"

struct loop_task {
	struct loop_task *next;
	rpc_loop_fn fn;
	void *arg;
};

struct rpc_loop {
	struct event_base *base;
	struct event *wake;
	pthread_t thread;
	bool started;
	bool stopping;
	char name[16];
	pthread_mutex_t lock;
	struct loop_task *head, *tail;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init_once(void)
{
	evthread_use_pthreads();
}

void rpc_loop_global_init(void)
{
	pthread_once(&global_once, global_init_once);
}

long long rpc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void run_tasks(rpc_loop *loop)
{
	struct loop_task *t;

	/* Take the whole list at once so tasks that post more tasks do not
	 * hold the lock or starve the loop. */
	pthread_mutex_lock(&loop->lock);
	t = loop->head;
	loop->head = loop->tail = NULL;
	pthread_mutex_unlock(&loop->lock);

	while (t) {
		struct loop_task *next = t->next;

		t->fn(t->arg);
		free(t);
		t = next;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	run_tasks(arg);
}

rpc_loop *rpc_loop_new(const char *name)
{
	rpc_loop *loop;

	rpc_loop_global_init();
	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return NULL;
	pthread_mutex_init(&loop->lock, NULL);
	snprintf(loop->name, sizeof(loop->name), "%s", name ? name : "rpc-loop");
	loop->base = event_base_new();
	if (!loop->base)
		goto fail;
	loop->wake = event_new(loop->base, -1, EV_PERSIST, on_wake, loop);
	if (!loop->wake)
		goto fail;
	return loop;
fail:
	if (loop->base)
		event_base_free(loop->base);
	pthread_mutex_destroy(&loop->lock);
	free(loop);
	return NULL;
}

static void *loop_main(void *arg)
{
	rpc_loop *loop = arg;

	pthread_setname_np(pthread_self(), loop->name);
	/* EVLOOP_NO_EXIT_ON_EMPTY: a loop with no connections yet must keep
	 * waiting for posted work. */
	event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int rpc_loop_start(rpc_loop *loop)
{
	if (event_add(loop->wake, NULL) != 0)
		return RPC_ERR_IO;
	if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0)
		return RPC_ERR_IO;
	loop->started = true;
	return 0;
}

struct event_base *rpc_loop_base(rpc_loop *loop)
{
	return loop->base;
}

int rpc_loop_post(rpc_loop *loop, rpc_loop_fn fn, void *arg)
{
	struct loop_task *t = malloc(sizeof(*t));

	if (!t)
		return RPC_ERR_NOMEM;
	t->next = NULL;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_lock(&loop->lock);
	if (loop->stopping) {
		pthread_mutex_unlock(&loop->lock);
		free(t);
		return RPC_ERR_CLOSED;
	}
	if (loop->tail)
		loop->tail->next = t;
	else
		loop->head = t;
	loop->tail = t;
	pthread_mutex_unlock(&loop->lock);
	event_active(loop->wake, EV_READ, 0);
	return 0;
}

bool rpc_loop_in_thread(const rpc_loop *loop)
{
	return loop->started && pthread_equal(loop->thread, pthread_self());
}

bool rpc_loop_running(const rpc_loop *loop)
{
	return loop->started;
}

static void break_loop(void *arg)
{
	rpc_loop *loop = arg;

	event_base_loopbreak(loop->base);
}

void rpc_loop_stop(rpc_loop *loop)
{
	if (!loop->started)
		return;
	/* The break task goes last, so everything posted before runs first. */
	rpc_loop_post(loop, break_loop, loop);
	pthread_mutex_lock(&loop->lock);
	loop->stopping = true;
	pthread_mutex_unlock(&loop->lock);
	pthread_join(loop->thread, NULL);
	loop->started = false;
	run_tasks(loop); /* anything that slipped in before `stopping` */
}

void rpc_loop_free(rpc_loop *loop)
{
	if (!loop)
		return;
	rpc_loop_stop(loop);
	event_free(loop->wake);
	event_base_free(loop->base);
	pthread_mutex_destroy(&loop->lock);
	free(loop);
}
