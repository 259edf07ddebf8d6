/*
 * test_search_threads.c - readers query, page, suggest and read stats while
 * a writer upserts and removes. Each answer must be consistent in itself
 * (the counts of one answer come from one state of the index) and the
 * final state must be exactly what the writer did. Bounded in operations
 * and in time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "search.h"

#define NIDS 3000
#define WRITES 4000
#define READERS 3

static const char *vocab[] = {"lamp", "chair", "table", "wooden", "modern", "blue", "lamps",
			      "desk", "office", "garden", "steel", "light", "kitchen", "shelf"};
#define NV (sizeof vocab / sizeof vocab[0])

static atomic_bool writer_done;
static atomic_long reads;

static uint32_t next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 16);
}

static int put(es_index *ix, uint64_t *s, int n)
{
	char id[16], title[128] = "", store[8], cat[8];
	snprintf(id, sizeof id, "id%05d", n);
	for (int i = 0, w = 2 + (int)(next(s) % 4); i < w; i++) {
		strcat(title, vocab[next(s) % NV]);
		strcat(title, " ");
	}
	snprintf(store, sizeof store, "s%u", next(s) % 7);
	snprintf(cat, sizeof cat, "c%u", next(s) % 5);
	const char *cats[] = {"root", cat};
	es_attr attrs[] = {{"color", vocab[next(s) % 6]}};
	es_doc d = {.product_id = id,
		    .store_id = store,
		    .category_path = cats,
		    .category_count = 2,
		    .title = title,
		    .description = "made to last",
		    .attrs = attrs,
		    .attr_count = 1,
		    .price = next(s) % 50000,
		    .currency = "EUR",
		    .stock = next(s) % 3,
		    .rating = (next(s) % 50) / 10.0,
		    .rating_count = next(s) % 100,
		    .sales = next(s) % 1000,
		    .created = 1700000000 - (int64_t)(next(s) % 5000000)};
	return es_upsert(ix, &d);
}

static bool live[NIDS];

static void *writer(void *arg)
{
	es_index *ix = arg;
	uint64_t s = 42;
	for (int i = 0; i < WRITES; i++) {
		int n = (int)(next(&s) % NIDS);
		if (next(&s) % 4 == 0) {
			char id[16];
			snprintf(id, sizeof id, "id%05d", n);
			int rc = es_remove(ix, id);
			if (rc != (live[n] ? ES_OK : ES_ENOTFOUND))
				return "remove";
			live[n] = false;
		} else {
			if (put(ix, &s, n) != ES_OK)
				return "upsert";
			live[n] = true;
		}
		if (i == WRITES / 2 && es_optimize(ix) != ES_OK)
			return "optimize";
	}
	atomic_store(&writer_done, true);
	return NULL;
}

static void *reader(void *arg)
{
	es_index *ix = arg;
	uint64_t s = (uint64_t)(uintptr_t)&s | 1;
	time_t start = time(NULL);
	uint8_t cur[512];
	size_t curlen = 0;
	int64_t bounds[] = {0, 10000, 30000};
	for (long i = 0; i < 200000 && time(NULL) - start < 30; i++) {
		if (atomic_load(&writer_done) && i > 50)
			break;
		char text[64] = "";
		const char *typos[] = {"lmap", "chiar", "wodden", "kitchn", "sh", "of"};
		if (next(&s) % 4)
			strcpy(text, next(&s) % 2 ? vocab[next(&s) % NV] : typos[next(&s) % 6]);
		const char *stores[] = {"s1", "s3"};
		es_query q = {.text = text,
			      .page_size = 1 + next(&s) % 30,
			      .sort = (es_sort)(next(&s) % 5),
			      .facets = true,
			      .price_bounds = bounds,
			      .price_bound_count = 3,
			      .in_stock_only = next(&s) % 3 == 0};
		if (next(&s) % 3 == 0) {
			q.store_ids = stores;
			q.store_count = 2;
		}
		es_result r;
		if (es_search(ix, &q, &r) != ES_OK)
			return "search";
		uint64_t sum = 0, psum = 0;
		for (size_t k = 0; k < r.store_count; k++)
			sum += r.stores[k].count;
		for (size_t k = 0; k < r.price_bucket_count; k++)
			psum += r.price_buckets[k].count;
		bool bad = r.hit_count > q.page_size || r.hit_count > r.total || sum != r.total ||
			   psum != r.total || (r.total > r.hit_count && r.hit_count == q.page_size &&
					       !r.next_cursor);
		curlen = 0;
		if (r.next_cursor) {
			curlen = r.next_cursor_len;
			memcpy(cur, r.next_cursor, curlen);
		}
		es_result_free(&r);
		if (bad)
			return "inconsistent answer";
		if (curlen) {
			/* The next page of the same query, the index having moved. */
			q.cursor = cur;
			q.cursor_len = curlen;
			if (es_search(ix, &q, &r) != ES_OK)
				return "next page";
			es_result_free(&r);
		}
		es_suggest_result sr;
		if (es_suggest(ix, vocab[next(&s) % NV], 1 + next(&s) % 10, &sr) != ES_OK)
			return "suggest";
		es_suggest_result_free(&sr);
		es_stats st;
		es_get_stats(ix, &st);
		if (st.docs > NIDS)
			return "stats";
		atomic_fetch_add(&reads, 1);
	}
	return NULL;
}

static void test_readers_and_writer(void **state)
{
	(void)state;
	es_index *ix = es_create(NULL);
	assert_non_null(ix);
	uint64_t s = 7;
	for (int n = 0; n < NIDS; n += 2) {
		assert_int_equal(put(ix, &s, n), ES_OK);
		live[n] = true;
	}
	assert_int_equal(es_optimize(ix), ES_OK);
	pthread_t w, r[READERS];
	assert_int_equal(pthread_create(&w, NULL, writer, ix), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&r[i], NULL, reader, ix), 0);
	void *ret;
	assert_int_equal(pthread_join(w, &ret), 0);
	if (ret)
		fail_msg("writer: %s", (const char *)ret);
	for (int i = 0; i < READERS; i++) {
		assert_int_equal(pthread_join(r[i], &ret), 0);
		if (ret)
			fail_msg("reader: %s", (const char *)ret);
	}
	assert_true(atomic_load(&reads) > 0);
	size_t want = 0;
	for (int n = 0; n < NIDS; n++)
		want += live[n];
	es_stats st;
	es_get_stats(ix, &st);
	assert_int_equal(st.docs, want);
	es_query q = {.page_size = 1};
	es_result res;
	assert_int_equal(es_search(ix, &q, &res), ES_OK);
	assert_int_equal(res.total, want);
	es_result_free(&res);
	es_destroy(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_readers_and_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
