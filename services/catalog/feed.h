/*
 * feed.h - the catalog's change feed: a thread with its own libpq
 * connection that LISTENs for what the schema's triggers NOTIFY at COMMIT
 * (migrations/001_init.sql) and hands each notice to its reader.
 *
 *   catalog_products  payload: a product id (inserted or updated)
 *   catalog_stores    payload: a store id (its status changed)
 *   catalog_reload    no payload: anything may have changed (a bulk load
 *                     such as estore-seed, which writes without per-row
 *                     notices)
 *
 * Each reader (the product cache, the search index) has its own feed, so
 * a slow reader (an index build of a million products) never delays
 * another (a cache invalidation).
 *
 * Notices sent while a feed is not connected are lost: on every
 * (re)connection, after LISTEN is in place, `connected` runs so the
 * reader can catch up; when it returns false (say the schema is not
 * migrated yet) the feed drops the connection and tries again after a
 * backoff; likewise when `reload` returns false. `disconnected` runs when
 * a connection that was caught up breaks. Every hook runs on the feed's thread; those given the
 * connection may query on it (notices arriving meanwhile wait in libpq).
 */
#ifndef ESTORE_CATALOG_FEED_H
#define ESTORE_CATALOG_FEED_H

#include <libpq-fe.h>
#include <stdbool.h>

#define CAT_CHANNEL_PRODUCTS "catalog_products"
#define CAT_CHANNEL_STORES "catalog_stores"
#define CAT_CHANNEL_RELOAD "catalog_reload"

typedef struct cat_feed_hooks {
	const char *name; /* for logs: "cache", "search" */
	bool (*connected)(void *arg, PGconn *conn);
	void (*disconnected)(void *arg);
	void (*product_changed)(void *arg, PGconn *conn, const char *id);
	void (*store_changed)(void *arg, PGconn *conn, const char *id);
	bool (*reload)(void *arg, PGconn *conn);
	void *arg;
} cat_feed_hooks;

typedef struct cat_feed cat_feed;

/* Starts the thread on `conninfo` (copied). NULL on failure. */
cat_feed *cat_feed_start(const char *conninfo, const cat_feed_hooks *hooks);

/* Stops the thread (waiting for a hook in progress) and frees. NULL is a
 * no-op. */
void cat_feed_stop(cat_feed *f);

#endif
