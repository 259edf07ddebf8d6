/*
 * cache.c - the product cache (see cache.h).
 */
#include "cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rpc/log.h"

/* Invalidation generations are kept per stripe of ids, not per id: a
 * change of another product in the same stripe only costs a refused put
 * (the next read fills it), and memory stays fixed. */
#define STRIPES 1024

struct entry {
	struct entry *next;              /* hash chain */
	struct entry *lru_prev, *lru_next;
	char id[37];
	char store_id[37];
	cat_product_meta meta;
	size_t len;
	uint8_t data[];
};

struct prod_cache {
	pthread_mutex_t lock;
	size_t max, count, n_buckets;
	struct entry **buckets;
	struct entry *lru_head, *lru_tail;   /* head = most recent */
	bool on;                             /* its feed connected */
	uint64_t epoch;                      /* bumped by every flush */
	uint64_t gens[STRIPES];
	uint64_t hits, misses;
};

static uint64_t hash_id(const char *id)
{
	uint64_t h = 1469598103934665603ULL;  /* FNV-1a */

	for (; *id; id++) {
		h ^= (unsigned char)(*id | 0x20);  /* ids compare caselessly */
		h *= 1099511628211ULL;
	}
	return h;
}

prod_cache *prod_cache_new(size_t max_entries)
{
	prod_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->max = max_entries;
	c->n_buckets = 64;
	while (c->n_buckets < max_entries)
		c->n_buckets <<= 1;
	c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

/* ---- table (lock held) --------------------------------------------------- */

static void lru_unlink(prod_cache *c, struct entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push(prod_cache *c, struct entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static struct entry **find_slot(prod_cache *c, const char *id)
{
	struct entry **pp = &c->buckets[hash_id(id) & (c->n_buckets - 1)];

	while (*pp && strcasecmp((*pp)->id, id) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void remove_entry(prod_cache *c, struct entry *e)
{
	struct entry **pp = find_slot(c, e->id);

	if (*pp == e)
		*pp = e->next;
	lru_unlink(c, e);
	c->count--;
	free(e);
}

static void flush_locked(prod_cache *c)
{
	while (c->lru_head)
		remove_entry(c, c->lru_head);
	c->epoch++;
}

/* ---- API ----------------------------------------------------------------- */

bool prod_cache_get(prod_cache *c, const char *id, rpc_arena *a,
		    uint8_t **data, size_t *len, cat_product_meta *meta)
{
	struct entry *e;
	bool hit = false;

	pthread_mutex_lock(&c->lock);
	if (c->on && (e = *find_slot(c, id)) != NULL) {
		*data = rpc_arena_alloc(a, e->len ? e->len : 1);
		if (*data) {
			memcpy(*data, e->data, e->len);
			*len = e->len;
			*meta = e->meta;
			lru_unlink(c, e);
			lru_push(c, e);
			hit = true;
		}
	}
	if (hit)
		c->hits++;
	else
		c->misses++;
	pthread_mutex_unlock(&c->lock);
	return hit;
}

prod_cache_stamp prod_cache_stamp_of(prod_cache *c, const char *id)
{
	prod_cache_stamp s;

	pthread_mutex_lock(&c->lock);
	s.epoch = c->epoch;
	s.gen = c->gens[hash_id(id) % STRIPES];
	pthread_mutex_unlock(&c->lock);
	return s;
}

void prod_cache_put(prod_cache *c, const char *id, prod_cache_stamp stamp,
		    const uint8_t *data, size_t len,
		    const cat_product_meta *meta, const char *store_id)
{
	struct entry *e, **pp;

	if (c->max == 0 || strlen(id) > 36 || strlen(store_id) > 36)
		return;
	e = malloc(sizeof(*e) + len);
	if (!e)
		return;
	memset(e, 0, sizeof(*e));
	strcpy(e->id, id);
	strcpy(e->store_id, store_id);
	e->meta = *meta;
	e->len = len;
	memcpy(e->data, data, len);

	pthread_mutex_lock(&c->lock);
	if (!c->on || stamp.epoch != c->epoch ||
	    stamp.gen != c->gens[hash_id(id) % STRIPES]) {
		pthread_mutex_unlock(&c->lock);
		free(e);
		return;
	}
	pp = find_slot(c, id);
	if (*pp)
		remove_entry(c, *pp);
	while (c->count >= c->max && c->lru_tail)
		remove_entry(c, c->lru_tail);
	pp = find_slot(c, id);
	e->next = *pp;
	*pp = e;
	lru_push(c, e);
	c->count++;
	pthread_mutex_unlock(&c->lock);
}

void prod_cache_invalidate(prod_cache *c, const char *id)
{
	struct entry **pp;

	pthread_mutex_lock(&c->lock);
	c->gens[hash_id(id) % STRIPES]++;
	pp = find_slot(c, id);
	if (*pp)
		remove_entry(c, *pp);
	pthread_mutex_unlock(&c->lock);
}

void prod_cache_invalidate_store(prod_cache *c, const char *store_id)
{
	struct entry *e, *next;

	pthread_mutex_lock(&c->lock);
	/* Store status changes are rare (an admin's act): a walk of the
	 * table, and an epoch bump so reads in flight are not cached with
	 * the old status. */
	for (e = c->lru_head; e; e = next) {
		next = e->lru_next;
		if (strcasecmp(e->store_id, store_id) == 0)
			remove_entry(c, e);
	}
	c->epoch++;
	pthread_mutex_unlock(&c->lock);
}

void prod_cache_set_on(prod_cache *c, bool on)
{
	pthread_mutex_lock(&c->lock);
	flush_locked(c);
	c->on = on && c->max > 0;
	pthread_mutex_unlock(&c->lock);
}

void prod_cache_get_stats(prod_cache *c, prod_cache_stats *out)
{
	pthread_mutex_lock(&c->lock);
	out->hits = c->hits;
	out->misses = c->misses;
	out->entries = c->count;
	out->on = c->on;
	pthread_mutex_unlock(&c->lock);
}

/* ---- change feed hooks ------------------------------------------------------ */

static bool feed_connected(void *arg, PGconn *conn)
{
	prod_cache *c = arg;

	(void)conn;
	/* Notices sent while the feed was away are lost: start empty. */
	prod_cache_set_on(c, true);
	rpc_log(RPC_LOG_INFO, "cache", "listening for product changes; "
		"cache on (%zu entries at most)", c->max);
	return true;
}

/* The feed logs a lost connection; reads go to SQL until it is back. */
static void feed_disconnected(void *arg)
{
	prod_cache_set_on(arg, false);
}

static void feed_product(void *arg, PGconn *conn, const char *id)
{
	(void)conn;
	prod_cache_invalidate(arg, id);
}

static void feed_store(void *arg, PGconn *conn, const char *id)
{
	(void)conn;
	prod_cache_invalidate_store(arg, id);
}

static bool feed_reload(void *arg, PGconn *conn)
{
	(void)conn;
	prod_cache_set_on(arg, true); /* flushes */
	return true;
}

void prod_cache_feed_hooks(prod_cache *c, cat_feed_hooks *out)
{
	*out = (cat_feed_hooks){
		.name = "cache",
		.connected = feed_connected,
		.disconnected = feed_disconnected,
		.product_changed = feed_product,
		.store_changed = feed_store,
		.reload = feed_reload,
		.arg = c,
	};
}

void prod_cache_free(prod_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	while (c->lru_head)
		remove_entry(c, c->lru_head);
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c);
}
