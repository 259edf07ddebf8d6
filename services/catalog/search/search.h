/*
 * estore_search - the catalog's in-memory product search engine.
 *
 * PostgreSQL stays the source of truth; the catalog service feeds every
 * searchable product (active, in an active store) into an es_index and
 * removes the others. The index answers full-text queries with typo
 * tolerance and type-ahead prefixes, filters, five sort orders, keyset
 * paging and facet counts, and Suggest for titles.
 *
 * Threads: every function taking an es_index may be called from any number
 * of threads at once. Queries, Suggest and stats share a read lock; upsert,
 * remove and optimize take the write lock (one writer at a time, and
 * writers are preferred so a steady stream of queries cannot starve them).
 * Results are copied out before the lock is released: they belong to the
 * caller and stay valid whatever the index does afterwards.
 *
 * Errors: functions return ES_OK (0) or a negative es_status; es_strerror
 * names it. Nothing is ever partially applied: a failed upsert leaves the
 * previous version of the product in place.
 *
 * Strings are NUL-terminated UTF-8; the index copies everything it keeps.
 */
#ifndef ESTORE_SEARCH_H
#define ESTORE_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	ES_OK = 0,
	ES_EINVAL = -1,    /* a bad argument: the message names which */
	ES_ENOMEM = -2,    /* out of memory; the index is unchanged */
	ES_ENOTFOUND = -3, /* es_remove: no such product */
	ES_ECURSOR = -4,   /* a cursor that does not parse, or belongs to another query */
	ES_ELIMIT = -5,    /* a document over a limit below (too many fields, ...) */
} es_status;

const char *es_strerror(int status);

/* Limits, checked on every call. */
#define ES_MAX_PAGE_SIZE 100
#define ES_MAX_QUERY_TERMS 16 /* further query words are ignored */
#define ES_MAX_TOKEN_BYTES 64 /* longer words are cut at a character boundary */
#define ES_MAX_CATEGORY_DEPTH 16
#define ES_MAX_ATTRS 64       /* attributes per product */
#define ES_MAX_DOC_TERMS 4096 /* distinct words per product */
#define ES_MAX_ID_BYTES 128   /* product, store, category ids, attribute keys */
#define ES_MAX_SUGGEST 10

/* ---- configuration -------------------------------------------------- */

typedef struct {
	/* Field weights of the text score: title > attributes > description. */
	float title_weight, attr_weight, desc_weight;
	/* BM25's k1 and b, with a fixed reference length per field (in words)
	 * instead of the collection's average, so a product's term impacts never
	 * change while other products come and go (scores stay comparable
	 * across pages of one query). */
	float bm25_k1, bm25_b;
	float title_ref_len, attr_ref_len, desc_ref_len;
	/* Weight of the static quality score (0..1, from rating, sales and
	 * freshness) added to the text score. */
	float static_weight;
	/* Freshness is measured against this time (unix seconds; 0 = the time
	 * es_create runs) with this half-life in days. */
	int64_t reference_time;
	float freshness_half_life_days;
	/* Multipliers of a term's score when it matched through a prefix of the
	 * last query word or a typo correction (exact matches rank first). */
	float prefix_penalty, typo_penalty;
	/* Prefix expansion of the last query word: shortest prefix expanded,
	 * and at most this many lexicon words (those in most documents first;
	 * 0 = all of them). */
	uint32_t prefix_min_len, max_prefix_terms;
	/* Typo correction: at most this many corrections per word, all at the
	 * smallest edit distance found, most frequent first. */
	uint32_t max_corrections;
	/* A query word found in at most this many documents is also corrected
	 * (0: only words the index has never seen). */
	uint32_t rare_df;
	/* Attribute facets: values reported per key unless the query says. */
	uint32_t facet_values_per_key;
	/* How facet counts are computed: 0 chooses per facet (bitmap
	 * intersections for large match sets, a pass over the matching
	 * documents for small ones); 1 always intersects; 2 always passes.
	 * Both give identical counts; the choice only changes speed. */
	int facet_mode;
	/* Facets of this many recent queries are kept until the next write
	 * (0: none). Popular words match the most products and are asked
	 * the most; between two writes their facets are computed once. */
	uint32_t facet_cache_entries;
} es_config;

/* Fills *cfg with the defaults described in README.md. */
void es_config_default(es_config *cfg);

/* ---- documents ------------------------------------------------------ */

typedef struct {
	const char *key;
	const char *value;
} es_attr;

typedef struct {
	const char *product_id;           /* required, unique, <= ES_MAX_ID_BYTES */
	const char *store_id;             /* required */
	const char *const *category_path; /* root first, down to the product's own */
	size_t category_count;            /* 0..ES_MAX_CATEGORY_DEPTH */
	const char *title;                /* required (may be empty) */
	const char *description;          /* may be NULL */
	const es_attr *attrs;             /* one value per key; a repeated key is EINVAL */
	size_t attr_count;
	int64_t price;        /* minor units, >= 0 */
	const char *currency; /* ISO 4217, three letters */
	int64_t stock;        /* quantity on hand; > 0 is "in stock" */
	double rating;        /* average, 0..5 */
	uint32_t rating_count;
	uint64_t sales;
	int64_t created; /* unix seconds */
} es_doc;

/* ---- the index ------------------------------------------------------ */

typedef struct es_index es_index;

/* NULL cfg = defaults. Returns NULL when out of memory or cfg is invalid. */
es_index *es_create(const es_config *cfg);
void es_destroy(es_index *ix);

/* Inserts the product, or replaces the one with the same product_id. */
int es_upsert(es_index *ix, const es_doc *doc);

/* ES_ENOTFOUND if the product is not in the index. */
int es_remove(es_index *ix, const char *product_id);

/*
 * Internal document ids are dense uint32s handed out in order. Top-k by
 * relevance stops early because ids are in static-score order, which only
 * holds for the documents present at the last es_optimize: a product
 * upserted later gets a new id at the end (its old id is tombstoned, never
 * reused) and those "tail" documents are always scored in full.
 * es_optimize renumbers all live documents in static-score order and drops
 * tombstones. Call it after a bulk load and when stats.tail_docs grows
 * (say past 5% of the index); it holds the write lock for several seconds
 * per million products (see README.md), so a service that cannot pause
 * queries that long builds a second index and swaps.
 */
int es_optimize(es_index *ix);

typedef struct {
	uint64_t docs;         /* live products */
	uint64_t tail_docs;    /* live products added since the last es_optimize */
	uint64_t tombstones;   /* ids of removed or replaced products */
	uint64_t terms;        /* lexicon words ever seen */
	uint64_t memory_bytes; /* heap held by the index, counted, not estimated */
} es_stats;

void es_get_stats(es_index *ix, es_stats *out);

/* ---- queries -------------------------------------------------------- */

typedef enum {
	ES_SORT_RELEVANCE = 0, /* score desc */
	ES_SORT_PRICE_ASC,
	ES_SORT_PRICE_DESC,
	ES_SORT_NEWEST, /* created desc */
	ES_SORT_RATING, /* rating desc */
} es_sort;

typedef struct {
	const char *key;
	const char *const *values; /* any of them (OR) */
	size_t value_count;
} es_attr_filter;

typedef struct {
	/* Every word must match (AND): exactly, as a prefix (last word only,
	 * unless exact_last), or through a typo correction. NULL or no words =
	 * every product. */
	const char *text;
	bool exact_last;
	/* Filters; an empty list does not filter. Categories: a product matches
	 * if any listed id is on its category path (subtree). Stores: any of
	 * them. Attribute filters: values of one key OR, different keys AND
	 * (a key listed twice is EINVAL). */
	const char *const *category_ids;
	size_t category_count;
	const char *const *store_ids;
	size_t store_count;
	bool has_min_price, has_max_price;
	int64_t min_price, max_price; /* inclusive */
	const es_attr_filter *attr_filters;
	size_t attr_filter_count;
	bool in_stock_only;

	es_sort sort;
	uint32_t page_size;    /* 1..ES_MAX_PAGE_SIZE */
	const uint8_t *cursor; /* next_cursor of the previous page, or NULL */
	size_t cursor_len;

	/* Facets over the whole match set (not just the page). */
	bool facets;
	/* Price buckets: [b0,b1), [b1,b2), ..., [bn-1, +inf); strictly
	 * increasing, at most 32. None = no price facet. */
	const int64_t *price_bounds;
	size_t price_bound_count;
	uint32_t facet_values_per_key; /* 0 = the index's default */
} es_query;

typedef struct {
	const char *product_id;
	double score; /* relevance; for other sorts the static score */
} es_hit;

typedef struct {
	const char *value;
	uint64_t count;
} es_count;

typedef struct {
	const char *key;
	uint64_t docs;          /* matching products having the key */
	es_count *values;       /* the top values, count desc then value asc */
	size_t value_count;     /* how many are listed (<= facet_values_per_key) */
	size_t distinct_values; /* how many distinct values the matches have */
} es_attr_facet;

typedef struct {
	int64_t lo, hi; /* [lo, hi); hi == INT64_MAX for the last, open bucket */
	uint64_t count;
} es_price_bucket;

typedef struct {
	es_hit *hits;
	size_t hit_count;
	uint64_t total; /* exact number of matching products */
	/* Opaque bytes for the next page (the caller base64s them into a page
	 * token), NULL when this is the last page. Keyset on (sort key, product
	 * id): products added or removed meanwhile neither shift nor repeat the
	 * others. */
	uint8_t *next_cursor;
	size_t next_cursor_len;
	/* Facets (when asked): every category id on the matching products'
	 * paths and every store, count desc then id asc; attribute keys in key
	 * order. */
	es_count *categories;
	size_t category_count;
	es_count *stores;
	size_t store_count;
	es_price_bucket *price_buckets;
	size_t price_bucket_count;
	es_attr_facet *attrs;
	size_t attr_count;
	/* How each query word was read: "hedphones" -> "headphones". */
	char **corrections; /* pairs: word, the correction used first */
	size_t correction_count;
	void *mem_; /* internal */
} es_result;

/* On ES_OK *out holds the page; release it with es_result_free. On an error
 * *out is empty (free is still safe). */
int es_search(es_index *ix, const es_query *q, es_result *out);
void es_result_free(es_result *r);

/* ---- suggest -------------------------------------------------------- */

typedef struct {
	const char *product_id;
	const char *title;
} es_suggestion;

typedef struct {
	es_suggestion *items;
	size_t count;
	void *mem_;
} es_suggest_result;

/* Up to limit (<= ES_MAX_SUGGEST) distinct titles of the products with the
 * best static score whose title has the prefix's last word as a word
 * prefix and its other words as words. */
int es_suggest(es_index *ix, const char *prefix, size_t limit, es_suggest_result *out);
void es_suggest_result_free(es_suggest_result *r);

/* ---- the tokenizer, exposed for tests and the service --------------- */

/* Calls fn for each word of text: ASCII letters lowercased, split on every
 * ASCII byte that is not a letter or digit; bytes >= 0x80 are word bytes, so
 * a UTF-8 character is never split. Words over ES_MAX_TOKEN_BYTES are cut at
 * a character boundary. fn returns false to stop. */
typedef bool (*es_token_fn)(const char *word, size_t len, void *arg);
void es_tokenize(const char *text, es_token_fn fn, void *arg);

#ifdef __cplusplus
}
#endif
#endif
