/*
 * test_search.c - the search engine on a small fixed catalog: tokenizer,
 * exact, prefix and typo matching, every filter, every sort, paging (also
 * while products arrive), facets, upsert, remove, bad cursors, Suggest.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "search.h"

#define T0 1700000000

typedef struct {
	const char *id, *store, *cats[3], *title, *desc;
	es_attr attrs[3];
	int64_t price, stock;
	double rating;
	uint32_t rating_count;
	uint64_t sales;
	int64_t created;
} product;

static const product catalog[] = {
	{"p01", "s1", {"electronics", "audio", "headphones"}, "Sony Wireless Headphones WH-1000",
	 "Noise cancelling over-ear headphones", {{"color", "black"}, {"brand", "sony"}}, 29900, 5,
	 4.7, 1200, 5000, T0 - 86400 * 10},
	{"p02", "s1", {"electronics", "audio", "headphones"}, "Bose QuietComfort Headphones",
	 "Comfortable wireless headphones", {{"color", "white"}, {"brand", "bose"}}, 27900, 0, 4.5,
	 800, 3000, T0 - 86400 * 40},
	{"p03", "s2", {"electronics", "audio", "speakers"}, "JBL Portable Speaker",
	 "Wireless speaker, waterproof", {{"color", "blue"}, {"brand", "jbl"}}, 9900, 12, 4.4, 300,
	 900, T0 - 86400 * 5},
	{"p04", "s2", {"electronics", "computers", NULL}, "Logitech Wireless Mouse",
	 "Ergonomic mouse with long battery life", {{"color", "black"}, {"brand", "logitech"}}, 2900,
	 40, 4.2, 2000, 10000, T0 - 86400 * 100},
	{"p05", "s3", {"electronics", "computers", NULL}, "Mechanical Keyboard",
	 "Tactile switches, backlit keys", {{"color", "black"}, {"brand", "keychron"}}, 8900, 3, 4.8,
	 150, 400, T0 - 86400 * 2},
	{"p06", "s3", {"home", "kitchen", NULL}, "Stainless Steel Kettle",
	 "Boils water fast. Not headphones.", {{"color", "silver"}}, 3900, 7, 3.9, 90, 200,
	 T0 - 86400 * 300},
	{"p07", "s1", {"home", "kitchen", NULL}, "Ceramic Coffee Mug", "A mug for coffee or tea",
	 {{"color", "white"}, {"size", "large"}}, 1200, 100, 4.0, 50, 700, T0 - 86400 * 20},
	{"p08", "s4", {"fashion", NULL, NULL}, "Black Cotton T-Shirt", "Soft cotton tee",
	 {{"color", "black"}, {"size", "m"}}, 1900, 0, 4.1, 400, 2500, T0 - 86400 * 60},
	{"p09", "s4", {"fashion", NULL, NULL}, "Café Crème Hoodie", "Warm hoodie, colour café crème",
	 {{"color", "beige"}, {"size", "l"}}, 4900, 9, 4.6, 30, 100, T0 - 86400 * 1},
	{"p10", "s2", {"electronics", "audio", "headphones"}, "Wired Studio Headphones",
	 "Headphones for the studio", {{"color", "black"}, {"brand", "audiotech"}}, 9900, 2, 4.3,
	 70, 150, T0 - 86400 * 15},
};
#define NCAT (sizeof catalog / sizeof catalog[0])

static void to_doc(const product *p, es_doc *d, const char **cats)
{
	memset(d, 0, sizeof *d);
	size_t nc = 0;
	while (nc < 3 && p->cats[nc]) {
		cats[nc] = p->cats[nc];
		nc++;
	}
	size_t na = 0;
	while (na < 3 && p->attrs[na].key)
		na++;
	d->product_id = p->id;
	d->store_id = p->store;
	d->category_path = cats;
	d->category_count = nc;
	d->title = p->title;
	d->description = p->desc;
	d->attrs = p->attrs;
	d->attr_count = na;
	d->price = p->price;
	d->currency = "EUR";
	d->stock = p->stock;
	d->rating = p->rating;
	d->rating_count = p->rating_count;
	d->sales = p->sales;
	d->created = p->created;
}

static es_index *make_index(void)
{
	es_config cfg;
	es_config_default(&cfg);
	cfg.reference_time = T0;
	es_index *ix = es_create(&cfg);
	assert_non_null(ix);
	for (size_t i = 0; i < NCAT; i++) {
		es_doc d;
		const char *cats[3];
		to_doc(&catalog[i], &d, cats);
		assert_int_equal(es_upsert(ix, &d), ES_OK);
	}
	return ix;
}

static const product *find(const char *id)
{
	for (size_t i = 0; i < NCAT; i++)
		if (strcmp(catalog[i].id, id) == 0)
			return &catalog[i];
	return NULL;
}

/* Runs q (all pages) and returns the ids as "p01,p03" in page order. */
static char *ids_of(es_index *ix, es_query q)
{
	static char buf[4096];
	buf[0] = '\0';
	if (!q.page_size)
		q.page_size = 100;
	uint8_t cur[512];
	for (int pages = 0; pages < 100; pages++) {
		es_result r;
		assert_int_equal(es_search(ix, &q, &r), ES_OK);
		for (size_t i = 0; i < r.hit_count; i++) {
			if (buf[0])
				strcat(buf, ",");
			strcat(buf, r.hits[i].product_id);
		}
		bool more = r.next_cursor != NULL;
		if (more) {
			assert_true(r.next_cursor_len <= sizeof cur);
			memcpy(cur, r.next_cursor, r.next_cursor_len);
			q.cursor = cur;
			q.cursor_len = r.next_cursor_len;
		}
		es_result_free(&r);
		if (!more)
			break;
	}
	return buf;
}

/* The same ids in byte order, for checks where order does not matter. */
static char *sorted_ids(es_index *ix, es_query q)
{
	char *s = ids_of(ix, q);
	char *parts[64];
	size_t n = 0;
	for (char *t = strtok(s, ","); t && n < 64; t = strtok(NULL, ","))
		parts[n++] = t;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(parts[j], parts[j - 1]) < 0; j--) {
			char *x = parts[j];
			parts[j] = parts[j - 1];
			parts[j - 1] = x;
		}
	static char out[4096];
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, parts[i]);
	}
	return out;
}

static es_query text(const char *t)
{
	es_query q = {.text = t, .page_size = 100};
	return q;
}

typedef struct {
	char words[16][80];
	size_t n;
} toks;

static bool tok_cb(const char *w, size_t n, void *arg)
{
	toks *t = arg;
	assert_true(n <= ES_MAX_TOKEN_BYTES);
	memcpy(t->words[t->n], w, n);
	t->words[t->n][n] = '\0';
	return ++t->n < 16;
}

/* An empty index is a normal state (a new shop, a rebuild): everything
 * works on it, optimize included. */
static void test_empty_index(void **state)
{
	es_index *ix = es_create(NULL);
	es_stats st;

	(void)state;
	assert_non_null(ix);
	assert_int_equal(es_optimize(ix), ES_OK);
	es_get_stats(ix, &st);
	assert_int_equal(st.docs, 0);
	assert_int_equal(es_remove(ix, "nope"), ES_ENOTFOUND);
	assert_int_equal(es_optimize(ix), ES_OK);
	es_destroy(ix);
}

static void test_tokenize(void **state)
{
	(void)state;
	toks t = {.n = 0};
	es_tokenize("Hello, WORLD! naïve-café 42x  \tA", tok_cb, &t);
	assert_int_equal(t.n, 6);
	assert_string_equal(t.words[0], "hello");
	assert_string_equal(t.words[1], "world");
	assert_string_equal(t.words[2], "naïve");
	assert_string_equal(t.words[3], "café");
	assert_string_equal(t.words[4], "42x");
	assert_string_equal(t.words[5], "a");
	t.n = 0;
	es_tokenize("", tok_cb, &t);
	es_tokenize(" ,.;-- ", tok_cb, &t);
	es_tokenize(NULL, tok_cb, &t);
	assert_int_equal(t.n, 0);
	/* 63 ASCII bytes then a two-byte character: cut before it, never
	 * inside. */
	char longw[80];
	memset(longw, 'a', 63);
	strcpy(longw + 63, "éz");
	es_tokenize(longw, tok_cb, &t);
	assert_int_equal(t.n, 1);
	assert_int_equal(strlen(t.words[0]), 63);
	/* 62 + "é" fits exactly in 64. */
	t.n = 0;
	memset(longw, 'b', 62);
	strcpy(longw + 62, "ébbb");
	es_tokenize(longw, tok_cb, &t);
	assert_int_equal(strlen(t.words[0]), 64);
	assert_memory_equal(t.words[0] + 62, "é", 2);
}

static void test_exact_prefix_typo(void **state)
{
	(void)state;
	es_index *ix = make_index();
	assert_string_equal(sorted_ids(ix, text("headphones")), "p01,p02,p06,p10");
	assert_string_equal(sorted_ids(ix, text("HEADPHONES!")), "p01,p02,p06,p10");
	/* The last word is a prefix for type-ahead... */
	assert_string_equal(sorted_ids(ix, text("headph")), "p01,p02,p06,p10");
	assert_string_equal(sorted_ids(ix, text("wire")), "p01,p02,p03,p04,p10");
	/* ...unless asked otherwise, and no other word is. */
	es_query q = text("headph");
	q.exact_last = true;
	assert_string_equal(sorted_ids(ix, q), "");
	assert_string_equal(sorted_ids(ix, text("headph sony")), "");
	/* Typos: an insertion, a transposition, a substitution. */
	assert_string_equal(sorted_ids(ix, text("hedphones")), "p01,p02,p06,p10");
	assert_string_equal(sorted_ids(ix, text("haedphones")), "p01,p02,p06,p10");
	assert_string_equal(sorted_ids(ix, text("keybaord")), "p05");
	assert_string_equal(sorted_ids(ix, text("kettel")), "p06");
	/* Two edits only from 8 bytes on. */
	assert_string_equal(sorted_ids(ix, text("hedphnes")), "p01,p02,p06,p10");
	assert_string_equal(sorted_ids(ix, text("hdphonees")), ""); /* 3 edits */
	assert_string_equal(sorted_ids(ix, text("mgu")), "");
	es_result r;
	q = text("wireless hedphones");
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.total, 2);
	assert_int_equal(r.correction_count, 1);
	assert_string_equal(r.corrections[0], "hedphones");
	assert_string_equal(r.corrections[1], "headphones");
	/* Exact matches rank above corrected ones: p01/p02 have the word in
	 * the title, and the exact query scores them higher. */
	double typo_top = r.hits[0].score;
	es_result_free(&r);
	q = text("wireless headphones");
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_true(r.hits[0].score > typo_top);
	assert_int_equal(r.correction_count, 0);
	es_result_free(&r);
	/* UTF-8 words match whole. */
	assert_string_equal(sorted_ids(ix, text("café")), "p09");
	assert_string_equal(sorted_ids(ix, text("CRÈME caf")), "p09");
	/* Nothing typed: everything. */
	assert_string_equal(sorted_ids(ix, text("  ")), "p01,p02,p03,p04,p05,p06,p07,p08,p09,p10");
	es_destroy(ix);
}

/* More words at the smallest distance than the correction step looks at
 * in one go (a dense family of product codes): the corrections are still
 * the most frequent of all of them, wherever the lookup meets them. */
static void test_typo_many_candidates(void **state)
{
	(void)state;
	es_index *ix = es_create(NULL);
	assert_non_null(ix);
	/* Every substitution of one letter of "kqzv": 4 x 25 words, one
	 * product each; three of the last position's get more products. */
	const char *boost[3] = {"kqzb", "kqzc", "kqzd"};
	int id = 0;
	for (int pos = 0; pos < 4; pos++)
		for (char c = 'a'; c <= 'z'; c++) {
			char w[5] = "kqzv";
			if (w[pos] == c)
				continue;
			w[pos] = c;
			int copies = 1;
			for (int b = 0; b < 3; b++)
				if (strcmp(w, boost[b]) == 0)
					copies = 5 - b;
			for (int k = 0; k < copies; k++) {
				char pid[16];
				snprintf(pid, sizeof pid, "p%03d", id++);
				es_doc d = {.product_id = pid, .store_id = "s", .title = w,
				            .currency = "EUR"};
				assert_int_equal(es_upsert(ix, &d), ES_OK);
			}
		}
	es_result r;
	es_query q = text("kqzv");
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.correction_count, 1);
	assert_string_equal(r.corrections[1], "kqzb");
	assert_int_equal(r.total, 5 + 4 + 3);
	es_result_free(&r);
	es_destroy(ix);
}

static void test_multiword_and(void **state)
{
	(void)state;
	es_index *ix = make_index();
	assert_string_equal(sorted_ids(ix, text("wireless headphones")), "p01,p02");
	assert_string_equal(sorted_ids(ix, text("wireless mouse")), "p04");
	assert_string_equal(sorted_ids(ix, text("wireless kettle")), "");
	/* Attribute values are searchable words too. */
	assert_string_equal(sorted_ids(ix, text("black headphones")), "p01,p10");
	es_destroy(ix);
}

static void test_filters(void **state)
{
	(void)state;
	es_index *ix = make_index();
	es_query q = text(NULL);
	const char *audio[] = {"audio"};
	q.category_ids = audio;
	q.category_count = 1;
	assert_string_equal(sorted_ids(ix, q), "p01,p02,p03,p10");
	const char *two[] = {"speakers", "kitchen"};
	q.category_ids = two;
	q.category_count = 2;
	assert_string_equal(sorted_ids(ix, q), "p03,p06,p07");
	const char *nope[] = {"garden"};
	q.category_ids = nope;
	q.category_count = 1;
	assert_string_equal(sorted_ids(ix, q), "");

	q = text(NULL);
	const char *stores[] = {"s2", "s4", "s9"};
	q.store_ids = stores;
	q.store_count = 3;
	assert_string_equal(sorted_ids(ix, q), "p03,p04,p08,p09,p10");

	q = text(NULL);
	q.has_min_price = true;
	q.min_price = 4900;
	q.has_max_price = true;
	q.max_price = 9900; /* inclusive at both ends */
	assert_string_equal(sorted_ids(ix, q), "p03,p05,p09,p10");
	q.has_max_price = false;
	assert_string_equal(sorted_ids(ix, q), "p01,p02,p03,p05,p09,p10");
	q.has_min_price = false;
	q.has_max_price = true;
	q.max_price = 1900;
	assert_string_equal(sorted_ids(ix, q), "p07,p08");

	q = text(NULL);
	const char *colors[] = {"black", "white"};
	const char *sizes[] = {"m", "large"};
	es_attr_filter af[2] = {{"color", colors, 2}, {"size", sizes, 2}};
	q.attr_filters = af;
	q.attr_filter_count = 1;
	assert_string_equal(sorted_ids(ix, q), "p01,p02,p04,p05,p07,p08,p10");
	q.attr_filter_count = 2;
	assert_string_equal(sorted_ids(ix, q), "p07,p08");

	q = text("headphones");
	q.in_stock_only = true;
	assert_string_equal(sorted_ids(ix, q), "p01,p06,p10");
	/* All at once. */
	q.category_ids = audio;
	q.category_count = 1;
	q.store_ids = stores;
	q.store_count = 3;
	assert_string_equal(sorted_ids(ix, q), "p10");

	/* A key twice and inverted prices are errors. */
	es_result r;
	es_attr_filter dup[2] = {{"color", colors, 1}, {"color", colors + 1, 1}};
	q = text(NULL);
	q.attr_filters = dup;
	q.attr_filter_count = 2;
	assert_int_equal(es_search(ix, &q, &r), ES_EINVAL);
	es_result_free(&r);
	q = text(NULL);
	q.has_min_price = q.has_max_price = true;
	q.min_price = 10;
	q.max_price = 9;
	assert_int_equal(es_search(ix, &q, &r), ES_EINVAL);
	es_destroy(ix);
}

static void test_sorts(void **state)
{
	(void)state;
	es_index *ix = make_index();
	es_query q = text(NULL);
	q.sort = ES_SORT_PRICE_ASC;
	/* p03 and p10 share a price: product id breaks the tie. */
	assert_string_equal(ids_of(ix, q), "p07,p08,p04,p06,p09,p05,p03,p10,p02,p01");
	q.sort = ES_SORT_PRICE_DESC;
	assert_string_equal(ids_of(ix, q), "p01,p02,p03,p10,p05,p09,p06,p04,p08,p07");
	q.sort = ES_SORT_NEWEST;
	assert_string_equal(ids_of(ix, q), "p09,p05,p03,p01,p10,p07,p02,p08,p04,p06");
	q.sort = ES_SORT_RATING;
	assert_string_equal(ids_of(ix, q), "p05,p01,p09,p02,p03,p10,p04,p08,p07,p06");
	/* Relevance: title words weigh more than the description. */
	q = text("headphones");
	char *rel = ids_of(ix, q);
	assert_int_equal(strlen(rel), strlen("p01,p02,p06,p10"));
	assert_string_equal(rel + strlen(rel) - 3, "p06");
	/* Scores fall along the page; the static score breaks text ties. */
	es_result r;
	q.page_size = 10;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	for (size_t i = 1; i < r.hit_count; i++)
		assert_true(r.hits[i - 1].score >= r.hits[i].score);
	es_result_free(&r);
	/* Sorted by price within a text match and a filter. */
	q = text("wireless");
	q.sort = ES_SORT_PRICE_ASC;
	q.in_stock_only = true;
	assert_string_equal(ids_of(ix, q), "p04,p03,p01");
	es_query bad = text(NULL);
	bad.sort = (es_sort)9;
	assert_int_equal(es_search(ix, &bad, &r), ES_EINVAL);
	es_destroy(ix);
}

/* Pages of size 1..4 in every sort cover every product exactly once, also
 * when products are added and removed between pages. */
static void test_paging(void **state)
{
	(void)state;
	for (int sort = ES_SORT_RELEVANCE; sort <= ES_SORT_RATING; sort++)
		for (uint32_t ps = 1; ps <= 4; ps++)
			for (int churn = 0; churn < 2; churn++) {
				es_index *ix = make_index();
				es_query q = text(NULL);
				q.sort = (es_sort)sort;
				q.page_size = ps;
				int seen[NCAT + 1] = {0};
				uint8_t cur[512];
				int added = 0;
				for (int page = 0; page < 50; page++) {
					es_result r;
					assert_int_equal(es_search(ix, &q, &r), ES_OK);
					assert_true(r.hit_count <= ps);
					for (size_t i = 0; i < r.hit_count; i++) {
						const char *id = r.hits[i].product_id;
						if (id[0] == 'p')
							seen[atoi(id + 1)]++;
					}
					bool more = r.next_cursor != NULL;
					if (more) {
						memcpy(cur, r.next_cursor, r.next_cursor_len);
						q.cursor = cur;
						q.cursor_len = r.next_cursor_len;
					}
					es_result_free(&r);
					if (!more)
						break;
					if (churn) {
						/* New products that sort anywhere. */
						char id[16], title[64];
						snprintf(id, sizeof id, "n%02d", added);
						snprintf(title, sizeof title, "New electric item %d",
							 added);
						const char *cats[] = {"electronics"};
						es_doc d = {.product_id = id,
							    .store_id = "s1",
							    .category_path = cats,
							    .category_count = 1,
							    .title = title,
							    .price = 500 + 3000 * (added % 12),
							    .currency = "EUR",
							    .stock = 1,
							    .rating = (added % 6) * 0.9,
							    .rating_count = 10,
							    .created = T0 - 86400 * (added % 30)};
						assert_int_equal(es_upsert(ix, &d), ES_OK);
						added++;
					}
				}
								for (size_t i = 1; i <= NCAT; i++)
					assert_int_equal(seen[i], 1);
				es_destroy(ix);
			}
}

/* Relevance pages stay stable while products with the same words arrive:
 * their document frequency, so the idf, changes between pages, and the
 * cursor carries the first page's. */
static void test_paging_relevance_with_inserts(void **state)
{
	(void)state;
	const char *queries[] = {"headphones", "wireless", "black headphones", "hedphones"};
	for (size_t qi = 0; qi < 4; qi++) {
		es_index *ix = make_index();
		char all[4096];
		strcpy(all, sorted_ids(ix, text(queries[qi])));
		es_query q = text(queries[qi]);
		/* Two a page and one new match a page: the walk ends. */
		q.page_size = 2;
		uint8_t cur[512];
		char seen[4096] = "";
		bool ended = false;
		for (int page = 0; page < 60 && !ended; page++) {
			es_result r;
			assert_int_equal(es_search(ix, &q, &r), ES_OK);
			for (size_t i = 0; i < r.hit_count; i++)
				if (r.hits[i].product_id[0] == 'p') {
					assert_null(strstr(seen, r.hits[i].product_id));
					strcat(seen, r.hits[i].product_id);
				}
			bool more = r.next_cursor != NULL;
			if (more) {
				memcpy(cur, r.next_cursor, r.next_cursor_len);
				q.cursor = cur;
				q.cursor_len = r.next_cursor_len;
			}
			es_result_free(&r);
			if (!more) {
				ended = true;
				break;
			}
			for (int k = page % 5; k == page % 5; k++) {
				char id[16], title[64];
				snprintf(id, sizeof id, "x%d-%d", page, k);
				snprintf(title, sizeof title, "%s headphones black wireless %d",
					 k % 2 ? "Great" : "Cheap", k);
				es_doc d = {.product_id = id,
					    .store_id = "s5",
					    .title = title,
					    .price = 100 * k,
					    .currency = "EUR",
					    .rating = k,
					    .rating_count = (uint32_t)(page * 7 + k),
					    .created = T0};
				assert_int_equal(es_upsert(ix, &d), ES_OK);
			}
		}
		assert_true(ended);
		/* Every product of the catalog that matched at the start, once. */
		for (char *t = strtok(all, ","); t; t = strtok(NULL, ","))
			if (!strstr(seen, t))
				fail_msg("'%s': %s not seen (seen %s)", queries[qi], t, seen);
		es_destroy(ix);
	}
}

static void test_facets(void **state)
{
	(void)state;
	es_index *ix = make_index();
	int64_t bounds[] = {0, 2000, 5000, 10000};
	es_query q = text("wireless");
	q.facets = true;
	q.price_bounds = bounds;
	q.price_bound_count = 4;
	q.facet_values_per_key = 100;
	es_result r;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.total, 4); /* p01 p02 p03 p04, not "wired" p10 */
	uint64_t sum = 0;
	for (size_t i = 0; i < r.store_count; i++)
		sum += r.stores[i].count;
	assert_int_equal(sum, r.total);
	assert_string_equal(r.stores[0].value, "s1");
	assert_int_equal(r.stores[0].count, 2);
	sum = 0;
	for (size_t i = 0; i < r.price_bucket_count; i++)
		sum += r.price_buckets[i].count;
	assert_int_equal(sum, r.total);
	assert_int_equal(r.price_bucket_count, 4);
	assert_int_equal(r.price_buckets[0].count, 0);
	assert_int_equal(r.price_buckets[1].count, 1); /* p04 2900 */
	assert_int_equal(r.price_buckets[2].count, 1); /* p03 9900 */
	assert_int_equal(r.price_buckets[3].count, 2);
	assert_true(r.price_buckets[3].hi == INT64_MAX);
	/* Every category on the paths: the root holds them all. */
	assert_string_equal(r.categories[0].value, "electronics");
	assert_int_equal(r.categories[0].count, 4);
	bool found_audio = false;
	for (size_t i = 0; i < r.category_count; i++)
		if (strcmp(r.categories[i].value, "audio") == 0) {
			found_audio = true;
			assert_int_equal(r.categories[i].count, 3);
		}
	assert_true(found_audio);
	/* Attribute keys in order; values add up to the key's products. */
	assert_int_equal(r.attr_count, 2);
	assert_string_equal(r.attrs[0].key, "brand");
	assert_string_equal(r.attrs[1].key, "color");
	for (size_t k = 0; k < r.attr_count; k++) {
		sum = 0;
		for (size_t i = 0; i < r.attrs[k].value_count; i++)
			sum += r.attrs[k].values[i].count;
		assert_int_equal(sum, r.attrs[k].docs);
		assert_int_equal(r.attrs[k].docs, 4);
	}
	assert_string_equal(r.attrs[1].values[0].value, "black");
	assert_int_equal(r.attrs[1].values[0].count, 2);
	es_result_free(&r);
	/* Top N per key. */
	q.facet_values_per_key = 1;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.attrs[1].value_count, 1);
	assert_int_equal(r.attrs[1].distinct_values, 3);
	es_result_free(&r);
	/* The same facets again (from the cache), and fresh ones after a
	 * write. */
	q.facet_values_per_key = 100;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.stores[0].count, 2);
	assert_int_equal(r.attrs[1].values[0].count, 2);
	es_result_free(&r);
	es_doc nd;
	const char *ncats[3];
	to_doc(find("p05"), &nd, ncats);
	nd.product_id = "p20";
	nd.title = "Wireless Mechanical Keyboard";
	nd.store_id = "s1";
	assert_int_equal(es_upsert(ix, &nd), ES_OK);
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.total, 5);
	assert_string_equal(r.stores[0].value, "s1");
	assert_int_equal(r.stores[0].count, 3);
	assert_int_equal(r.attrs[1].values[0].count, 3); /* black */
	es_result_free(&r);
	assert_int_equal(es_remove(ix, "p20"), ES_OK);
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.stores[0].count, 2);
	es_result_free(&r);
	/* No match: empty facets, not an error. */
	q = text("zzzzqqq");
	q.facets = true;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_int_equal(r.total, 0);
	assert_int_equal(r.store_count, 0);
	assert_int_equal(r.category_count, 0);
	es_result_free(&r);
	es_destroy(ix);
}

static void test_upsert_remove(void **state)
{
	(void)state;
	es_index *ix = make_index();
	es_stats st;
	es_get_stats(ix, &st);
	assert_int_equal(st.docs, NCAT);
	assert_true(st.memory_bytes > 0);
	/* Memory is counted: more products, more bytes. */
	uint64_t before_mem = st.memory_bytes;
	for (int i = 0; i < 200; i++) {
		char id[16], title[64];
		snprintf(id, sizeof id, "m%03d", i);
		snprintf(title, sizeof title, "Filler product number %d", i);
		es_doc fd = {.product_id = id, .store_id = "s1", .title = title,
			     .currency = "EUR", .created = T0};
		assert_int_equal(es_upsert(ix, &fd), ES_OK);
	}
	es_get_stats(ix, &st);
	assert_true(st.memory_bytes > before_mem + 200 * 32);
	for (int i = 0; i < 200; i++) {
		char id[16];
		snprintf(id, sizeof id, "m%03d", i);
		assert_int_equal(es_remove(ix, id), ES_OK);
	}
	assert_int_equal(es_optimize(ix), ES_OK);
	es_get_stats(ix, &st);
	assert_int_equal(st.tombstones, 0);
	/* Replace p06: new title, new store, new price. */
	es_doc d;
	const char *cats[3];
	to_doc(find("p06"), &d, cats);
	d.title = "Electric Glass Kettle";
	d.description = "";
	d.store_id = "s9";
	d.price = 4500;
	assert_int_equal(es_upsert(ix, &d), ES_OK);
	es_get_stats(ix, &st);
	assert_int_equal(st.docs, NCAT);
	assert_int_equal(st.tombstones, 1);
	assert_string_equal(sorted_ids(ix, text("headphones")), "p01,p02,p10");
	assert_string_equal(sorted_ids(ix, text("glass")), "p06");
	assert_string_equal(sorted_ids(ix, text("stainless")), "");
	es_query q = text(NULL);
	const char *s9[] = {"s9"}, *s3[] = {"s3"};
	q.store_ids = s9;
	q.store_count = 1;
	assert_string_equal(sorted_ids(ix, q), "p06");
	q.store_ids = s3;
	assert_string_equal(sorted_ids(ix, q), "p05");
	/* Remove. */
	assert_int_equal(es_remove(ix, "p05"), ES_OK);
	assert_int_equal(es_remove(ix, "p05"), ES_ENOTFOUND);
	assert_int_equal(es_remove(ix, ""), ES_EINVAL);
	assert_string_equal(sorted_ids(ix, text("keyboard")), "");
	assert_string_equal(sorted_ids(ix, q), "");
	/* A word now in no product is not a correction candidate. */
	assert_string_equal(sorted_ids(ix, text("keybaord")), "");
	es_get_stats(ix, &st);
	assert_int_equal(st.docs, NCAT - 1);
	/* Renumbering keeps every answer. */
	char before[4096];
	strcpy(before, ids_of(ix, text(NULL)));
	assert_int_equal(es_optimize(ix), ES_OK);
	assert_string_equal(ids_of(ix, text(NULL)), before);
	es_get_stats(ix, &st);
	assert_int_equal(st.tombstones, 0);
	assert_int_equal(st.tail_docs, 0);
	/* Bad documents change nothing. */
	to_doc(find("p01"), &d, cats);
	d.price = -1;
	assert_int_equal(es_upsert(ix, &d), ES_EINVAL);
	d.price = 1;
	d.currency = "eu";
	assert_int_equal(es_upsert(ix, &d), ES_EINVAL);
	d.currency = "EUR";
	d.rating = 5.5;
	assert_int_equal(es_upsert(ix, &d), ES_EINVAL);
	d.rating = 1;
	es_attr dup[2] = {{"color", "red"}, {"color", "blue"}};
	d.attrs = dup;
	d.attr_count = 2;
	assert_int_equal(es_upsert(ix, &d), ES_EINVAL);
	d.attr_count = 0;
	d.product_id = "";
	assert_int_equal(es_upsert(ix, &d), ES_EINVAL);
	assert_string_equal(sorted_ids(ix, text("sony")), "p01");
	es_destroy(ix);
}

static void test_bad_cursor(void **state)
{
	(void)state;
	es_index *ix = make_index();
	es_query q = text("headphones");
	q.page_size = 1;
	es_result r;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	assert_non_null(r.next_cursor);
	uint8_t cur[512];
	size_t n = r.next_cursor_len;
	memcpy(cur, r.next_cursor, n);
	es_result_free(&r);
	q.cursor = cur;
	q.cursor_len = n;
	assert_int_equal(es_search(ix, &q, &r), ES_OK);
	es_result_free(&r);
	/* Every truncation, every flipped byte. */
	for (size_t len = 0; len < n; len++) {
		q.cursor_len = len;
		int rc = es_search(ix, &q, &r);
		if (rc != (len == 0 ? ES_OK : ES_ECURSOR))
			fail_msg("cursor cut to %zu of %zu bytes: %d", len, n, rc);
		es_result_free(&r);
	}
	q.cursor_len = n;
	for (size_t i = 0; i < n; i++) {
		/* The sort key, the idf snapshot and the product id may
		 * take other values without breaking the format; the frame
		 * (magic, version, sort, word count, query fingerprint, id
		 * length) must not. */
		if (i >= 12 && i != n - 4)
			continue;
		cur[i] ^= 0x5a;
		assert_int_equal(es_search(ix, &q, &r), ES_ECURSOR);
		es_result_free(&r);
		cur[i] ^= 0x5a;
	}
	uint8_t junk[] = "not a cursor";
	q.cursor = junk;
	q.cursor_len = sizeof junk;
	assert_int_equal(es_search(ix, &q, &r), ES_ECURSOR);
	assert_string_equal(es_strerror(ES_ECURSOR),
			    "the page cursor does not belong to this query or is damaged");
	/* A cursor of another query or another sort. */
	q.cursor = cur;
	q.cursor_len = n;
	q.text = "wireless";
	assert_int_equal(es_search(ix, &q, &r), ES_ECURSOR);
	q.text = "headphones";
	q.sort = ES_SORT_PRICE_ASC;
	assert_int_equal(es_search(ix, &q, &r), ES_ECURSOR);
	q.sort = ES_SORT_RELEVANCE;
	q.in_stock_only = true;
	assert_int_equal(es_search(ix, &q, &r), ES_ECURSOR);
	/* Page size limits. */
	q = text("x");
	q.page_size = 0;
	assert_int_equal(es_search(ix, &q, &r), ES_EINVAL);
	q.page_size = ES_MAX_PAGE_SIZE + 1;
	assert_int_equal(es_search(ix, &q, &r), ES_EINVAL);
	es_destroy(ix);
}

static void test_suggest(void **state)
{
	(void)state;
	es_index *ix = make_index();
	for (int round = 0; round < 2; round++) {
		es_suggest_result s;
		assert_int_equal(es_suggest(ix, "Head", 10, &s), ES_OK);
		/* Titles only (p06 says headphones in its description), by
		 * static score: p01 (4.7, 1200 votes, most sales) first. */
		assert_int_equal(s.count, 3);
		assert_string_equal(s.items[0].product_id, "p01");
		assert_string_equal(s.items[0].title, "Sony Wireless Headphones WH-1000");
		for (size_t i = 0; i < s.count; i++)
			assert_non_null(strstr(s.items[i].title, "Headphones"));
		es_suggest_result_free(&s);
		assert_int_equal(es_suggest(ix, "wireless he", 10, &s), ES_OK);
		assert_int_equal(s.count, 1);
		es_suggest_result_free(&s);
		assert_int_equal(es_suggest(ix, "w", 2, &s), ES_OK);
		assert_int_equal(s.count, 2);
		es_suggest_result_free(&s);
		assert_int_equal(es_suggest(ix, "qqq", 10, &s), ES_OK);
		assert_int_equal(s.count, 0);
		es_suggest_result_free(&s);
		assert_int_equal(es_suggest(ix, "a", 11, &s), ES_EINVAL);
		es_suggest_result_free(&s);
		/* Same answers once ids follow the static score. */
		assert_int_equal(es_optimize(ix), ES_OK);
	}
	/* Equal titles count once. */
	es_doc d;
	const char *cats[3];
	to_doc(find("p10"), &d, cats);
	d.product_id = "p11";
	assert_int_equal(es_upsert(ix, &d), ES_OK);
	es_suggest_result s;
	assert_int_equal(es_suggest(ix, "studio", 10, &s), ES_OK);
	assert_int_equal(s.count, 1);
	es_suggest_result_free(&s);
	es_destroy(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_index),
		cmocka_unit_test(test_tokenize),	  cmocka_unit_test(test_exact_prefix_typo),
		cmocka_unit_test(test_typo_many_candidates),
		cmocka_unit_test(test_multiword_and), cmocka_unit_test(test_filters),
		cmocka_unit_test(test_sorts),	  cmocka_unit_test(test_paging),
		cmocka_unit_test(test_paging_relevance_with_inserts),
		cmocka_unit_test(test_facets),	  cmocka_unit_test(test_upsert_remove),
		cmocka_unit_test(test_bad_cursor),	  cmocka_unit_test(test_suggest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
