/*
 * test_catalog.c - estore-catalog's pure parts: input rules (validate.c)
 * and the product cache's table (cache.c) without PostgreSQL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cache.h"
#include "rpc/arena.h"
#include "validate.h"

#define UUID_A "0b7e6f1c-2d3a-4e5f-8a9b-0c1d2e3f4a5b"
#define UUID_B "1b7e6f1c-2d3a-4e5f-8a9b-0c1d2e3f4a5b"

static void test_uuid(void **state)
{
	(void)state;
	assert_true(cat_is_uuid(UUID_A));
	assert_true(cat_is_uuid("0B7E6F1C-2D3A-4E5F-8A9B-0C1D2E3F4A5B"));
	assert_false(cat_is_uuid(""));
	assert_false(cat_is_uuid(UUID_A "0"));
	assert_false(cat_is_uuid("0b7e6f1c-2d3a-4e5f-8a9b-0c1d2e3f4a5"));
	assert_false(cat_is_uuid("0b7e6f1c_2d3a-4e5f-8a9b-0c1d2e3f4a5b"));
	assert_false(cat_is_uuid("gb7e6f1c-2d3a-4e5f-8a9b-0c1d2e3f4a5b"));
}

static void test_slugs(void **state)
{
	char s64[65];

	(void)state;
	assert_null(cat_check_store_slug("ada-audio"));
	assert_null(cat_check_store_slug("a1b"));
	assert_non_null(cat_check_store_slug("ab"));
	assert_non_null(cat_check_store_slug("-abc"));
	assert_non_null(cat_check_store_slug("abc-"));
	assert_non_null(cat_check_store_slug("aBc"));
	assert_non_null(cat_check_store_slug("a_c"));
	assert_non_null(cat_check_store_slug(UUID_A));
	memset(s64, 'a', 64);
	s64[64] = '\0';
	assert_non_null(cat_check_store_slug(s64));
	s64[63] = '\0';
	assert_null(cat_check_store_slug(s64));
	assert_null(cat_check_category_slug("a"));
	assert_non_null(cat_check_category_slug(""));
}

static void test_text(void **state)
{
	(void)state;
	assert_null(cat_check_name("Zoë's Café ☕"));
	assert_non_null(cat_check_name(""));
	assert_non_null(cat_check_name("   "));
	assert_non_null(cat_check_name("tab\there"));
	assert_non_null(cat_check_name("c1 \xc2\x85"));       /* U+0085 */
	assert_non_null(cat_check_name("bad \xc3\x28"));      /* invalid UTF-8 */
	assert_non_null(cat_check_name("over \xe0\x80\xaf")); /* overlong */
	assert_null(cat_check_description("line\nbreak\ttab", CAT_PRODUCT_DESCRIPTION_MAX));
	assert_null(cat_check_description("", CAT_STORE_DESCRIPTION_MAX));
	assert_non_null(cat_check_description("bell\x07", CAT_STORE_DESCRIPTION_MAX));
	assert_null(cat_check_title("ü"));
}

static void test_money_and_attributes(void **state)
{
	(void)state;
	assert_null(cat_check_currency("EUR"));
	assert_non_null(cat_check_currency("eur"));
	assert_non_null(cat_check_currency("EU"));
	assert_non_null(cat_check_currency("EURO"));
	assert_null(cat_check_price(0));
	assert_null(cat_check_price(CAT_PRICE_MAX));
	assert_non_null(cat_check_price(-1));
	assert_non_null(cat_check_price(CAT_PRICE_MAX + 1));
	assert_null(cat_check_attr_key("screen_size-in"));
	assert_non_null(cat_check_attr_key("Color"));
	assert_non_null(cat_check_attr_key("a:b"));
	assert_non_null(cat_check_attr_key(""));
	assert_null(cat_check_attr_value("black"));
	assert_non_null(cat_check_attr_value(""));
}

static void test_image_urls(void **state)
{
	(void)state;
	assert_null(cat_check_image_url("https://img.example/a.jpg"));
	assert_null(cat_check_image_url("http://img.example:8080/a%20b.png?x=1"));
	assert_non_null(cat_check_image_url("ftp://img.example/a"));
	assert_non_null(cat_check_image_url("https://"));
	assert_non_null(cat_check_image_url("https:///path"));
	assert_non_null(cat_check_image_url("https://a b/"));
	assert_non_null(cat_check_image_url("https://img.example/\xc3\xa9"));
	assert_non_null(cat_check_image_url("javascript:alert(1)"));
}

static void test_paths(void **state)
{
	unsigned bit = 0;

	(void)state;
	assert_null(cat_product_path_bit("price", &bit));
	assert_int_equal(bit, CAT_PF_PRICE);
	assert_non_null(cat_product_path_bit("store_id", &bit));
	assert_non_null(cat_product_path_bit("price.currency", &bit));
}

/* ---- cache ---- */

static cat_product_meta meta(const char *owner, bool active)
{
	cat_product_meta m = { .store_active = active };

	snprintf(m.owner_id, sizeof(m.owner_id), "%s", owner);
	return m;
}

static void put(prod_cache *c, const char *id, const char *body,
		const char *store)
{
	cat_product_meta m = meta(UUID_A, true);

	prod_cache_put(c, id, prod_cache_stamp_of(c, id),
		       (const uint8_t *)body, strlen(body), &m, store);
}

static bool has(prod_cache *c, const char *id, const char *want)
{
	rpc_arena *a = rpc_arena_new(256);
	cat_product_meta m;
	uint8_t *data;
	size_t len;
	bool hit = prod_cache_get(c, id, a, &data, &len, &m);

	if (hit && want)
		hit = len == strlen(want) && memcmp(data, want, len) == 0;
	rpc_arena_free(a);
	return hit;
}

static void id_n(char *out, int n)
{
	snprintf(out, 37, "%08x-2d3a-4e5f-8a9b-0c1d2e3f4a5b", (unsigned)n);
}

static void test_cache_off_until_turned_on(void **state)
{
	prod_cache *c = prod_cache_new(8);

	(void)state;
	put(c, UUID_A, "x", UUID_B);
	assert_false(has(c, UUID_A, NULL));
	prod_cache_set_on(c, true);
	put(c, UUID_A, "x", UUID_B);
	assert_true(has(c, UUID_A, "x"));
	/* Ids compare caselessly. */
	assert_true(has(c, "0B7E6F1C-2D3A-4E5F-8A9B-0C1D2E3F4A5B", "x"));
	/* Off flushes: on again starts empty. */
	prod_cache_set_on(c, false);
	assert_false(has(c, UUID_A, NULL));
	prod_cache_set_on(c, true);
	assert_false(has(c, UUID_A, NULL));
	prod_cache_free(c);

	c = prod_cache_new(0);
	prod_cache_set_on(c, true);
	put(c, UUID_A, "x", UUID_B);
	assert_false(has(c, UUID_A, NULL));
	prod_cache_free(c);
}

static void test_cache_bounded_lru(void **state)
{
	prod_cache *c = prod_cache_new(3);
	prod_cache_stats st;
	char ids[5][37];

	(void)state;
	prod_cache_set_on(c, true);
	for (int i = 0; i < 5; i++)
		id_n(ids[i], i);
	put(c, ids[0], "0", UUID_B);
	put(c, ids[1], "1", UUID_B);
	put(c, ids[2], "2", UUID_B);
	assert_true(has(c, ids[0], "0"));  /* 0 is now the most recent */
	put(c, ids[3], "3", UUID_B);       /* evicts 1 */
	assert_false(has(c, ids[1], NULL));
	assert_true(has(c, ids[0], "0"));
	assert_true(has(c, ids[2], "2"));
	assert_true(has(c, ids[3], "3"));
	put(c, ids[3], "3b", UUID_B);      /* replace, no eviction */
	assert_true(has(c, ids[3], "3b"));
	assert_true(has(c, ids[0], "0"));
	prod_cache_get_stats(c, &st);
	assert_int_equal(st.entries, 3);
	assert_true(st.on);
	prod_cache_free(c);
}

static void test_cache_invalidation_beats_a_racing_read(void **state)
{
	prod_cache *c = prod_cache_new(8);
	cat_product_meta m = meta(UUID_A, true);
	prod_cache_stamp s;

	(void)state;
	prod_cache_set_on(c, true);
	put(c, UUID_A, "old", UUID_B);
	prod_cache_invalidate(c, UUID_A);
	assert_false(has(c, UUID_A, NULL));

	/* A read stamped before the change: its row is stale, not cached. */
	s = prod_cache_stamp_of(c, UUID_A);
	prod_cache_invalidate(c, UUID_A);
	prod_cache_put(c, UUID_A, s, (const uint8_t *)"old", 3, &m, UUID_B);
	assert_false(has(c, UUID_A, NULL));
	/* ... and one stamped before a store change or a flush neither. */
	s = prod_cache_stamp_of(c, UUID_A);
	prod_cache_invalidate_store(c, "2b7e6f1c-2d3a-4e5f-8a9b-0c1d2e3f4a5b");
	prod_cache_put(c, UUID_A, s, (const uint8_t *)"old", 3, &m, UUID_B);
	assert_false(has(c, UUID_A, NULL));
	/* Stamped after: cached. */
	put(c, UUID_A, "new", UUID_B);
	assert_true(has(c, UUID_A, "new"));
	prod_cache_free(c);
}

static void test_cache_store_invalidation(void **state)
{
	prod_cache *c = prod_cache_new(8);
	char ids[3][37];

	(void)state;
	prod_cache_set_on(c, true);
	for (int i = 0; i < 3; i++)
		id_n(ids[i], i);
	put(c, ids[0], "0", UUID_A);
	put(c, ids[1], "1", UUID_B);
	put(c, ids[2], "2", UUID_A);
	prod_cache_invalidate_store(c, "0B7E6F1C-2D3A-4E5F-8A9B-0C1D2E3F4A5B");
	assert_false(has(c, ids[0], NULL));
	assert_true(has(c, ids[1], "1"));
	assert_false(has(c, ids[2], NULL));
	prod_cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_slugs),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_money_and_attributes),
		cmocka_unit_test(test_image_urls),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_cache_off_until_turned_on),
		cmocka_unit_test(test_cache_bounded_lru),
		cmocka_unit_test(test_cache_invalidation_beats_a_racing_read),
		cmocka_unit_test(test_cache_store_invalidation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
