/*
 * store_pg.h - every SQL statement of the catalog service, over the shared
 * PostgreSQL pool (services/common/pg.h), schema `catalog`.
 *
 * Functions run on handler threads and block. They map rows straight into
 * protobuf-c messages allocated from the call's arena, and report failures
 * through rpc_ctx_error so the message reaches the caller:
 *   UNAVAILABLE         database unreachable (or the pool could not connect)
 *   RESOURCE_EXHAUSTED  every pooled connection busy past the call's deadline
 *   ALREADY_EXISTS      a slug taken; an order id reserved with other lines
 *   NOT_FOUND           no such store / product / reservation
 *   FAILED_PRECONDITION stock would go below zero; a product that cannot be
 *                       reserved; a reservation already released/committed
 *   INVALID_ARGUMENT    a category_id / parent_id naming no category
 *   INTERNAL            anything else (logged, not detailed to the caller)
 * Inputs are assumed validated by service.c (ids canonical lower-case
 * UUIDs); every value travels as a statement parameter, never inside SQL
 * text.
 */
#ifndef ESTORE_CATALOG_STORE_PG_H
#define ESTORE_CATALOG_STORE_PG_H

#include <stdbool.h>
#include <stdint.h>

#include "estore/catalog/v1/catalog.pb-c.h"
#include "rpc/server.h"
#include "services/common/pg.h"

typedef Estore__Catalog__V1__Store cat_store;
typedef Estore__Catalog__V1__Category cat_category;
typedef Estore__Catalog__V1__Product cat_product;
typedef Estore__Catalog__V1__StockLevel cat_stock_level;
typedef Estore__Catalog__V1__Reservation cat_reservation;
typedef Estore__Catalog__V1__ReservationLine cat_line;

/* What decides who may see or change a product besides its own status:
 * its store's owner and whether the store is active. */
typedef struct cat_product_meta {
	char owner_id[37];
	bool store_active;
} cat_product_meta;

/* ---- stores ---- */

enum {
	CAT_SF_NAME = 1u << 0,
	CAT_SF_DESCRIPTION = 1u << 1,
	CAT_SF_STATUS = 1u << 2,
};

/* Inserts a store (status: ACTIVE or SUSPENDED); fills *out. */
rpc_code cat_store_create(pg_pool *pool, rpc_ctx *ctx, const char *owner_id,
			  const cat_store *in,
			  Estore__Catalog__V1__StoreStatus status,
			  cat_store *out);

/* By id (by_id: key is a UUID) or by slug. */
rpc_code cat_store_get(pg_pool *pool, rpc_ctx *ctx, const char *key,
		       bool by_id, cat_store *out);

/* Writes the CAT_SF_* columns in `mask` from *in, in one UPDATE. */
rpc_code cat_store_update(pg_pool *pool, rpc_ctx *ctx, const char *id,
			  unsigned mask, const cat_store *in, cat_store *out);

/* ---- categories ---- */

/* The whole tree, parents before children (siblings by slug). */
rpc_code cat_category_list(pg_pool *pool, rpc_ctx *ctx,
			   Estore__Catalog__V1__ListCategoriesResponse *out);

/* parent_id NULL for a root. */
rpc_code cat_category_create(pg_pool *pool, rpc_ctx *ctx,
			     const char *parent_id, const char *slug,
			     const char *name, cat_category *out);

/* ---- products ---- */

/* The columns UpdateProduct may change (update_mask paths). */
enum {
	CAT_PF_TITLE = 1u << 0,
	CAT_PF_DESCRIPTION = 1u << 1,
	CAT_PF_CATEGORY = 1u << 2,
	CAT_PF_PRICE = 1u << 3,
	CAT_PF_ATTRIBUTES = 1u << 4,
	CAT_PF_IMAGES = 1u << 5,
	CAT_PF_STATUS = 1u << 6,
};

/* Inserts a product into store_id from *in (validated: price set, status
 * DRAFT or ACTIVE, stock_quantity >= 0; "" category_id = none). */
rpc_code cat_product_create(pg_pool *pool, rpc_ctx *ctx,
			    const char *store_id, const cat_product *in,
			    cat_product *out, cat_product_meta *meta);

/* By id, with its store's owner and status. */
rpc_code cat_product_get(pg_pool *pool, rpc_ctx *ctx, const char *id,
			 cat_product *out, cat_product_meta *meta);

/* Several by id in one statement (a search page): out[i] and meta[i] are
 * filled for each ids[i] found (found[i] true), ids being canonical
 * UUIDs; out[i] must be initialised. Missing ids are not an error. */
rpc_code cat_product_get_many(pg_pool *pool, rpc_ctx *ctx,
			      const char *const *ids, size_t n,
			      cat_product **out, cat_product_meta *meta,
			      bool *found);

/* Only the meta (for write authorisation); NOT_FOUND when no product. */
rpc_code cat_product_meta_get(pg_pool *pool, rpc_ctx *ctx, const char *id,
			      cat_product_meta *meta);

/* Writes the CAT_PF_* columns in `mask` from *in in one UPDATE. */
rpc_code cat_product_update(pg_pool *pool, rpc_ctx *ctx, const char *id,
			    unsigned mask, const cat_product *in,
			    cat_product *out, cat_product_meta *meta);

/* status := archived (a no-op on an archived product). */
rpc_code cat_product_archive(pg_pool *pool, rpc_ctx *ctx, const char *id,
			     cat_product *out, cat_product_meta *meta);

/* stock += delta unless that goes below zero (FAILED_PRECONDITION,
 * nothing changed). */
rpc_code cat_stock_adjust(pg_pool *pool, rpc_ctx *ctx, const char *id,
			  int64_t delta, cat_stock_level *out);

/* ---- reservations ---- */

/*
 * Holds lines[0..n) (product ids distinct, sorted ascending, canonical)
 * for order_id, all or nothing, in one transaction that locks the product
 * rows in id order (so concurrent reservations queue and never deadlock).
 * An order id reserved before: the same lines return that reservation as
 * it is now; other lines are ALREADY_EXISTS. A product missing is
 * NOT_FOUND; not active, of a suspended store, or short of stock is
 * FAILED_PRECONDITION, and nothing is held.
 */
rpc_code cat_reserve(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		     const cat_line *const *lines, size_t n,
		     cat_reservation *out);

/* HELD → RELEASED (units back to stock); RELEASED again is a no-op;
 * COMMITTED is FAILED_PRECONDITION. */
rpc_code cat_release(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		     cat_reservation *out);

/* HELD → COMMITTED (units sold: reserved -= q, sales_count += q);
 * COMMITTED again is a no-op; RELEASED is FAILED_PRECONDITION. */
rpc_code cat_commit(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		    cat_reservation *out);

#endif
