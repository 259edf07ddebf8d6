/*
 * cache.h - the product cache: GetProduct answers by id from memory, so a
 * popular product page costs no SQL.
 *
 * Entries are the packed Product message plus what decides its visibility
 * (store owner, store active), so the same rules apply to a hit as to a
 * read from PostgreSQL. At most `max_entries`, least recently used out
 * first.
 *
 * Staying right: the cache reads its own change feed (feed.h) and drops
 * the products (or the store's products) it names. Writes made through
 * this replica also drop their entry at once, so its own callers never
 * wait for the notice. While the feed is not connected the cache is off
 * (every read goes to SQL): a change made meanwhile would go unnoticed;
 * on every (re)connection and every bulk reload it starts empty.
 *
 * A read racing with a change must not put the old row back after the
 * notice dropped it: prod_cache_stamp() is taken before the SQL read and
 * prod_cache_put() refuses the row when an invalidation of that id (or a
 * flush) happened since.
 *
 * Thread-safe; one mutex (held only for hash look-ups and copies).
 */
#ifndef ESTORE_CATALOG_CACHE_H
#define ESTORE_CATALOG_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc/arena.h"
#include "feed.h"
#include "store_pg.h"

typedef struct prod_cache prod_cache;

/* max_entries 0: a cache that is always off. NULL on no memory. */
prod_cache *prod_cache_new(size_t max_entries);
/* After its feed has stopped. NULL is a no-op. */
void prod_cache_free(prod_cache *c);

/* The hooks of the cache's change feed (cat_feed_start). */
void prod_cache_feed_hooks(prod_cache *c, cat_feed_hooks *out);

/* On a hit, the packed Product copied into the arena (*data, *len) and
 * its meta; false on a miss or while the cache is off. */
bool prod_cache_get(prod_cache *c, const char *id, rpc_arena *a,
		    uint8_t **data, size_t *len, cat_product_meta *meta);

/* Taken before reading a product from PostgreSQL; handed to put. */
typedef struct prod_cache_stamp {
	uint64_t epoch, gen;
} prod_cache_stamp;
prod_cache_stamp prod_cache_stamp_of(prod_cache *c, const char *id);

/* Stores the packed product read under `stamp` (copied) unless the id was
 * invalidated since, or the cache is off. */
void prod_cache_put(prod_cache *c, const char *id, prod_cache_stamp stamp,
		    const uint8_t *data, size_t len,
		    const cat_product_meta *meta, const char *store_id);

/* Turns the cache on (empty) or off (flushed). The feed does this as its
 * connection comes and goes; tests without PostgreSQL may too. */
void prod_cache_set_on(prod_cache *c, bool on);

/* Drops one product. */
void prod_cache_invalidate(prod_cache *c, const char *id);
/* Drops every product of a store (its status changed). */
void prod_cache_invalidate_store(prod_cache *c, const char *store_id);

/* Counters since start, for logs and tests. */
typedef struct prod_cache_stats {
	uint64_t hits, misses, entries;
	bool on;
} prod_cache_stats;
void prod_cache_get_stats(prod_cache *c, prod_cache_stats *out);

#endif
