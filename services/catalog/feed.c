/*
 * feed.c - the catalog's change feed (see feed.h).
 */
#include "feed.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

#define LISTEN_SQL                                                     \
	"LISTEN " CAT_CHANNEL_PRODUCTS "; LISTEN " CAT_CHANNEL_STORES   \
	"; LISTEN " CAT_CHANNEL_RELOAD

struct cat_feed {
	cat_feed_hooks hooks;
	char *conninfo;
	pthread_t thread;
	int wake[2]; /* pipe: a byte written asks the thread to stop */
};

/* Waits up to ms for the stop pipe; true when asked to stop. */
static bool wait_stop(cat_feed *f, int ms)
{
	struct pollfd p = { .fd = f->wake[0], .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

/* False when a reload could not be applied: the caller reconnects, and
 * `connected` catches up after the backoff. */
static bool handle_notices(cat_feed *f, PGconn *conn)
{
	const cat_feed_hooks *h = &f->hooks;
	PGnotify *n;
	bool ok = true;

	while ((n = PQnotifies(conn)) != NULL) {
		if (strcmp(n->relname, CAT_CHANNEL_PRODUCTS) == 0) {
			if (h->product_changed)
				h->product_changed(h->arg, conn, n->extra);
		} else if (strcmp(n->relname, CAT_CHANNEL_STORES) == 0) {
			if (h->store_changed)
				h->store_changed(h->arg, conn, n->extra);
		} else if (strcmp(n->relname, CAT_CHANNEL_RELOAD) == 0) {
			rpc_log(RPC_LOG_INFO, h->name, "catalog reloaded in "
				"bulk: reading it again");
			if (h->reload && !h->reload(h->arg, conn))
				ok = false;
		}
		PQfreemem(n);
	}
	return ok;
}

/* Serves one connection until it breaks (false) or stop is asked (true). */
static bool listen_on(cat_feed *f, PGconn *conn)
{
	struct pollfd p[2];

	/* A hook's queries may have read notices into libpq already; they
	 * would wait for the next packet otherwise. */
	if (!handle_notices(f, conn))
		return false;
	for (;;) {
		p[0].fd = PQsocket(conn);
		p[0].events = POLLIN;
		p[0].revents = 0;
		p[1].fd = f->wake[0];
		p[1].events = POLLIN;
		p[1].revents = 0;
		if (p[0].fd < 0)
			return false;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (p[1].revents)
			return true;
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK ||
		    !handle_notices(f, conn))
			return false;
	}
}

static void *feed_main(void *arg)
{
	cat_feed *f = arg;
	const cat_feed_hooks *h = &f->hooks;
	int backoff = BACKOFF_MIN_MS;
	bool warned = false;

	for (;;) {
		PGconn *conn = PQconnectdb(f->conninfo);
		PGresult *r = NULL;
		bool stop, listening, caught_up;

		if (PQstatus(conn) == CONNECTION_OK)
			r = PQexec(conn, LISTEN_SQL);
		listening = r && PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		caught_up = listening &&
			    (!h->connected || h->connected(h->arg, conn));
		if (!caught_up) {
			/* A failing hook logs for itself. */
			if (!warned && !listening)
				rpc_log(RPC_LOG_WARN, h->name, "cannot listen "
					"for changes (retrying): %s",
					PQerrorMessage(conn));
			warned = warned || !listening;
			PQfinish(conn);
			if (wait_stop(f, backoff))
				break;
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
							       : backoff * 2;
			continue;
		}
		warned = false;
		backoff = BACKOFF_MIN_MS;
		stop = listen_on(f, conn);
		if (h->disconnected)
			h->disconnected(h->arg);
		PQfinish(conn);
		if (stop)
			break;
		rpc_log(RPC_LOG_WARN, h->name, "change feed lost its "
			"connection; reconnecting");
	}
	return NULL;
}

cat_feed *cat_feed_start(const char *conninfo, const cat_feed_hooks *hooks)
{
	cat_feed *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->hooks = *hooks;
	f->wake[0] = f->wake[1] = -1;
	f->conninfo = strdup(conninfo);
	if (!f->conninfo || pipe2(f->wake, O_CLOEXEC) != 0 ||
	    pthread_create(&f->thread, NULL, feed_main, f) != 0) {
		if (f->wake[0] >= 0) {
			close(f->wake[0]);
			close(f->wake[1]);
		}
		free(f->conninfo);
		free(f);
		return NULL;
	}
	return f;
}

void cat_feed_stop(cat_feed *f)
{
	if (!f)
		return;
	(void)!write(f->wake[1], "x", 1);
	pthread_join(f->thread, NULL);
	close(f->wake[0]);
	close(f->wake[1]);
	free(f->conninfo);
	free(f);
}
