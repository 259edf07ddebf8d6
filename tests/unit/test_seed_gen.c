/*
 * test_seed_gen.c - the catalog seed generator (services/catalog/seed):
 * every row it makes passes the catalog's own input rules, the same seed
 * gives the same rows, and word choices are skewed as a real shop's are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "gen.h"
#include "validate.h"

#define PRODUCTS 20000

static void assert_ok(const char *what, const char *value, const char *why)
{
	if (why)
		fail_msg("%s '%s': %s", what, value, why);
}

static void test_categories_form_a_tree(void **state)
{
	size_t n, leaves = 0;
	const seed_category *t = seed_categories(&n);

	(void)state;
	assert_true(n > 50);
	for (size_t i = 0; i < n; i++) {
		assert_ok("category slug", t[i].slug,
			  cat_check_category_slug(t[i].slug));
		assert_ok("category name", t[i].name, cat_check_name(t[i].name));
		/* Parents come first, so they can be written in order. */
		assert_true(t[i].parent < (int)i);
		if (t[i].parent >= 0)
			assert_int_equal(t[t[i].parent].department,
					 t[i].department);
		for (size_t k = 0; k < i; k++)
			if (t[k].parent == t[i].parent &&
			    strcmp(t[k].slug, t[i].slug) == 0)
				fail_msg("slug %s twice among siblings",
					 t[i].slug);
		leaves += t[i].leaf != 0;
	}
	assert_true(leaves > 40);
}

static void test_vendors_and_stores(void **state)
{
	seed_plan plan;
	seed_vendor v, w;
	seed_store s;
	char **slugs;

	(void)state;
	seed_plan_make(9, 1000000, &plan);
	assert_int_equal(plan.vendors, 202);
	assert_int_equal(plan.stores, 404);
	for (uint64_t i = 0; i < plan.vendors; i++) {
		seed_vendor_make(&plan, i, &v);
		assert_true(cat_is_uuid(v.id));
		assert_non_null(strchr(v.email, '@'));
		assert_ok("vendor name", v.display_name,
			  cat_check_name(v.display_name));
	}
	seed_vendor_make(&plan, 0, &v);
	seed_vendor_make(&plan, 1, &w);
	assert_string_not_equal(v.email, w.email);
	slugs = calloc(plan.stores, sizeof(*slugs));
	assert_non_null(slugs);
	for (uint64_t i = 0; i < plan.stores; i++) {
		seed_store_make(&plan, i, &s);
		assert_true(cat_is_uuid(s.id));
		assert_true(s.vendor < plan.vendors);
		assert_ok("store slug", s.slug, cat_check_store_slug(s.slug));
		assert_ok("store name", s.name, cat_check_name(s.name));
		assert_ok("store description", s.description,
			  cat_check_description(s.description,
						CAT_STORE_DESCRIPTION_MAX));
		for (uint64_t k = 0; k < i; k++)
			if (strcmp(slugs[k], s.slug) == 0)
				fail_msg("store slug %s twice", s.slug);
		slugs[i] = strdup(s.slug);
	}
	for (uint64_t i = 0; i < plan.stores; i++)
		free(slugs[i]);
	free(slugs);
}

/* Every product passes validate.c, as CreateProduct would check it. */
static void test_products_are_valid(void **state)
{
	seed_plan plan;
	seed_product p;
	size_t ncat;
	const seed_category *t = seed_categories(&ncat);
	uint64_t active = 0, no_stock = 0;

	(void)state;
	seed_plan_make(1, PRODUCTS, &plan);
	for (uint64_t i = 0; i < PRODUCTS; i++) {
		json_error_t jerr;
		json_t *attrs, *v;
		const char *k;

		seed_product_make(&plan, i, &p);
		assert_true(cat_is_uuid(p.id));
		assert_true(p.store < plan.stores);
		assert_true(p.category < ncat);
		assert_true(t[p.category].leaf);
		assert_ok("title", p.title, cat_check_title(p.title));
		assert_ok("description", p.description,
			  cat_check_description(p.description,
						CAT_PRODUCT_DESCRIPTION_MAX));
		assert_ok("currency", p.currency, cat_check_currency(p.currency));
		assert_ok("image", p.image_url, cat_check_image_url(p.image_url));
		assert_null(cat_check_price(p.price_minor));
		assert_true(p.price_minor > 0);
		assert_true(p.stock >= 0 && p.stock <= CAT_STOCK_MAX);
		assert_true(p.rating_average >= 0 && p.rating_average <= 5);
		assert_true((p.rating_count == 0) == (p.rating_average == 0));
		assert_true(p.create_time < plan.reference_time);
		assert_true(p.create_time > plan.reference_time - 2 * 366 * 86400);
		attrs = json_loads(p.attributes, 0, &jerr);
		if (!attrs)
			fail_msg("attributes %s: %s", p.attributes, jerr.text);
		assert_true(json_is_object(attrs));
		assert_true(json_object_size(attrs) >= 3);
		assert_true(json_object_size(attrs) <= CAT_ATTRS_MAX);
		json_object_foreach(attrs, k, v) {
			assert_ok("attribute key", k, cat_check_attr_key(k));
			assert_true(json_is_string(v));
			assert_ok("attribute value", json_string_value(v),
				  cat_check_attr_value(json_string_value(v)));
		}
		json_decref(attrs);
		active += strcmp(p.status, "active") == 0;
		no_stock += p.stock == 0;
	}
	/* Mostly sellable, as a live shop's catalog is. */
	assert_true(active > PRODUCTS * 9 / 10 && active < PRODUCTS);
	assert_true(no_stock > PRODUCTS / 20 && no_stock < PRODUCTS / 5);
}

static void test_same_seed_same_rows(void **state)
{
	seed_plan a, b;
	seed_product *x = malloc(sizeof(*x)), *y = malloc(sizeof(*y));
	int differ = 0;

	(void)state;
	assert_non_null(x);
	assert_non_null(y);
	seed_plan_make(42, PRODUCTS, &a);
	seed_plan_make(43, PRODUCTS, &b);
	/* In any order: a row depends on (seed, index) alone. */
	for (uint64_t i = PRODUCTS; i-- > PRODUCTS - 500;) {
		seed_product_make(&a, i, x);
		seed_product_make(&a, PRODUCTS - 1 - i, y);
		seed_product_make(&a, i, y);
		assert_memory_equal(x, y, sizeof(*x));
		seed_product_make(&b, i, y);
		assert_string_not_equal(x->id, y->id);
		differ += strcmp(x->title, y->title) != 0;
	}
	assert_true(differ > 400);
	free(x);
	free(y);
}

/* Skewed words: the commonest colour is in far more products than the
 * rarest, so search sees popular and rare words alike. */
static void test_words_are_skewed(void **state)
{
	static const char *const colours[] = { "Black", "Coral" };
	seed_plan plan;
	seed_product p;
	uint64_t seen[2] = { 0 };

	(void)state;
	seed_plan_make(1, PRODUCTS, &plan);
	for (uint64_t i = 0; i < PRODUCTS; i++) {
		seed_product_make(&plan, i, &p);
		for (int c = 0; c < 2; c++) {
			char want[64];

			snprintf(want, sizeof(want), "\"color\": \"%s\"",
				 colours[c]);
			seen[c] += strstr(p.attributes, want) != NULL;
		}
	}
	assert_true(seen[0] > PRODUCTS / 5);
	assert_true(seen[1] > 0 && seen[1] < PRODUCTS / 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_categories_form_a_tree),
		cmocka_unit_test(test_vendors_and_stores),
		cmocka_unit_test(test_products_are_valid),
		cmocka_unit_test(test_same_seed_same_rows),
		cmocka_unit_test(test_words_are_skewed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
