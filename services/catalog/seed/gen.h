/*
 * gen.h - a realistic catalog generated deterministically from a seed:
 * vendors, their stores, a category tree and products with varied
 * titles, descriptions and attributes.
 *
 * Every row is a pure function of (seed, its index): the same seed gives
 * the same catalog, byte for byte, whatever order rows are made in. Word
 * choices are skewed (a few brands, colours and adjectives are common,
 * most are rare), so some words match a tenth of the catalog and others a
 * handful of products, as in a real shop; each store leans to one
 * department, so store and category facets correlate.
 *
 * Every value satisfies the service's input rules (validate.h); the unit
 * test checks that on thousands of rows.
 */
#ifndef ESTORE_CATALOG_SEED_GEN_H
#define ESTORE_CATALOG_SEED_GEN_H

#include <stddef.h>
#include <stdint.h>

#define SEED_UUID_LEN 36

/* Row kinds: each draws its ids and choices from its own stream. */
enum seed_kind { SEED_VENDOR = 1, SEED_STORE, SEED_CATEGORY, SEED_PRODUCT };

/* A UUID (version 4 shape) from (seed, kind, index); out has 37 bytes. */
void seed_uuid(uint64_t seed, enum seed_kind kind, uint64_t index,
	       char out[SEED_UUID_LEN + 1]);

/* ---- the category tree (fixed; the same for every seed) ---------------- */

typedef struct seed_category {
	const char *slug, *name;
	int parent;     /* index in the tree, -1 at the root */
	int department; /* index of its root */
	int leaf;       /* products are filed under leaves only */
} seed_category;

/* The tree, parents before children. */
const seed_category *seed_categories(size_t *count);

/* ---- sizes --------------------------------------------------------------- */

typedef struct seed_plan {
	uint64_t seed;
	uint64_t products;
	uint64_t vendors; /* about one for every 5,000 products, at least 2 */
	uint64_t stores;  /* 1 to 3 per vendor */
	int64_t reference_time; /* unix seconds: products were created before it */
} seed_plan;

/* Fills the plan for `products` products. */
void seed_plan_make(uint64_t seed, uint64_t products, seed_plan *plan);

/* ---- rows ---------------------------------------------------------------- */

typedef struct seed_vendor {
	char id[SEED_UUID_LEN + 1];
	char email[96];
	char display_name[96];
} seed_vendor;

void seed_vendor_make(const seed_plan *plan, uint64_t index, seed_vendor *out);

typedef struct seed_store {
	char id[SEED_UUID_LEN + 1];
	uint64_t vendor; /* index of the owning vendor */
	char name[100];
	char slug[64];
	char description[400];
	int suspended;
	int department; /* the department most of its products are in */
} seed_store;

void seed_store_make(const seed_plan *plan, uint64_t index, seed_store *out);

typedef struct seed_product {
	char id[SEED_UUID_LEN + 1];
	uint64_t store;    /* index of its store */
	size_t category;   /* index in seed_categories() (a leaf) */
	char title[200];
	char description[1200];
	/* Attributes as a JSON object of strings: {"brand": "...", ...}. */
	char attributes[600];
	char image_url[160];
	int64_t price_minor;
	const char *currency;
	const char *status; /* "active", "draft" or "archived" */
	int64_t stock;
	double rating_average;
	int32_t rating_count;
	int64_t sales_count;
	int64_t create_time; /* unix seconds */
} seed_product;

void seed_product_make(const seed_plan *plan, uint64_t index,
		       seed_product *out);

#endif
