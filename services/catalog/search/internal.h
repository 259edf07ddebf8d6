/* Internal layout of an es_index; see README.md for the picture. */
#ifndef ESTORE_SEARCH_INTERNAL_H
#define ESTORE_SEARCH_INTERNAL_H

#include "search.h"

#include <pthread.h>
#include <roaring/roaring.h>

#define ES_NONE UINT32_MAX

/* CRoaring 0.2's free does not take NULL. */
static inline void bm_free(roaring_bitmap_t *b)
{
	if (b)
		roaring_bitmap_free(b);
}

/* ---- util.c: a string -> uint32 map and a bump arena ---------------- */

/* Open addressing, linear probing, backward-shift deletion; keys are owned
 * copies. Lookups take (ptr, len) so tokens need no terminator. */
typedef struct {
	char **keys;
	uint32_t *vals;
	uint32_t *hashes;
	uint32_t cap, len;
} strmap;

uint32_t es_hash(const char *s, size_t n);
uint32_t strmap_get(const strmap *m, const char *s, size_t n); /* ES_NONE if absent */
/* Inserts s -> v (s absent). Returns the owned key copy, NULL on ENOMEM. */
char *strmap_put(strmap *m, const char *s, size_t n, uint32_t v);
void strmap_set(strmap *m, const char *s, size_t n, uint32_t v); /* s present */
void strmap_del(strmap *m, const char *s, size_t n);
void strmap_free(strmap *m);
size_t strmap_memory(const strmap *m);

typedef struct arena_block arena_block;
typedef struct {
	arena_block *head;
} arena;
void *arena_alloc(arena *a, size_t n); /* 16-byte aligned, zeroed; NULL on ENOMEM */
char *arena_strdup(arena *a, const char *s);
void arena_free(arena *a);
size_t arena_memory(const arena *a);

size_t es_heap_size(const void *p); /* what malloc really holds for p */
size_t es_bitmap_memory(const roaring_bitmap_t *b);

/* ---- lexicon.c ------------------------------------------------------ */

/* Facet counts of every product having one word, kept current by every
 * write, for the words in at least 1/64 of the index (chosen by
 * es_optimize): a query of that word alone, without filters, reads its
 * facets here instead of passing over a large share of the index. */
#define ES_PRICE_KEYS 1024
typedef struct {
	uint32_t *cc, *sc, *vc, *kc; /* per category, store, attribute value, key */
	uint32_t ncc, nsc, nvc, nkc; /* their lengths */
	uint32_t pk[ES_PRICE_KEYS];  /* per price bucket key (es_price_key) */
} tfacets;

typedef struct {
	char *s; /* owned by the term map */
	uint16_t len;
	tfacets *fc;             /* NULL for most words */
	float max_impact;        /* an upper bound: never lowered until es_optimize */
	roaring_bitmap_t *docs;  /* documents with the word in any field */
	roaring_bitmap_t *title; /* documents with the word in the title */
} term_t;

typedef struct {
	uint32_t *ids;
	uint32_t n, cap;
} idlist;

typedef struct {
	strmap map; /* word -> term id */
	term_t *terms;
	uint32_t nterms, cap;
	/* Words in byte order for prefix ranges; new words wait in a short
	 * unsorted list and are merged in batches, so a bulk load does not
	 * shift the array once per new word. */
	uint32_t *sorted;
	uint32_t nsorted;
	uint32_t pending[256];
	uint32_t npending;
	/* SymSpell: every word (distance 0) and its deletes at distance 1
	 * (words of 4+ bytes) and 2 (6+ bytes: the shortest word a query word
	 * of 8+ bytes may reach at distance 2) -> the words they come from. */
	strmap dels;
	idlist *dlists;
	uint32_t ndlists, dcap;
} lexicon;

int lex_init(lexicon *lx);
void lex_free(lexicon *lx);
/* Term id of the word, created if new (ES_NONE on ENOMEM). */
uint32_t lex_intern(lexicon *lx, const char *s, size_t n);
static inline uint32_t lex_find(const lexicon *lx, const char *s, size_t n)
{
	return strmap_get(&lx->map, s, n);
}
static inline uint64_t lex_df(const lexicon *lx, uint32_t t)
{
	return roaring_bitmap_get_cardinality(lx->terms[t].docs);
}
/* Calls fn for every word starting with prefix (sorted part in order,
 * then the pending ones). */
typedef void (*lex_term_fn)(uint32_t term, void *arg);
void lex_prefix(const lexicon *lx, const char *p, size_t n, lex_term_fn fn, void *arg);
/* Up to max corrections of w at the smallest edit distance (optimal
 * string alignment) allowed by its length, live words only, most
 * documents first then byte order. Returns the count; *dist the distance. */
size_t lex_correct(const lexicon *lx, const char *w, size_t n, uint32_t *out, size_t max,
                   int *dist);
int es_max_typo_distance(size_t len);
int es_osa_distance(const char *a, size_t an, const char *b, size_t bn, int max);
size_t lex_memory(const lexicon *lx);

/* ---- index.c -------------------------------------------------------- */

enum { TF_TITLE = 1, TF_ATTR = 2, TF_DESC = 4 };

typedef struct {
	/* What a facet pass reads comes first, in one cache line. */
	uint32_t *cats;
	uint32_t *attrv; /* attribute value ids */
	int64_t price;
	uint32_t store;
	uint8_t ncat, nattr;
	uint16_t nterms;
	float stat;   /* static score, 0..1 */
	bool in_slab; /* arrays live in es_index.slab, not in blob */
	char currency[4];
	uint32_t *terms; /* ascending term ids */
	uint16_t *imp;   /* field-weighted BM25 impact / ES_IMP_SCALE */
	uint8_t *tflags;
	char *pid; /* NULL: tombstone */
	char *title;
	void *blob; /* cats, attrv, terms, imp, tflags in one allocation */
	int64_t stock, created;
	double rating;
	uint32_t rating_count;
	uint64_t sales;
} doc_t;

/* What a facet pass reads of a document, 24 bytes apart instead of a
 * doc_t's 136, so a pass over a few hundred thousand matches streams
 * through memory instead of missing the cache per document. */
typedef struct {
	const uint32_t *vals; /* ncat category ids, then nattr value ids */
	int64_t price;
	uint32_t store;
	uint8_t ncat, nattr;
} frec;

typedef struct {
	char *id; /* owned by the map */
	roaring_bitmap_t *bm;
} named_set;

typedef struct {
	uint32_t key; /* attribute key id */
	char *value;
	roaring_bitmap_t *bm;
} attr_value;

typedef struct {
	char *key;
	roaring_bitmap_t *bm; /* documents with the key */
	idlist values;        /* its value ids */
} attr_key;

/* An ordered column of value buckets (price, created, rating): the
 * documents of each bucket as a bitmap, buckets by ascending bucket key.
 * Range filters take whole buckets and check single documents only in the
 * two edge buckets; sorted top-k walks buckets in order and stops once
 * the page is full. */
typedef struct {
	int64_t key;
	roaring_bitmap_t *bm;
} bucket;

typedef struct {
	bucket *b;
	uint32_t n, cap;
} bcol;

/* Facets of one query at one generation of the index. */
typedef struct {
	uint64_t key, gen;
	bool used;
	arena mem;
	es_result facets; /* only the facet fields */
} fcache_entry;

struct es_index {
	pthread_rwlock_t lock;
	es_config cfg;
	uint64_t gen; /* bumped by every write */
	pthread_mutex_t cache_lock;
	fcache_entry *cache;
	uint32_t cache_next;

	doc_t *docs;
	frec *frecs; /* parallel to docs */
	uint32_t ndocs, cap;
	uint32_t sorted_upto; /* ids below it are in static-score order */
	uint64_t live_count, tombstones;
	strmap pids;

	lexicon lex;

	strmap store_map;
	named_set *stores;
	uint32_t nstores, stores_cap;
	strmap cat_map;
	named_set *cats;
	uint32_t ncats, cats_cap;
	strmap akey_map;
	attr_key *akeys;
	uint32_t nakeys, akeys_cap;
	strmap aval_map; /* key \x1f value */
	attr_value *avals;
	uint32_t navals, avals_cap;

	/* es_optimize copies every document's blob here in id order, so passes
	 * over matching documents (facets, scoring) read memory in order. */
	void *slab;

	roaring_bitmap_t *live;
	roaring_bitmap_t *instock;
	bcol price, created, rating;
};

#define ES_IMP_SCALE (1.0f / 2048.0f)

int64_t es_price_key(int64_t price);
int64_t es_created_key(int64_t created);
int64_t es_rating_key(double rating);
double es_doc_sort_key(const doc_t *d, es_sort s);

/* ---- facets.c ------------------------------------------------------- */

/* fc: the kept counts of a word whose products (word) hold every match:
 * when match is all of them, the counts are read as kept; when filters
 * left out fewer products than they kept, the left-out ones are
 * subtracted (a pass over them instead of over the matches). word NULL:
 * match is exactly the word's products. */
int es_compute_facets(es_index *ix, const es_query *q, const roaring_bitmap_t *match,
                      const tfacets *fc, const roaring_bitmap_t *word, es_result *r,
                      arena *a);
/* Adds delta times product id to fc; false (fc unchanged) on ENOMEM. */
bool es_fc_apply(es_index *ix, tfacets *fc, uint32_t id, int delta);
void es_fc_free(tfacets *fc);
/* Copies the facet fields of src into dst, allocating from a. */
int es_copy_facets(es_result *dst, const es_result *src, arena *a);

/* ---- query.c -------------------------------------------------------- */
/* The documents of bucket column c whose value is in [lo, hi] (inclusive),
 * or with outside, those whose value is not; of the two edge buckets only
 * documents in `within` (NULL: all) are looked at, so the result is exact
 * only within it. A new bitmap or NULL on ENOMEM. */
roaring_bitmap_t *es_bcol_range(const es_index *ix, const bcol *c, int64_t lo, int64_t hi,
                                bool outside, const roaring_bitmap_t *within,
                                int64_t (*bucket_of)(int64_t),
                                int64_t (*value_of)(const doc_t *));
/* How many of c's buckets lie wholly within [lo, hi]. */
uint32_t es_bcol_inner(const bcol *c, int64_t lo, int64_t hi, int64_t (*bucket_of)(int64_t));

#endif
