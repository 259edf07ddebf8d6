/*
 * search_index.h - the catalog's search index (search/search.h) kept as a
 * copy of PostgreSQL's searchable products: every active product of an
 * active store.
 *
 * It reads its own change feed (feed.h): on every (re)connection and
 * every bulk reload a fresh index is built from one cursor read in a
 * single snapshot and swapped in (notices missed while away cannot be
 * replayed, and LISTEN is in place before the snapshot, so nothing
 * committed after it goes unnoticed); each product notice re-reads that
 * product and upserts or removes it; each store notice does so for every
 * product of the store. All of it runs on the feed's thread, the only
 * writer; queries go on meanwhile, on the previous index during a build.
 *
 * Until the first build has finished there is no index: search_index_get
 * returns NULL and callers answer UNAVAILABLE.
 */
#ifndef ESTORE_CATALOG_SEARCH_INDEX_H
#define ESTORE_CATALOG_SEARCH_INDEX_H

#include "feed.h"
#include "search.h"

typedef struct search_index search_index;

search_index *search_index_new(void);
/* After its feed has stopped. NULL is a no-op. */
void search_index_free(search_index *s);

/* The hooks of the index's change feed (cat_feed_start). */
void search_index_feed_hooks(search_index *s, cat_feed_hooks *out);

/* True once the first build has finished (a dependency probe: a replica
 * takes traffic only when it can search). */
bool search_index_ready(void *s);

/* The current index, held until search_index_put (a rebuild waits for
 * it before freeing the old one); NULL while the first build runs (then
 * no put). */
es_index *search_index_get(search_index *s);
void search_index_put(search_index *s);

#endif
