/*
 * service.c - CatalogService handlers (rules in service.h).
 */
#include "service.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "estore/catalog/v1/catalog.rpc.h"
#include "rpc/metadata.h"
#include "store_pg.h"
#include "validate.h"

typedef Estore__Catalog__V1__Store store;
typedef Estore__Catalog__V1__Product product;

#define STORE_ACTIVE ESTORE__CATALOG__V1__STORE_STATUS__STORE_STATUS_ACTIVE
#define STORE_SUSPENDED ESTORE__CATALOG__V1__STORE_STATUS__STORE_STATUS_SUSPENDED
#define PRODUCT_DRAFT ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_DRAFT
#define PRODUCT_ACTIVE ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE
#define PRODUCT_ARCHIVED ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ARCHIVED

/* ---- shared checks ------------------------------------------------------ */

static cat_service *svc_of(rpc_ctx *ctx)
{
	return rpc_ctx_user(ctx);
}

static rpc_code need_ready(rpc_ctx *ctx)
{
	if (!atomic_load(&svc_of(ctx)->ready))
		return rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "catalog store unavailable: database not "
				     "reachable or not migrated yet");
	return RPC_OK;
}

static bool is_admin(const rpc_identity *who)
{
	return who && !who->is_service && (who->roles & RPC_ROLE_ADMIN);
}

static bool is_service(const rpc_identity *who)
{
	return who && who->is_service;
}

static bool is_owner(const rpc_identity *who, const char *owner_id)
{
	return who && !who->is_service &&
	       strcasecmp(who->subject, owner_id) == 0;
}

/* The identity every non-public method has (the server refused the call
 * otherwise); checked anyway so a change of access rule fails closed. */
static rpc_code need_identity(rpc_ctx *ctx, const rpc_identity **who)
{
	*who = rpc_ctx_identity(ctx);
	if (!*who)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "this call needs an access token");
	return RPC_OK;
}

static rpc_code field_error(rpc_ctx *ctx, const char *field, const char *why)
{
	return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s: %s", field, why);
}

#define CHECK(ctx, field, fn, ...)                                      \
	do {                                                            \
		const char *why_ = fn(__VA_ARGS__);                     \
		if (why_)                                               \
			return field_error(ctx, field, why_);           \
	} while (0)

/* A UUID, lower-cased into the arena so comparisons, SQL and the cache
 * see one spelling. */
static rpc_code canon_uuid(rpc_ctx *ctx, const char *field, const char *in,
			   const char **out)
{
	char *id;

	if (!cat_is_uuid(in))
		return field_error(ctx, field, in[0] ? "must be a UUID"
						      : "is required");
	id = rpc_arena_strdup(rpc_ctx_arena(ctx), in);
	if (!id)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");
	for (char *p = id; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	*out = id;
	return RPC_OK;
}

/* Echoing a path back is helpful, but only when it is short printable
 * ASCII: the message goes into a header and into clients' logs. */
static bool printable_path(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (s[n] < ' ' || s[n] > '~' || n >= 64)
			return false;
	return n > 0;
}

static rpc_code unknown_path(rpc_ctx *ctx, const char *path)
{
	if (printable_path(path))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "update_mask: unknown path '%s'", path);
	return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
			     "update_mask: unknown path");
}

/* ---- stores ------------------------------------------------------------- */

static rpc_code check_store_status(rpc_ctx *ctx, int status)
{
	if (status != STORE_ACTIVE && status != STORE_SUSPENDED)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "store.status: unknown status %d", status);
	return RPC_OK;
}

static rpc_code create_store(rpc_ctx *ctx,
			     const Estore__Catalog__V1__CreateStoreRequest *in,
			     store *out)
{
	const store *s = in->store;
	const rpc_identity *who;
	const char *owner;
	int status = STORE_ACTIVE;
	rpc_code code;

	if ((code = need_identity(ctx, &who)) != RPC_OK)
		return code;
	if (!s)
		return field_error(ctx, "store", "is required");
	CHECK(ctx, "store.name", cat_check_name, s->name);
	CHECK(ctx, "store.slug", cat_check_store_slug, s->slug);
	CHECK(ctx, "store.description", cat_check_description, s->description,
	      CAT_STORE_DESCRIPTION_MAX);
	if (s->owner_id[0]) {
		if ((code = canon_uuid(ctx, "store.owner_id", s->owner_id,
				       &owner)) != RPC_OK)
			return code;
		if (!is_admin(who) && !is_owner(who, owner))
			return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
					     "store.owner_id: only admins open "
					     "stores for another account");
	} else if ((code = canon_uuid(ctx, "store.owner_id", who->subject,
				      &owner)) != RPC_OK) {
		return code;
	}
	if (s->status != 0) {
		if ((code = check_store_status(ctx, (int)s->status)) != RPC_OK)
			return code;
		if (!is_admin(who))
			return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
					     "store.status: only admins set a "
					     "store's status");
		status = (int)s->status;
	}
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return cat_store_create(svc_of(ctx)->pool, ctx, owner, s,
				(Estore__Catalog__V1__StoreStatus)status, out);
}

/* Reads a store by slug or id into *out. */
static rpc_code load_store(rpc_ctx *ctx, const char *field, const char *key,
			   store *out)
{
	const char *id;
	rpc_code code;

	if (cat_is_uuid(key)) {
		if ((code = canon_uuid(ctx, field, key, &id)) != RPC_OK ||
		    (code = need_ready(ctx)) != RPC_OK)
			return code;
		return cat_store_get(svc_of(ctx)->pool, ctx, id, true, out);
	}
	if (cat_check_store_slug(key))
		return field_error(ctx, field, key[0] ? "must be a store slug or id"
						      : "is required");
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return cat_store_get(svc_of(ctx)->pool, ctx, key, false, out);
}

static rpc_code get_store(rpc_ctx *ctx,
			  const Estore__Catalog__V1__GetStoreRequest *in,
			  store *out)
{
	const rpc_identity *who = rpc_ctx_identity(ctx);
	rpc_code code = load_store(ctx, "slug", in->slug, out);

	if (code != RPC_OK)
		return code;
	if (out->status != STORE_ACTIVE && !is_admin(who) && !is_service(who) &&
	    !is_owner(who, out->owner_id))
		return rpc_ctx_error(ctx, RPC_NOT_FOUND, "store not found");
	return RPC_OK;
}

static rpc_code update_store(rpc_ctx *ctx,
			     const Estore__Catalog__V1__UpdateStoreRequest *in,
			     store *out)
{
	static const struct {
		const char *path;
		unsigned bit;
	} paths[] = {
		{ "name", CAT_SF_NAME },
		{ "description", CAT_SF_DESCRIPTION },
		{ "status", CAT_SF_STATUS },
	};
	const Google__Protobuf__FieldMask *m = in->update_mask;
	const store *s = in->store;
	const rpc_identity *who;
	store *cur;
	const char *id;
	unsigned mask = 0;
	rpc_code code;

	if ((code = need_identity(ctx, &who)) != RPC_OK)
		return code;
	if (!s)
		return field_error(ctx, "store", "is required");
	if ((code = canon_uuid(ctx, "store.id", s->id, &id)) != RPC_OK)
		return code;
	if (!m || m->n_paths == 0) {
		/* AIP-134: no mask means "the fields that are set". */
		if (s->name[0])
			mask |= CAT_SF_NAME;
		if (s->description[0])
			mask |= CAT_SF_DESCRIPTION;
		if (s->status != 0)
			mask |= CAT_SF_STATUS;
		if (!mask)
			return field_error(ctx, "update_mask",
					   "names no field and the store sets none");
	}
	for (size_t i = 0; m && i < m->n_paths; i++) {
		size_t k;

		for (k = 0; k < sizeof(paths) / sizeof(paths[0]); k++)
			if (strcmp(m->paths[i], paths[k].path) == 0)
				break;
		if (k == sizeof(paths) / sizeof(paths[0]))
			return unknown_path(ctx, m->paths[i]);
		mask |= paths[k].bit;
	}
	if (mask & CAT_SF_NAME)
		CHECK(ctx, "store.name", cat_check_name, s->name);
	if (mask & CAT_SF_DESCRIPTION)
		CHECK(ctx, "store.description", cat_check_description,
		      s->description, CAT_STORE_DESCRIPTION_MAX);
	if ((mask & CAT_SF_STATUS) &&
	    (code = check_store_status(ctx, (int)s->status)) != RPC_OK)
		return code;
	if ((mask & CAT_SF_STATUS) && !is_admin(who))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "store.status: only admins change a "
				     "store's status");
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	cur = rpc_arena_alloc(rpc_ctx_arena(ctx), sizeof(*cur));
	if (!cur)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	estore__catalog__v1__store__init(cur);
	/* Owners never change, so checking first and writing next leaves
	 * no gap that matters. */
	if ((code = cat_store_get(svc_of(ctx)->pool, ctx, id, true, cur)) != RPC_OK)
		return code;
	if (!is_admin(who) && !is_owner(who, cur->owner_id))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "you may only change your own stores");
	code = cat_store_update(svc_of(ctx)->pool, ctx, id, mask, s, out);
	if (code == RPC_OK && (mask & CAT_SF_STATUS))
		prod_cache_invalidate_store(svc_of(ctx)->cache, id);
	return code;
}

/* ---- categories --------------------------------------------------------- */

static rpc_code list_categories(
	rpc_ctx *ctx, const Estore__Catalog__V1__ListCategoriesRequest *in,
	Estore__Catalog__V1__ListCategoriesResponse *out)
{
	rpc_code code;

	(void)in;
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return cat_category_list(svc_of(ctx)->pool, ctx, out);
}

static rpc_code create_category(
	rpc_ctx *ctx, const Estore__Catalog__V1__CreateCategoryRequest *in,
	Estore__Catalog__V1__Category *out)
{
	const Estore__Catalog__V1__Category *c = in->category;
	const char *parent = NULL;
	rpc_code code;

	if (!c)
		return field_error(ctx, "category", "is required");
	CHECK(ctx, "category.slug", cat_check_category_slug, c->slug);
	CHECK(ctx, "category.name", cat_check_name, c->name);
	if (c->parent_id[0] &&
	    (code = canon_uuid(ctx, "category.parent_id", c->parent_id,
			       &parent)) != RPC_OK)
		return code;
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return cat_category_create(svc_of(ctx)->pool, ctx, parent, c->slug,
				   c->name, out);
}

/* ---- products ----------------------------------------------------------- */

/* Validates the fields of p named in `mask` (every field on create). */
static rpc_code check_product(rpc_ctx *ctx, const product *p, unsigned mask,
			      bool create)
{
	if (mask & CAT_PF_TITLE)
		CHECK(ctx, "product.title", cat_check_title, p->title);
	if (mask & CAT_PF_DESCRIPTION)
		CHECK(ctx, "product.description", cat_check_description,
		      p->description, CAT_PRODUCT_DESCRIPTION_MAX);
	if ((mask & CAT_PF_CATEGORY) && p->category_id[0] &&
	    !cat_is_uuid(p->category_id))
		return field_error(ctx, "product.category_id",
				   "must be a UUID (or empty for none)");
	if (mask & CAT_PF_PRICE) {
		if (!p->price)
			return field_error(ctx, "product.price", "is required");
		CHECK(ctx, "product.price.amount_minor", cat_check_price,
		      p->price->amount_minor);
		CHECK(ctx, "product.price.currency", cat_check_currency,
		      p->price->currency);
	}
	if (mask & CAT_PF_ATTRIBUTES) {
		if (p->n_attributes > CAT_ATTRS_MAX)
			return field_error(ctx, "product.attributes",
					   "at most 50 attributes");
		for (size_t i = 0; i < p->n_attributes; i++) {
			const char *k = p->attributes[i]->key;

			CHECK(ctx, "product.attributes", cat_check_attr_key, k);
			CHECK(ctx, "product.attributes", cat_check_attr_value,
			      p->attributes[i]->value);
			for (size_t j = 0; j < i; j++)
				if (strcmp(p->attributes[j]->key, k) == 0)
					return rpc_ctx_error(
						ctx, RPC_INVALID_ARGUMENT,
						"product.attributes: key '%s' "
						"appears twice", k);
		}
	}
	if (mask & CAT_PF_IMAGES) {
		if (p->n_image_urls > CAT_IMAGES_MAX)
			return field_error(ctx, "product.image_urls",
					   "at most 20 URLs");
		for (size_t i = 0; i < p->n_image_urls; i++) {
			const char *why = cat_check_image_url(p->image_urls[i]);

			if (why)
				return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
						     "product.image_urls[%zu]: %s",
						     i, why);
		}
	}
	if (mask & CAT_PF_STATUS) {
		int s = (int)p->status;

		if (create ? !(s == 0 || s == PRODUCT_DRAFT || s == PRODUCT_ACTIVE)
			   : !(s == PRODUCT_DRAFT || s == PRODUCT_ACTIVE ||
			       s == PRODUCT_ARCHIVED))
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "product.status: must be %s",
					     create ? "DRAFT or ACTIVE"
						    : "DRAFT, ACTIVE or ARCHIVED");
	}
	return RPC_OK;
}

/* May `who` see a product in this state? The public sees active products
 * of active stores; owners, admins and services see everything. */
static bool can_see(const rpc_identity *who, int status,
		    const cat_product_meta *m)
{
	if (status == PRODUCT_ACTIVE && m->store_active)
		return true;
	return is_admin(who) || is_service(who) || is_owner(who, m->owner_id);
}

static rpc_code need_owner(rpc_ctx *ctx, const rpc_identity *who,
			   const char *owner_id)
{
	if (is_admin(who) || is_owner(who, owner_id))
		return RPC_OK;
	return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
			     "you may only change products of your own stores");
}

static rpc_code create_product(rpc_ctx *ctx,
			       const Estore__Catalog__V1__CreateProductRequest *in,
			       product *out)
{
	const product *p = in->product;
	const rpc_identity *who;
	cat_product_meta meta;
	const char *store_id;
	product fixed;
	store *st;
	rpc_code code;

	if ((code = need_identity(ctx, &who)) != RPC_OK ||
	    (code = canon_uuid(ctx, "store_id", in->store_id, &store_id)) != RPC_OK)
		return code;
	if (!p)
		return field_error(ctx, "product", "is required");
	if ((code = check_product(ctx, p, ~0u, true)) != RPC_OK)
		return code;
	if (p->stock_quantity < 0 || p->stock_quantity > CAT_STOCK_MAX)
		return field_error(ctx, "product.stock_quantity",
				   "must be between 0 and 1000000000");
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	st = rpc_arena_alloc(rpc_ctx_arena(ctx), sizeof(*st));
	if (!st)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	estore__catalog__v1__store__init(st);
	if ((code = cat_store_get(svc_of(ctx)->pool, ctx, store_id, true, st)) != RPC_OK)
		return code;
	if (!is_admin(who) && !is_owner(who, st->owner_id))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "store_id: you may only add products to "
				     "your own stores");
	fixed = *p;
	if (fixed.status == 0)
		fixed.status = PRODUCT_DRAFT;
	return cat_product_create(svc_of(ctx)->pool, ctx, store_id, &fixed, out,
				  &meta);
}

/* Packs a product into the arena for the cache. */
static uint8_t *pack(rpc_arena *a, const product *p, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(&p->base);
	buf = rpc_arena_alloc(a, *len ? *len : 1);
	if (buf)
		protobuf_c_message_pack(&p->base, buf);
	return buf;
}

static rpc_code get_product(rpc_ctx *ctx,
			    const Estore__Catalog__V1__GetProductRequest *in,
			    product *out)
{
	cat_service *svc = svc_of(ctx);
	const rpc_identity *who = rpc_ctx_identity(ctx);
	rpc_arena *a = rpc_ctx_arena(ctx);
	cat_product_meta meta;
	prod_cache_stamp stamp;
	const char *id;
	uint8_t *data;
	size_t len;
	rpc_code code;

	if ((code = canon_uuid(ctx, "id", in->id, &id)) != RPC_OK)
		return code;
	if (prod_cache_get(svc->cache, id, a, &data, &len, &meta)) {
		ProtobufCAllocator alloc;
		ProtobufCMessage *m;

		rpc_arena_pb_allocator(a, &alloc);
		m = protobuf_c_message_unpack(&estore__catalog__v1__product__descriptor,
					      &alloc, len, data);
		if (m) {
			*out = *(product *)m;
			goto visible;
		}
		/* Cannot happen with bytes we packed; read through. */
	}
	/* A hit is answered on the connection's I/O thread (registered
	 * inline below); a miss needs SQL, which blocks: start over on a
	 * worker. */
	if (rpc_ctx_on_io_thread(ctx))
		return rpc_ctx_offload(ctx);
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	stamp = prod_cache_stamp_of(svc->cache, id);
	if ((code = cat_product_get(svc->pool, ctx, id, out, &meta)) != RPC_OK)
		return code;
	data = pack(a, out, &len);
	if (data)
		prod_cache_put(svc->cache, id, stamp, data, len, &meta,
			       out->store_id);
visible:
	if (!can_see(who, (int)out->status, &meta))
		return rpc_ctx_error(ctx, RPC_NOT_FOUND, "product not found");
	return RPC_OK;
}

/* Looks up the product's owner and checks the caller may change it. */
static rpc_code authorize_product_write(rpc_ctx *ctx, const char *id)
{
	const rpc_identity *who;
	cat_product_meta meta;
	rpc_code code;

	if ((code = need_identity(ctx, &who)) != RPC_OK ||
	    (code = need_ready(ctx)) != RPC_OK ||
	    (code = cat_product_meta_get(svc_of(ctx)->pool, ctx, id, &meta)) != RPC_OK)
		return code;
	/* Owners never change, so checking first and writing next leaves
	 * no gap that matters. */
	return need_owner(ctx, who, meta.owner_id);
}

static rpc_code update_product(rpc_ctx *ctx,
			       const Estore__Catalog__V1__UpdateProductRequest *in,
			       product *out)
{
	const Google__Protobuf__FieldMask *m = in->update_mask;
	const product *p = in->product;
	cat_product_meta meta;
	const char *id;
	unsigned mask = 0;
	rpc_code code;

	if (!p)
		return field_error(ctx, "product", "is required");
	if ((code = canon_uuid(ctx, "product.id", p->id, &id)) != RPC_OK)
		return code;
	if (!m || m->n_paths == 0) {
		/* AIP-134: no mask means "the fields that are set". A
		 * default value cannot be told from unset, so clearing a
		 * field takes an explicit mask. */
		if (p->title[0])
			mask |= CAT_PF_TITLE;
		if (p->description[0])
			mask |= CAT_PF_DESCRIPTION;
		if (p->category_id[0])
			mask |= CAT_PF_CATEGORY;
		if (p->price)
			mask |= CAT_PF_PRICE;
		if (p->n_attributes)
			mask |= CAT_PF_ATTRIBUTES;
		if (p->n_image_urls)
			mask |= CAT_PF_IMAGES;
		if (p->status != 0)
			mask |= CAT_PF_STATUS;
		if (!mask)
			return field_error(ctx, "update_mask",
					   "names no field and the product sets none");
	}
	for (size_t i = 0; m && i < m->n_paths; i++) {
		unsigned bit;

		if (cat_product_path_bit(m->paths[i], &bit))
			return unknown_path(ctx, m->paths[i]);
		mask |= bit;
	}
	if ((code = check_product(ctx, p, mask, false)) != RPC_OK ||
	    (code = authorize_product_write(ctx, id)) != RPC_OK)
		return code;
	code = cat_product_update(svc_of(ctx)->pool, ctx, id, mask, p, out, &meta);
	prod_cache_invalidate(svc_of(ctx)->cache, id);
	return code;
}

static rpc_code archive_product(rpc_ctx *ctx,
				const Estore__Catalog__V1__ArchiveProductRequest *in,
				product *out)
{
	cat_product_meta meta;
	const char *id;
	rpc_code code;

	if ((code = canon_uuid(ctx, "id", in->id, &id)) != RPC_OK ||
	    (code = authorize_product_write(ctx, id)) != RPC_OK)
		return code;
	code = cat_product_archive(svc_of(ctx)->pool, ctx, id, out, &meta);
	prod_cache_invalidate(svc_of(ctx)->cache, id);
	return code;
}

static rpc_code adjust_stock(rpc_ctx *ctx,
			     const Estore__Catalog__V1__AdjustStockRequest *in,
			     Estore__Catalog__V1__StockLevel *out)
{
	const char *id;
	rpc_code code;

	if ((code = canon_uuid(ctx, "product_id", in->product_id, &id)) != RPC_OK)
		return code;
	if (in->delta < -CAT_STOCK_MAX || in->delta > CAT_STOCK_MAX)
		return field_error(ctx, "delta",
				   "must be between -1000000000 and 1000000000");
	if ((code = authorize_product_write(ctx, id)) != RPC_OK)
		return code;
	code = cat_stock_adjust(svc_of(ctx)->pool, ctx, id, in->delta, out);
	prod_cache_invalidate(svc_of(ctx)->cache, id);
	return code;
}

/* ---- reservations ------------------------------------------------------- */

static int by_product_id(const void *a, const void *b)
{
	const cat_line *x = *(const cat_line *const *)a;
	const cat_line *y = *(const cat_line *const *)b;

	return strcmp(x->product_id, y->product_id);
}

static void invalidate_lines(rpc_ctx *ctx, const cat_line *const *lines,
			     size_t n)
{
	for (size_t i = 0; i < n; i++)
		prod_cache_invalidate(svc_of(ctx)->cache, lines[i]->product_id);
}

static rpc_code reserve_stock(rpc_ctx *ctx,
			      const Estore__Catalog__V1__ReserveStockRequest *in,
			      Estore__Catalog__V1__Reservation *out)
{
	rpc_arena *a = rpc_ctx_arena(ctx);
	const char *order_id;
	cat_line **lines;
	rpc_code code;

	if ((code = canon_uuid(ctx, "order_id", in->order_id, &order_id)) != RPC_OK)
		return code;
	if (in->n_lines == 0 || in->n_lines > CAT_LINES_MAX)
		return field_error(ctx, "lines", "must hold 1 to 100 lines");
	lines = rpc_arena_calloc(a, in->n_lines, sizeof(*lines));
	if (!lines)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	/* Canonical copies: ids lower-cased, then sorted so the store locks
	 * rows in one global order and repeated requests compare equal
	 * whatever order their lines came in. */
	for (size_t i = 0; i < in->n_lines; i++) {
		const cat_line *l = in->lines[i];
		char field[48];

		snprintf(field, sizeof(field), "lines[%zu].product_id", i);
		lines[i] = rpc_arena_alloc(a, sizeof(**lines));
		if (!lines[i])
			return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
					     "out of memory");
		estore__catalog__v1__reservation_line__init(lines[i]);
		if ((code = canon_uuid(ctx, field, l->product_id,
				       (const char **)&lines[i]->product_id)) != RPC_OK)
			return code;
		if (l->quantity < 1 || l->quantity > CAT_QUANTITY_MAX)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "lines[%zu].quantity: must be "
					     "between 1 and 1000000", i);
		lines[i]->quantity = l->quantity;
	}
	qsort(lines, in->n_lines, sizeof(*lines), by_product_id);
	for (size_t i = 1; i < in->n_lines; i++)
		if (strcmp(lines[i - 1]->product_id, lines[i]->product_id) == 0)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "lines: product %s appears twice",
					     lines[i]->product_id);
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	code = cat_reserve(svc_of(ctx)->pool, ctx, order_id,
			   (const cat_line *const *)lines, in->n_lines, out);
	if (code == RPC_OK)
		invalidate_lines(ctx, (const cat_line *const *)lines, in->n_lines);
	return code;
}

static rpc_code settle(rpc_ctx *ctx, const Estore__Catalog__V1__ReservationRef *in,
		       Estore__Catalog__V1__Reservation *out, bool release)
{
	const char *order_id;
	rpc_code code;

	if ((code = canon_uuid(ctx, "order_id", in->order_id, &order_id)) != RPC_OK ||
	    (code = need_ready(ctx)) != RPC_OK)
		return code;
	code = release ? cat_release(svc_of(ctx)->pool, ctx, order_id, out)
		       : cat_commit(svc_of(ctx)->pool, ctx, order_id, out);
	if (code == RPC_OK)
		invalidate_lines(ctx, (const cat_line *const *)out->lines,
				 out->n_lines);
	return code;
}

static rpc_code release_stock(rpc_ctx *ctx,
			      const Estore__Catalog__V1__ReservationRef *in,
			      Estore__Catalog__V1__Reservation *out)
{
	return settle(ctx, in, out, true);
}

static rpc_code commit_reservation(rpc_ctx *ctx,
				   const Estore__Catalog__V1__ReservationRef *in,
				   Estore__Catalog__V1__Reservation *out)
{
	return settle(ctx, in, out, false);
}

/* ---- search ------------------------------------------------------------- */

typedef Estore__Catalog__V1__FacetCount facet_count;

#define SEARCH_Q_MAX 256          /* bytes */
#define SEARCH_STORES_MAX 20
#define SEARCH_ATTRS_MAX 20
#define SEARCH_PAGE_DEFAULT 20
#define SUGGEST_PREFIX_MAX 64     /* bytes */

/* Price facet bounds in minor units: the first is 0 so the buckets add up
 * to every match. */
static const int64_t price_bounds[] = {
	0, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
};

static rpc_code oom(rpc_ctx *ctx)
{
	return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
}

static rpc_code index_loading(rpc_ctx *ctx)
{
	return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "search index is loading");
}

/* Groups "key:value" filters by key (values of one key OR). */
static rpc_code parse_attr_filters(rpc_ctx *ctx, char *const *in, size_t n,
				   es_attr_filter **out, size_t *out_n)
{
	rpc_arena *a = rpc_ctx_arena(ctx);
	es_attr_filter *f;
	size_t nf = 0;

	if (n > SEARCH_ATTRS_MAX)
		return field_error(ctx, "attribute", "at most 20 filters");
	f = rpc_arena_calloc(a, n ? n : 1, sizeof(*f));
	if (!f)
		return oom(ctx);
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(in[i], ':');
		const char *why;
		char *key;
		size_t j;

		if (!colon || colon == in[i] || !colon[1])
			return field_error(ctx, "attribute",
					   "must be key:value");
		key = rpc_arena_strndup(a, in[i], (size_t)(colon - in[i]));
		if (!key)
			return oom(ctx);
		if ((why = cat_check_attr_key(key)) != NULL)
			return field_error(ctx, "attribute", why);
		if ((why = cat_check_attr_value(colon + 1)) != NULL)
			return field_error(ctx, "attribute", why);
		for (j = 0; j < nf && strcmp(f[j].key, key) != 0; j++)
			;
		if (j == nf) {
			f[nf].key = key;
			f[nf].values = rpc_arena_calloc(a, n, sizeof(char *));
			if (!f[nf].values)
				return oom(ctx);
			nf++;
		}
		((const char **)f[j].values)[f[j].value_count++] = colon + 1;
	}
	*out = f;
	*out_n = nf;
	return RPC_OK;
}

static bool parse_sort(const char *s, es_sort *out)
{
	static const struct {
		const char *name;
		es_sort sort;
	} sorts[] = {
		{ "", ES_SORT_RELEVANCE },
		{ "relevance", ES_SORT_RELEVANCE },
		{ "price", ES_SORT_PRICE_ASC },
		{ "-price", ES_SORT_PRICE_DESC },
		{ "newest", ES_SORT_NEWEST },
		{ "rating", ES_SORT_RATING },
	};

	for (size_t i = 0; i < sizeof(sorts) / sizeof(sorts[0]); i++)
		if (strcmp(s, sorts[i].name) == 0) {
			*out = sorts[i].sort;
			return true;
		}
	return false;
}

/* Page tokens are the library's cursor in base64url without padding. */
static char *token_of(rpc_arena *a, const uint8_t *cur, size_t len)
{
	char *b = rpc_base64_encode(cur, len, false, NULL), *out;

	if (!b)
		return NULL;
	for (char *p = b; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	out = rpc_arena_strdup(a, b);
	free(b);
	return out;
}

static bool cursor_of(rpc_arena *a, const char *tok, const uint8_t **cur,
		      size_t *len)
{
	uint8_t *raw = NULL, *copy;
	size_t n = 0;

	for (const char *p = tok; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	if (rpc_base64_decode(tok, strlen(tok), &raw, &n) != 0 || n == 0) {
		free(raw);
		return false;
	}
	copy = rpc_arena_alloc(a, n);
	if (copy)
		memcpy(copy, raw, n);
	free(raw);
	*cur = copy;
	*len = n;
	return copy != NULL;
}

static facet_count **facet_counts(rpc_arena *a, const es_count *c, size_t n)
{
	facet_count **out = rpc_arena_calloc(a, n ? n : 1, sizeof(*out));

	for (size_t i = 0; out && i < n; i++) {
		static const facet_count init = ESTORE__CATALOG__V1__FACET_COUNT__INIT;

		out[i] = rpc_arena_alloc(a, sizeof(**out));
		if (!out[i])
			return NULL;
		*out[i] = init;
		out[i]->value = rpc_arena_strdup(a, c[i].value);
		out[i]->count = (int32_t)c[i].count;
		if (!out[i]->value)
			return NULL;
	}
	return out;
}

static Estore__Catalog__V1__Facets *facets_of(rpc_arena *a, const es_result *r)
{
	static const Estore__Catalog__V1__Facets finit = ESTORE__CATALOG__V1__FACETS__INIT;
	static const Estore__Catalog__V1__PriceBucket binit =
		ESTORE__CATALOG__V1__PRICE_BUCKET__INIT;
	static const Estore__Catalog__V1__AttributeFacet ainit =
		ESTORE__CATALOG__V1__ATTRIBUTE_FACET__INIT;
	static const Estore__Catalog__V1__Facets__AttributesEntry einit =
		ESTORE__CATALOG__V1__FACETS__ATTRIBUTES_ENTRY__INIT;
	Estore__Catalog__V1__Facets *f = rpc_arena_alloc(a, sizeof(*f));

	if (!f)
		return NULL;
	*f = finit;
	f->categories = facet_counts(a, r->categories, r->category_count);
	f->n_categories = r->category_count;
	f->stores = facet_counts(a, r->stores, r->store_count);
	f->n_stores = r->store_count;
	f->prices = rpc_arena_calloc(a, r->price_bucket_count + 1,
				     sizeof(*f->prices));
	f->attributes = rpc_arena_calloc(a, r->attr_count + 1,
					 sizeof(*f->attributes));
	if (!f->categories || !f->stores || !f->prices || !f->attributes)
		return NULL;
	/* Empty buckets say nothing a client can use. */
	for (size_t i = 0; i < r->price_bucket_count; i++) {
		const es_price_bucket *b = &r->price_buckets[i];
		Estore__Catalog__V1__PriceBucket *pb;

		if (!b->count)
			continue;
		pb = rpc_arena_alloc(a, sizeof(*pb));
		if (!pb)
			return NULL;
		*pb = binit;
		pb->min_minor = b->lo;
		pb->max_minor = b->hi == INT64_MAX ? 0 : b->hi;
		pb->count = (int32_t)b->count;
		f->prices[f->n_prices++] = pb;
	}
	for (size_t i = 0; i < r->attr_count; i++) {
		Estore__Catalog__V1__Facets__AttributesEntry *e;
		Estore__Catalog__V1__AttributeFacet *v;

		e = rpc_arena_alloc(a, sizeof(*e));
		v = rpc_arena_alloc(a, sizeof(*v));
		if (!e || !v)
			return NULL;
		*e = einit;
		*v = ainit;
		e->key = rpc_arena_strdup(a, r->attrs[i].key);
		v->values = facet_counts(a, r->attrs[i].values,
					 r->attrs[i].value_count);
		v->n_values = r->attrs[i].value_count;
		if (!e->key || !v->values)
			return NULL;
		e->value = v;
		f->attributes[f->n_attributes++] = e;
	}
	return f;
}

struct words {
	rpc_arena *a;
	const es_result *r;
	char *out;
	size_t len, cap;
	bool failed;
};

static bool add_word(const char *w, size_t n, void *arg)
{
	struct words *ws = arg;

	for (size_t i = 0; i + 1 < 2 * ws->r->correction_count; i += 2) {
		const char *from = ws->r->corrections[i];

		if (strlen(from) == n && memcmp(from, w, n) == 0) {
			w = ws->r->corrections[i + 1];
			n = strlen(w);
			break;
		}
	}
	if (ws->len + n + 2 > ws->cap) {
		size_t cap = (ws->len + n + 2) * 2;
		char *p = rpc_arena_alloc(ws->a, cap);

		if (!p) {
			ws->failed = true;
			return false;
		}
		if (ws->len)
			memcpy(p, ws->out, ws->len);
		ws->out = p;
		ws->cap = cap;
	}
	if (ws->len)
		ws->out[ws->len++] = ' ';
	memcpy(ws->out + ws->len, w, n);
	ws->len += n;
	ws->out[ws->len] = '\0';
	return true;
}

/* The query's words as searched: each corrected one replaced. */
static char *corrected_query(rpc_arena *a, const char *q, const es_result *r)
{
	struct words ws = { .a = a, .r = r };

	es_tokenize(q, add_word, &ws);
	return ws.failed || !ws.out ? NULL : ws.out;
}

/* The products of a search page as GetProduct would show them to anyone,
 * in page order: from the cache, and the rest in one statement (a page
 * of 20 costs at most one round trip, not 20). A product that stopped
 * being public since the index answered is left out. */
static rpc_code read_listed(rpc_ctx *ctx, const es_result *r,
			    Estore__Catalog__V1__SearchProductsResponse *out)
{
	cat_service *svc = svc_of(ctx);
	rpc_arena *a = rpc_ctx_arena(ctx);
	size_t n = r->hit_count, nmiss = 0;
	product **page = rpc_arena_calloc(a, n + 1, sizeof(*page));
	cat_product_meta *meta = rpc_arena_calloc(a, n + 1, sizeof(*meta));
	const char **miss_ids = rpc_arena_calloc(a, n + 1, sizeof(*miss_ids));
	product **miss = rpc_arena_calloc(a, n + 1, sizeof(*miss));
	cat_product_meta *miss_meta = rpc_arena_calloc(a, n + 1, sizeof(*miss_meta));
	prod_cache_stamp *stamps = rpc_arena_calloc(a, n + 1, sizeof(*stamps));
	size_t *miss_at = rpc_arena_calloc(a, n + 1, sizeof(*miss_at));
	bool *found = rpc_arena_calloc(a, n + 1, sizeof(*found));
	rpc_code code;

	if (!page || !meta || !miss_ids || !miss || !miss_meta || !stamps ||
	    !miss_at || !found)
		return oom(ctx);
	for (size_t i = 0; i < n; i++) {
		const char *id = r->hits[i].product_id;
		uint8_t *data;
		size_t len;

		if (prod_cache_get(svc->cache, id, a, &data, &len, &meta[i])) {
			ProtobufCAllocator alloc;

			rpc_arena_pb_allocator(a, &alloc);
			page[i] = (product *)protobuf_c_message_unpack(
				&estore__catalog__v1__product__descriptor,
				&alloc, len, data);
			if (page[i])
				continue;
		}
		miss[nmiss] = rpc_arena_alloc(a, sizeof(**miss));
		if (!miss[nmiss])
			return oom(ctx);
		estore__catalog__v1__product__init(miss[nmiss]);
		/* Before the read: a change racing it keeps it out of the cache. */
		stamps[nmiss] = prod_cache_stamp_of(svc->cache, id);
		miss_ids[nmiss] = id;
		miss_at[nmiss++] = i;
	}
	if (nmiss) {
		if ((code = need_ready(ctx)) != RPC_OK)
			return code;
		if ((code = cat_product_get_many(svc->pool, ctx, miss_ids, nmiss,
						 miss, miss_meta, found)) != RPC_OK)
			return code;
	}
	for (size_t k = 0; k < nmiss; k++) {
		uint8_t *data;
		size_t len;

		if (!found[k])
			continue; /* deleted since the index answered */
		page[miss_at[k]] = miss[k];
		meta[miss_at[k]] = miss_meta[k];
		data = pack(a, miss[k], &len);
		if (data)
			prod_cache_put(svc->cache, miss_ids[k], stamps[k], data,
				       len, &miss_meta[k], miss[k]->store_id);
	}
	for (size_t i = 0; i < n; i++)
		if (page[i] && can_see(NULL, (int)page[i]->status, &meta[i]))
			out->products[out->n_products++] = page[i];
	return RPC_OK;
}

static rpc_code search_products(rpc_ctx *ctx,
				const Estore__Catalog__V1__SearchProductsRequest *in,
				Estore__Catalog__V1__SearchProductsResponse *out)
{
	cat_service *svc = svc_of(ctx);
	rpc_arena *a = rpc_ctx_arena(ctx);
	es_query q = { 0 };
	es_result r = { 0 };
	es_attr_filter *attrs = NULL;
	const char *cat = NULL, **stores = NULL;
	es_index *ix;
	rpc_code code;
	int rc;

	if (strlen(in->q) > SEARCH_Q_MAX)
		return field_error(ctx, "q", "at most 256 bytes");
	q.text = in->q;
	if (in->category[0]) {
		if ((code = canon_uuid(ctx, "category", in->category, &cat)) != RPC_OK)
			return code;
		q.category_ids = &cat;
		q.category_count = 1;
	}
	if (in->n_store > SEARCH_STORES_MAX)
		return field_error(ctx, "store", "at most 20 stores");
	if (in->n_store) {
		stores = rpc_arena_calloc(a, in->n_store, sizeof(*stores));
		if (!stores)
			return oom(ctx);
		for (size_t i = 0; i < in->n_store; i++)
			if ((code = canon_uuid(ctx, "store", in->store[i],
					       &stores[i])) != RPC_OK)
				return code;
		q.store_ids = stores;
		q.store_count = in->n_store;
	}
	if (in->min_price < 0)
		return field_error(ctx, "min_price", "must not be negative");
	if (in->max_price < 0)
		return field_error(ctx, "max_price", "must not be negative");
	if (in->min_price > 0 && in->max_price > 0 && in->max_price < in->min_price)
		return field_error(ctx, "max_price", "is below min_price");
	q.has_min_price = in->min_price > 0;
	q.min_price = in->min_price;
	q.has_max_price = in->max_price > 0;
	q.max_price = in->max_price;
	if ((code = parse_attr_filters(ctx, in->attribute, in->n_attribute,
				       &attrs, &q.attr_filter_count)) != RPC_OK)
		return code;
	q.attr_filters = attrs;
	q.in_stock_only = in->in_stock;
	if (!parse_sort(in->sort, &q.sort))
		return field_error(ctx, "sort", "must be relevance, price, "
				   "-price, newest or rating");
	if (in->page_size < 0 || in->page_size > ES_MAX_PAGE_SIZE)
		return field_error(ctx, "page_size", "must be 1..100");
	q.page_size = in->page_size ? (uint32_t)in->page_size : SEARCH_PAGE_DEFAULT;
	if (in->page_token[0] &&
	    !cursor_of(a, in->page_token, &q.cursor, &q.cursor_len))
		return field_error(ctx, "page_token", "not a page token of "
				   "this search");
	q.facets = true;
	q.price_bounds = price_bounds;
	q.price_bound_count = sizeof(price_bounds) / sizeof(price_bounds[0]);

	if (!(ix = search_index_get(svc->search)))
		return index_loading(ctx);
	rc = es_search(ix, &q, &r);
	search_index_put(svc->search);
	if (rc == ES_ECURSOR) {
		code = field_error(ctx, "page_token", "not a page token of "
				   "this search");
		goto done;
	}
	if (rc == ES_ENOMEM) {
		code = oom(ctx);
		goto done;
	}
	if (rc != ES_OK) {
		code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s",
				     es_strerror(rc));
		goto done;
	}

	out->total_size = r.total > INT32_MAX ? INT32_MAX : (int32_t)r.total;
	out->facets = facets_of(a, &r);
	out->products = rpc_arena_calloc(a, r.hit_count + 1,
					 sizeof(*out->products));
	if (!out->facets || !out->products) {
		code = oom(ctx);
		goto done;
	}
	if ((code = read_listed(ctx, &r, out)) != RPC_OK)
		goto done;
	if (r.next_cursor &&
	    !(out->next_page_token = token_of(a, r.next_cursor,
					      r.next_cursor_len))) {
		code = oom(ctx);
		goto done;
	}
	if (r.correction_count &&
	    !(out->corrected_query = corrected_query(a, in->q, &r))) {
		code = oom(ctx);
		goto done;
	}
	code = RPC_OK;
done:
	es_result_free(&r);
	return code;
}

static rpc_code suggest(rpc_ctx *ctx, const Estore__Catalog__V1__SuggestRequest *in,
			Estore__Catalog__V1__SuggestResponse *out)
{
	static const Estore__Catalog__V1__Suggestion init =
		ESTORE__CATALOG__V1__SUGGESTION__INIT;
	cat_service *svc = svc_of(ctx);
	rpc_arena *a = rpc_ctx_arena(ctx);
	es_suggest_result r = { 0 };
	es_index *ix;
	rpc_code code = RPC_OK;
	int rc;

	if (!in->prefix[0])
		return field_error(ctx, "prefix", "is required");
	if (strlen(in->prefix) > SUGGEST_PREFIX_MAX)
		return field_error(ctx, "prefix", "at most 64 bytes");
	if (in->limit < 0 || in->limit > ES_MAX_SUGGEST)
		return field_error(ctx, "limit", "must be 1..10");
	if (!(ix = search_index_get(svc->search)))
		return index_loading(ctx);
	rc = es_suggest(ix, in->prefix,
			in->limit ? (size_t)in->limit : ES_MAX_SUGGEST, &r);
	search_index_put(svc->search);
	if (rc != ES_OK) {
		es_suggest_result_free(&r);
		return rc == ES_ENOMEM ? oom(ctx)
				       : rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
						       "prefix: %s", es_strerror(rc));
	}
	out->suggestions = rpc_arena_calloc(a, r.count + 1,
					    sizeof(*out->suggestions));
	for (size_t i = 0; out->suggestions && i < r.count; i++) {
		Estore__Catalog__V1__Suggestion *s = rpc_arena_alloc(a, sizeof(*s));

		if (!s) {
			code = oom(ctx);
			break;
		}
		*s = init;
		s->product_id = rpc_arena_strdup(a, r.items[i].product_id);
		s->title = rpc_arena_strdup(a, r.items[i].title);
		if (!s->product_id || !s->title) {
			code = oom(ctx);
			break;
		}
		out->suggestions[out->n_suggestions++] = s;
	}
	if (!out->suggestions)
		code = oom(ctx);
	es_suggest_result_free(&r);
	return code;
}

/* ---- registration ------------------------------------------------------- */

int cat_service_register(rpc_server *srv, cat_service *svc)
{
	static const estore_catalog_v1_CatalogService_impl impl = {
		.create_store = create_store,
		.get_store = get_store,
		.update_store = update_store,
		.list_categories = list_categories,
		.create_category = create_category,
		.create_product = create_product,
		.get_product = get_product,
		.update_product = update_product,
		.archive_product = archive_product,
		.adjust_stock = adjust_stock,
		.reserve_stock = reserve_stock,
		.release_stock = release_stock,
		.commit_reservation = commit_reservation,
		.search_products = search_products,
		.suggest = suggest,
	};

	int rc = estore_catalog_v1_CatalogService_register(srv, &impl, svc);

	/* Cached product reads skip two thread hand-offs. */
	if (rc == 0)
		rc = rpc_server_set_inline(
			srv, "/estore.catalog.v1.CatalogService/GetProduct");
	return rc;
}
