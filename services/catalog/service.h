/*
 * service.h - estore.catalog.v1.CatalogService: business rules over the
 * protobuf-c messages (validation, ownership, visibility, field masks),
 * with every query in store_pg.h and product reads cached (cache.h).
 *
 * Who may do what (the server has already enforced the contract's access
 * rule: ACCESS_VENDOR methods see a vendor or an admin, ACCESS_ADMIN ones
 * an admin, ACCESS_INTERNAL ones a service; ACCESS_PUBLIC ones anyone,
 * with or without a token):
 *   CreateStore       vendor: a store owned by the caller (owner_id empty or
 *                     the caller's own); admin: any owner_id (empty = self);
 *                     status only by an admin (default active)
 *   GetStore          anyone for an active store; a suspended one only its
 *                     owner, admins and services (others: NOT_FOUND)
 *   UpdateStore       name, description: the owner or an admin;
 *                     status: admins only
 *   ListCategories    anyone
 *   CreateCategory    admins
 *   CreateProduct     the store's owner or an admin
 *   GetProduct        anyone for an active product of an active store; any
 *                     other only its store's owner, admins and services
 *                     (others: NOT_FOUND, as if it did not exist)
 *   UpdateProduct, ArchiveProduct, AdjustStock
 *                     the store's owner or an admin
 *   ReserveStock, ReleaseStock, CommitReservation
 *                     services only
 *   SearchProducts, Suggest
 *                     anyone; they list only active products of active
 *                     stores (the index holds nothing else), UNAVAILABLE
 *                     "search index is loading" until its first build
 * A vendor naming another vendor's store or product in a write gets
 * PERMISSION_DENIED: ids are random UUIDs, so the honest answer reveals
 * nothing guessable.
 *
 * Reservations are keyed by order id. Repeating ReserveStock with the same
 * order id and the same lines returns that reservation as it stands (held,
 * released or committed) and changes nothing; the same order id with other
 * lines is ALREADY_EXISTS. A reservation that failed (stock short, product
 * not for sale) leaves nothing behind, so a retry is tried afresh.
 *
 * While `ready` is false (migrations not applied yet, e.g. PostgreSQL was
 * down at start) every call that needs the database answers UNAVAILABLE.
 */
#ifndef ESTORE_CATALOG_SERVICE_H
#define ESTORE_CATALOG_SERVICE_H

#include <stdatomic.h>

#include "cache.h"
#include "search_index.h"
#include "rpc/server.h"
#include "services/common/pg.h"

typedef struct cat_service {
	pg_pool *pool;       /* borrowed; outlives the server */
	prod_cache *cache;   /* borrowed; outlives the server */
	search_index *search; /* borrowed; outlives the server */
	atomic_bool ready;   /* schema migrated; set once, never cleared */
} cat_service;

/* Registers every CatalogService method on srv with `svc` as the user
 * pointer. Returns 0 or an
 * RPC_ERR_* of rpc_server_add_method. */
int cat_service_register(rpc_server *srv, cat_service *svc);

#endif
