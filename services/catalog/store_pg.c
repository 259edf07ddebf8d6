/*
 * store_pg.c - the catalog service's SQL (see store_pg.h). Tables are
 * created by migrations/001_init.sql.
 */
#include "store_pg.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rpc/log.h"
#include "services/common/pgcall.h"

/* Times travel as integral microseconds since the epoch: exact
 * (PostgreSQL 15's extract() yields numeric). */
#define US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

#define STORE_COLS                                                      \
	"id::text, owner_id::text, name, slug, description, status, "   \
	US("create_time") ", " US("update_time")

/* Product columns with its store's owner and status (meta); `p` is the
 * product row, `s` its store. */
#define PRODUCT_COLS                                                    \
	"p.id::text, p.store_id::text, p.title, p.description, "        \
	"coalesce(p.category_id::text, ''), p.price_minor, p.currency, " \
	"p.attributes::text, to_json(p.image_urls)::text, p.status, "   \
	"p.stock, p.rating_average, p.rating_count, "                   \
	US("p.create_time") ", " US("p.update_time") ", "               \
	"s.owner_id::text, s.status"

#define RESERVATION_COLS "order_id::text, status, " US("create_time")

/* ---- plumbing ---------------------------------------------------------- */

/* A "{a,b,c}" array literal of canonical UUIDs: only our own validated ids
 * go in, so no element needs quoting. */
static char *uuid_array(rpc_arena *a, const char *const *ids, size_t n)
{
	char *s = rpc_arena_alloc(a, n * 37 + 3), *o = s;

	if (!s)
		return NULL;
	*o++ = '{';
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s%s", i ? "," : "", ids[i]);
	strcpy(o, "}");
	return s;
}

static PGconn *acquire(pg_pool *pool, rpc_ctx *ctx, rpc_code *code)
{
	return pgcall_acquire(pool, ctx, "catalog store", code);
}

/* What a statement's constraint violations mean to the caller. */
typedef pgcall_violations violations;

/* One statement; failures become the call's status (pgcall.h). */
static PGresult *exec(PGconn *conn, rpc_ctx *ctx, const char *what,
		      const char *sql, int n, const char *const *params,
		      const violations *v, rpc_code *code)
{
	return pgcall_exec(conn, ctx, "catalog store", what, sql, n, params, v,
			   code);
}

static rpc_code begin(PGconn *conn, rpc_ctx *ctx)
{
	rpc_code code = pg_begin(conn);

	if (code != RPC_OK)
		rpc_ctx_error(ctx, code, "catalog store unavailable");
	return code;
}

static rpc_code commit(PGconn *conn, rpc_ctx *ctx)
{
	rpc_code code = pg_commit(conn);

	if (code == RPC_OK)
		return RPC_OK;
	if (PQstatus(conn) == CONNECTION_BAD)
		code = RPC_UNAVAILABLE;
	return rpc_ctx_error(ctx, code, "catalog store: the change was not "
			     "committed");
}

static rpc_code oom(rpc_ctx *ctx)
{
	return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
}

static Google__Protobuf__Timestamp *timestamp_from_us(rpc_arena *a,
						      int64_t us)
{
	Google__Protobuf__Timestamp *t = rpc_arena_alloc(a, sizeof(*t));
	int64_t sec, rem;

	if (!t)
		return NULL;
	google__protobuf__timestamp__init(t);
	/* Floor division: Timestamp nanos are never negative. */
	sec = us / 1000000;
	rem = us % 1000000;
	if (rem < 0) {
		sec--;
		rem += 1000000;
	}
	t->seconds = sec;
	t->nanos = (int32_t)(rem * 1000);
	return t;
}

static int64_t parse_i64(const char *s)
{
	return strtoll(s, NULL, 10);
}

static char *col(PGresult *r, int i, int c, rpc_arena *a)
{
	return rpc_arena_strdup(a, PQgetvalue(r, i, c));
}

/* ---- stores ------------------------------------------------------------ */

static const char *store_status_text(Estore__Catalog__V1__StoreStatus s)
{
	return s == ESTORE__CATALOG__V1__STORE_STATUS__STORE_STATUS_SUSPENDED
		       ? "suspended"
		       : "active";
}

static bool row_to_store(PGresult *r, int i, rpc_arena *a, cat_store *out)
{
	out->id = col(r, i, 0, a);
	out->owner_id = col(r, i, 1, a);
	out->name = col(r, i, 2, a);
	out->slug = col(r, i, 3, a);
	out->description = col(r, i, 4, a);
	out->status = strcmp(PQgetvalue(r, i, 5), "suspended") == 0
			      ? ESTORE__CATALOG__V1__STORE_STATUS__STORE_STATUS_SUSPENDED
			      : ESTORE__CATALOG__V1__STORE_STATUS__STORE_STATUS_ACTIVE;
	out->create_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, i, 6)));
	out->update_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, i, 7)));
	return out->id && out->owner_id && out->name && out->slug &&
	       out->description && out->create_time && out->update_time;
}

static rpc_code one_store(pg_pool *pool, rpc_ctx *ctx, const char *what,
			  const char *sql, int n, const char *const *params,
			  const violations *v, cat_store *out)
{
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	r = exec(conn, ctx, what, sql, n, params, v, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	if (PQntuples(r) == 0)
		code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "store not found");
	else if (!row_to_store(r, 0, rpc_ctx_arena(ctx), out))
		code = oom(ctx);
	else
		code = RPC_OK;
	PQclear(r);
	return code;
}

static const violations slug_taken = { "store.slug: already taken", NULL };

rpc_code cat_store_create(pg_pool *pool, rpc_ctx *ctx, const char *owner_id,
			  const cat_store *in,
			  Estore__Catalog__V1__StoreStatus status,
			  cat_store *out)
{
	static const char sql[] =
		"INSERT INTO catalog.stores (owner_id, name, slug, description, "
		"status) VALUES ($1::uuid, $2, $3, $4, $5) RETURNING " STORE_COLS;
	const char *p[5] = { owner_id, in->name, in->slug, in->description,
			     store_status_text(status) };

	return one_store(pool, ctx, "create store", sql, 5, p, &slug_taken,
			 out);
}

rpc_code cat_store_get(pg_pool *pool, rpc_ctx *ctx, const char *key,
		       bool by_id, cat_store *out)
{
	static const char by_id_sql[] =
		"SELECT " STORE_COLS " FROM catalog.stores WHERE id = $1::uuid";
	static const char by_slug_sql[] =
		"SELECT " STORE_COLS " FROM catalog.stores WHERE slug = $1";
	const char *p[1] = { key };

	return one_store(pool, ctx, "get store", by_id ? by_id_sql : by_slug_sql,
			 1, p, NULL, out);
}

rpc_code cat_store_update(pg_pool *pool, rpc_ctx *ctx, const char *id,
			  unsigned mask, const cat_store *in, cat_store *out)
{
	/* One statement with a flag per column: atomic without a
	 * read-modify-write transaction, and the SQL text is constant. */
	static const char sql[] =
		"UPDATE catalog.stores SET "
		"name = CASE WHEN $2::boolean THEN $3 ELSE name END, "
		"description = CASE WHEN $4::boolean THEN $5 ELSE description END, "
		"status = CASE WHEN $6::boolean THEN $7 ELSE status END, "
		"update_time = now() WHERE id = $1::uuid RETURNING " STORE_COLS;
	const char *p[7];

#define FLAG(bit) ((mask & (bit)) ? "true" : "false")
	p[0] = id;
	p[1] = FLAG(CAT_SF_NAME);
	p[2] = in->name;
	p[3] = FLAG(CAT_SF_DESCRIPTION);
	p[4] = in->description;
	p[5] = FLAG(CAT_SF_STATUS);
	p[6] = store_status_text(in->status);
#undef FLAG
	return one_store(pool, ctx, "update store", sql, 7, p, NULL, out);
}

/* ---- categories -------------------------------------------------------- */

static bool row_to_category(PGresult *r, int i, rpc_arena *a,
			    cat_category *out)
{
	out->id = col(r, i, 0, a);
	out->parent_id = col(r, i, 1, a);
	out->slug = col(r, i, 2, a);
	out->name = col(r, i, 3, a);
	return out->id && out->parent_id && out->slug && out->name;
}

rpc_code cat_category_list(pg_pool *pool, rpc_ctx *ctx,
			   Estore__Catalog__V1__ListCategoriesResponse *out)
{
	/* Depth-first by the path of slugs: every parent sorts before its
	 * subtree, siblings alphabetically. */
	static const char sql[] =
		"WITH RECURSIVE tree AS ("
		" SELECT id, parent_id, slug, name, ARRAY[slug] AS path"
		" FROM catalog.categories WHERE parent_id IS NULL"
		" UNION ALL"
		" SELECT c.id, c.parent_id, c.slug, c.name, t.path || c.slug"
		" FROM catalog.categories c JOIN tree t ON c.parent_id = t.id)"
		" SELECT id::text, coalesce(parent_id::text, ''), slug, name"
		" FROM tree ORDER BY path";
	rpc_arena *a = rpc_ctx_arena(ctx);
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;
	int rows;

	if (!conn)
		return code;
	r = exec(conn, ctx, "list categories", sql, 0, NULL, NULL, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	rows = PQntuples(r);
	code = RPC_OK;
	if (rows > 0) {
		out->categories = rpc_arena_calloc(a, (size_t)rows,
						   sizeof(*out->categories));
		if (!out->categories)
			code = oom(ctx);
	}
	for (int i = 0; code == RPC_OK && i < rows; i++) {
		cat_category *c = rpc_arena_alloc(a, sizeof(*c));

		if (!c) {
			code = oom(ctx);
			break;
		}
		estore__catalog__v1__category__init(c);
		if (!row_to_category(r, i, a, c)) {
			code = oom(ctx);
			break;
		}
		out->categories[i] = c;
		out->n_categories = (size_t)i + 1;
	}
	PQclear(r);
	return code;
}

rpc_code cat_category_create(pg_pool *pool, rpc_ctx *ctx,
			     const char *parent_id, const char *slug,
			     const char *name, cat_category *out)
{
	static const char sql[] =
		"INSERT INTO catalog.categories (parent_id, slug, name) "
		"VALUES ($1::uuid, $2, $3) RETURNING id::text, "
		"coalesce(parent_id::text, ''), slug, name";
	static const violations v = {
		"category.slug: already taken under this parent",
		"category.parent_id: no such category",
	};
	const char *p[3] = { parent_id, slug, name };
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	r = exec(conn, ctx, "create category", sql, 3, p, &v, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	code = row_to_category(r, 0, rpc_ctx_arena(ctx), out) ? RPC_OK
							      : oom(ctx);
	PQclear(r);
	return code;
}

/* ---- products ---------------------------------------------------------- */

static const char *product_status_text(Estore__Catalog__V1__ProductStatus s)
{
	switch (s) {
	case ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE:
		return "active";
	case ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ARCHIVED:
		return "archived";
	default:
		return "draft";
	}
}

static Estore__Catalog__V1__ProductStatus product_status(const char *s)
{
	if (strcmp(s, "active") == 0)
		return ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ACTIVE;
	if (strcmp(s, "archived") == 0)
		return ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_ARCHIVED;
	return ESTORE__CATALOG__V1__PRODUCT_STATUS__PRODUCT_STATUS_DRAFT;
}

/* jsonb object text → map entries in the arena. */
static bool parse_attributes(const char *text, rpc_arena *a, cat_product *out)
{
	json_t *o = json_loads(text, 0, NULL);
	const char *k;
	json_t *v;
	size_t i = 0;
	bool ok = true;

	if (!o || !json_is_object(o)) {
		json_decref(o);
		return false;
	}
	if (json_object_size(o) > 0) {
		out->attributes = rpc_arena_calloc(a, json_object_size(o),
						   sizeof(*out->attributes));
		ok = out->attributes != NULL;
	}
	json_object_foreach(o, k, v) {
		Estore__Catalog__V1__Product__AttributesEntry *e;

		if (!ok)
			break;
		e = rpc_arena_alloc(a, sizeof(*e));
		if (!e) {
			ok = false;
			break;
		}
		estore__catalog__v1__product__attributes_entry__init(e);
		e->key = rpc_arena_strdup(a, k);
		e->value = rpc_arena_strdup(a, json_is_string(v) ?
						       json_string_value(v) : "");
		ok = e->key && e->value;
		out->attributes[i++] = e;
	}
	out->n_attributes = i;
	json_decref(o);
	return ok;
}

/* json array of strings → repeated string in the arena. */
static bool parse_images(const char *text, rpc_arena *a, cat_product *out)
{
	json_t *arr = json_loads(text, 0, NULL);
	size_t n;
	bool ok = true;

	if (!arr || !json_is_array(arr)) {
		json_decref(arr);
		return false;
	}
	n = json_array_size(arr);
	if (n > 0) {
		out->image_urls = rpc_arena_calloc(a, n, sizeof(char *));
		ok = out->image_urls != NULL;
	}
	for (size_t i = 0; ok && i < n; i++) {
		const char *s = json_string_value(json_array_get(arr, i));

		out->image_urls[i] = rpc_arena_strdup(a, s ? s : "");
		ok = out->image_urls[i] != NULL;
		out->n_image_urls = i + 1;
	}
	json_decref(arr);
	return ok;
}

static bool row_to_product(PGresult *r, int i, rpc_arena *a, cat_product *out,
			   cat_product_meta *meta)
{
	Estore__Catalog__V1__Money *m = rpc_arena_alloc(a, sizeof(*m));

	if (!m)
		return false;
	estore__catalog__v1__money__init(m);
	out->id = col(r, i, 0, a);
	out->store_id = col(r, i, 1, a);
	out->title = col(r, i, 2, a);
	out->description = col(r, i, 3, a);
	out->category_id = col(r, i, 4, a);
	m->amount_minor = parse_i64(PQgetvalue(r, i, 5));
	m->currency = col(r, i, 6, a);
	out->price = m;
	if (!parse_attributes(PQgetvalue(r, i, 7), a, out) ||
	    !parse_images(PQgetvalue(r, i, 8), a, out))
		return false;
	out->status = product_status(PQgetvalue(r, i, 9));
	out->stock_quantity = parse_i64(PQgetvalue(r, i, 10));
	out->rating_average = strtod(PQgetvalue(r, i, 11), NULL);
	out->rating_count = (int32_t)parse_i64(PQgetvalue(r, i, 12));
	out->create_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, i, 13)));
	out->update_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, i, 14)));
	if (meta) {
		snprintf(meta->owner_id, sizeof(meta->owner_id), "%s",
			 PQgetvalue(r, i, 15));
		meta->store_active = strcmp(PQgetvalue(r, i, 16), "active") == 0;
	}
	return out->id && out->store_id && out->title && out->description &&
	       out->category_id && m->currency && out->create_time &&
	       out->update_time;
}

static rpc_code one_product(pg_pool *pool, rpc_ctx *ctx, const char *what,
			    const char *sql, int n, const char *const *params,
			    const violations *v, cat_product *out,
			    cat_product_meta *meta)
{
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	r = exec(conn, ctx, what, sql, n, params, v, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	if (PQntuples(r) == 0)
		code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "product not found");
	else if (!row_to_product(r, 0, rpc_ctx_arena(ctx), out, meta))
		code = oom(ctx);
	else
		code = RPC_OK;
	PQclear(r);
	return code;
}

/* Attributes as a JSON object text (arena). NULL on no memory. */
static char *attributes_json(rpc_arena *a, const cat_product *in)
{
	json_t *o = json_object();
	char *s, *out = NULL;

	if (!o)
		return NULL;
	for (size_t i = 0; i < in->n_attributes; i++)
		if (json_object_set_new(o, in->attributes[i]->key,
					json_string(in->attributes[i]->value)) != 0)
			goto done;
	s = json_dumps(o, JSON_COMPACT);
	if (s) {
		out = rpc_arena_strdup(a, s);
		free(s);
	}
done:
	json_decref(o);
	return out;
}

/* Image URLs as a JSON array text (arena): no array-literal quoting to
 * get wrong, PostgreSQL unpacks it. */
static char *images_json(rpc_arena *a, const cat_product *in)
{
	json_t *arr = json_array();
	char *s, *out = NULL;

	if (!arr)
		return NULL;
	for (size_t i = 0; i < in->n_image_urls; i++)
		if (json_array_append_new(arr, json_string(in->image_urls[i])) != 0)
			goto done;
	s = json_dumps(arr, JSON_COMPACT);
	if (s) {
		out = rpc_arena_strdup(a, s);
		free(s);
	}
done:
	json_decref(arr);
	return out;
}

static const violations no_category = { NULL,
					"product.category_id: no such category" };

rpc_code cat_product_create(pg_pool *pool, rpc_ctx *ctx,
			    const char *store_id, const cat_product *in,
			    cat_product *out, cat_product_meta *meta)
{
	static const char sql[] =
		"WITH p AS (INSERT INTO catalog.products (store_id, title, "
		"description, category_id, price_minor, currency, attributes, "
		"image_urls, status, stock) VALUES ($1::uuid, $2, $3, "
		"nullif($4, '')::uuid, $5::bigint, $6, $7::jsonb, "
		"ARRAY(SELECT jsonb_array_elements_text($8::jsonb)), $9, "
		"$10::bigint) RETURNING *) "
		"SELECT " PRODUCT_COLS " FROM p JOIN catalog.stores s "
		"ON s.id = p.store_id";
	rpc_arena *a = rpc_ctx_arena(ctx);
	char price[24], stock[24];
	const char *p[10];

	snprintf(price, sizeof(price), "%" PRId64, in->price->amount_minor);
	snprintf(stock, sizeof(stock), "%" PRId64, in->stock_quantity);
	p[0] = store_id;
	p[1] = in->title;
	p[2] = in->description;
	p[3] = in->category_id;
	p[4] = price;
	p[5] = in->price->currency;
	p[6] = attributes_json(a, in);
	p[7] = images_json(a, in);
	p[8] = product_status_text(in->status);
	p[9] = stock;
	if (!p[6] || !p[7])
		return oom(ctx);
	return one_product(pool, ctx, "create product", sql, 10, p,
			   &no_category, out, meta);
}

rpc_code cat_product_get(pg_pool *pool, rpc_ctx *ctx, const char *id,
			 cat_product *out, cat_product_meta *meta)
{
	static const char sql[] =
		"SELECT " PRODUCT_COLS " FROM catalog.products p "
		"JOIN catalog.stores s ON s.id = p.store_id WHERE p.id = $1::uuid";
	const char *p[1] = { id };

	return one_product(pool, ctx, "get product", sql, 1, p, NULL, out,
			   meta);
}

rpc_code cat_product_get_many(pg_pool *pool, rpc_ctx *ctx,
			      const char *const *ids, size_t n,
			      cat_product **out, cat_product_meta *meta,
			      bool *found)
{
	static const char sql[] =
		"SELECT " PRODUCT_COLS " FROM catalog.products p "
		"JOIN catalog.stores s ON s.id = p.store_id "
		"WHERE p.id = ANY($1::uuid[])";
	rpc_arena *a = rpc_ctx_arena(ctx);
	char *list = uuid_array(a, ids, n);
	const char *p[1] = { list };
	rpc_code code;
	PGconn *conn;
	PGresult *r;

	if (!list)
		return oom(ctx);
	for (size_t i = 0; i < n; i++)
		found[i] = false;
	if (!(conn = acquire(pool, ctx, &code)))
		return code;
	r = exec(conn, ctx, "get products", sql, 1, p, NULL, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	code = RPC_OK;
	for (int row = 0; row < PQntuples(r) && code == RPC_OK; row++) {
		const char *id = PQgetvalue(r, row, 0);

		for (size_t i = 0; i < n; i++) {
			if (found[i] || strcasecmp(ids[i], id) != 0)
				continue;
			if (!row_to_product(r, row, a, out[i], &meta[i]))
				code = oom(ctx);
			found[i] = code == RPC_OK;
			break;
		}
	}
	PQclear(r);
	return code;
}

rpc_code cat_product_meta_get(pg_pool *pool, rpc_ctx *ctx, const char *id,
			      cat_product_meta *meta)
{
	static const char sql[] =
		"SELECT s.owner_id::text, s.status FROM catalog.products p "
		"JOIN catalog.stores s ON s.id = p.store_id WHERE p.id = $1::uuid";
	const char *p[1] = { id };
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	r = exec(conn, ctx, "product owner", sql, 1, p, NULL, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	if (PQntuples(r) == 0) {
		code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "product not found");
	} else {
		snprintf(meta->owner_id, sizeof(meta->owner_id), "%s",
			 PQgetvalue(r, 0, 0));
		meta->store_active = strcmp(PQgetvalue(r, 0, 1), "active") == 0;
		code = RPC_OK;
	}
	PQclear(r);
	return code;
}

rpc_code cat_product_update(pg_pool *pool, rpc_ctx *ctx, const char *id,
			    unsigned mask, const cat_product *in,
			    cat_product *out, cat_product_meta *meta)
{
	static const char sql[] =
		"UPDATE catalog.products p SET "
		"title = CASE WHEN $2::boolean THEN $3 ELSE p.title END, "
		"description = CASE WHEN $4::boolean THEN $5 ELSE p.description END, "
		"category_id = CASE WHEN $6::boolean THEN nullif($7, '')::uuid "
		"ELSE p.category_id END, "
		"price_minor = CASE WHEN $8::boolean THEN $9::bigint ELSE p.price_minor END, "
		"currency = CASE WHEN $8::boolean THEN $10 ELSE p.currency END, "
		"attributes = CASE WHEN $11::boolean THEN $12::jsonb ELSE p.attributes END, "
		"image_urls = CASE WHEN $13::boolean THEN "
		"ARRAY(SELECT jsonb_array_elements_text($14::jsonb)) ELSE p.image_urls END, "
		"status = CASE WHEN $15::boolean THEN $16 ELSE p.status END, "
		"update_time = now() "
		"FROM catalog.stores s WHERE p.id = $1::uuid AND s.id = p.store_id "
		"RETURNING " PRODUCT_COLS;
	static const Estore__Catalog__V1__Money no_price = {
		PROTOBUF_C_MESSAGE_INIT(&estore__catalog__v1__money__descriptor),
		0, (char *)""
	};
	const Estore__Catalog__V1__Money *price = in->price ? in->price : &no_price;
	rpc_arena *a = rpc_ctx_arena(ctx);
	char amount[24];
	const char *p[16];

#define FLAG(bit) ((mask & (bit)) ? "true" : "false")
	snprintf(amount, sizeof(amount), "%" PRId64, price->amount_minor);
	p[0] = id;
	p[1] = FLAG(CAT_PF_TITLE);
	p[2] = in->title;
	p[3] = FLAG(CAT_PF_DESCRIPTION);
	p[4] = in->description;
	p[5] = FLAG(CAT_PF_CATEGORY);
	p[6] = in->category_id;
	p[7] = FLAG(CAT_PF_PRICE);
	p[8] = amount;
	p[9] = price->currency;
	p[10] = FLAG(CAT_PF_ATTRIBUTES);
	p[11] = attributes_json(a, in);
	p[12] = FLAG(CAT_PF_IMAGES);
	p[13] = images_json(a, in);
	p[14] = FLAG(CAT_PF_STATUS);
	p[15] = product_status_text(in->status);
#undef FLAG
	if (!p[11] || !p[13])
		return oom(ctx);
	return one_product(pool, ctx, "update product", sql, 16, p,
			   &no_category, out, meta);
}

rpc_code cat_product_archive(pg_pool *pool, rpc_ctx *ctx, const char *id,
			     cat_product *out, cat_product_meta *meta)
{
	/* update_time moves only on the first archive: a repeated DELETE
	 * changes nothing, as idempotency promises. */
	static const char sql[] =
		"UPDATE catalog.products p SET status = 'archived', "
		"update_time = CASE WHEN p.status = 'archived' THEN p.update_time "
		"ELSE now() END "
		"FROM catalog.stores s WHERE p.id = $1::uuid AND s.id = p.store_id "
		"RETURNING " PRODUCT_COLS;
	const char *p[1] = { id };

	return one_product(pool, ctx, "archive product", sql, 1, p, NULL, out,
			   meta);
}

rpc_code cat_stock_adjust(pg_pool *pool, rpc_ctx *ctx, const char *id,
			  int64_t delta, cat_stock_level *out)
{
	/* The condition is evaluated on the locked, current row: two
	 * concurrent decrements cannot both pass on the same units. The
	 * second SELECT tells "no product" from "not enough" in the same
	 * statement (it sees the row as of the statement's start). */
	static const char sql[] =
		"WITH u AS (UPDATE catalog.products SET stock = stock + $2::bigint, "
		"update_time = now() WHERE id = $1::uuid AND stock + $2::bigint >= 0 "
		"RETURNING id::text, stock, reserved) "
		"SELECT id, stock, reserved, true FROM u UNION ALL "
		"SELECT id::text, stock, reserved, false FROM catalog.products "
		"WHERE id = $1::uuid AND NOT EXISTS (SELECT 1 FROM u)";
	char d[24];
	const char *p[2] = { id, d };
	rpc_arena *a = rpc_ctx_arena(ctx);
	rpc_code code;
	PGconn *conn;
	PGresult *r;

	snprintf(d, sizeof(d), "%" PRId64, delta);
	conn = acquire(pool, ctx, &code);
	if (!conn)
		return code;
	r = exec(conn, ctx, "adjust stock", sql, 2, p, NULL, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	if (PQntuples(r) == 0) {
		code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "product not found");
	} else if (PQgetvalue(r, 0, 3)[0] != 't') {
		code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
				     "delta: stock would go below zero "
				     "(%s available)", PQgetvalue(r, 0, 1));
	} else {
		out->product_id = col(r, 0, 0, a);
		out->available = parse_i64(PQgetvalue(r, 0, 1));
		out->reserved = parse_i64(PQgetvalue(r, 0, 2));
		code = out->product_id ? RPC_OK : oom(ctx);
	}
	PQclear(r);
	return code;
}

/* ---- reservations ------------------------------------------------------ */

/* The lines' product ids as one array literal. */
static char *id_array(rpc_arena *a, const cat_line *const *lines, size_t n)
{
	const char **ids = rpc_arena_calloc(a, n + 1, sizeof(*ids));

	if (!ids)
		return NULL;
	for (size_t i = 0; i < n; i++)
		ids[i] = lines[i]->product_id;
	return uuid_array(a, ids, n);
}

/* The lines' quantities, likewise (integers need no quoting either). */
static char *qty_array(rpc_arena *a, const cat_line *const *lines, size_t n)
{
	char *s = rpc_arena_alloc(a, n * 21 + 3), *o = s;

	if (!s)
		return NULL;
	*o++ = '{';
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s%" PRId64, i ? "," : "", lines[i]->quantity);
	strcpy(o, "}");
	return s;
}

static Estore__Catalog__V1__ReservationStatus reservation_status(const char *s)
{
	if (strcmp(s, "released") == 0)
		return ESTORE__CATALOG__V1__RESERVATION_STATUS__RESERVATION_STATUS_RELEASED;
	if (strcmp(s, "committed") == 0)
		return ESTORE__CATALOG__V1__RESERVATION_STATUS__RESERVATION_STATUS_COMMITTED;
	return ESTORE__CATALOG__V1__RESERVATION_STATUS__RESERVATION_STATUS_HELD;
}

/* Reads the reservation row (locking it when `lock`) and its lines, in
 * product-id order, into *out. NOT_FOUND when there is none. Runs on the
 * caller's connection, inside its transaction. */
static rpc_code load_reservation(PGconn *conn, rpc_ctx *ctx,
				 const char *order_id, bool lock,
				 cat_reservation *out)
{
	static const char head_sql[] =
		"SELECT " RESERVATION_COLS " FROM catalog.reservations "
		"WHERE order_id = $1::uuid";
	static const char lock_sql[] =
		"SELECT " RESERVATION_COLS " FROM catalog.reservations "
		"WHERE order_id = $1::uuid FOR UPDATE";
	static const char lines_sql[] =
		"SELECT product_id::text, quantity FROM catalog.reservation_lines "
		"WHERE order_id = $1::uuid ORDER BY product_id";
	const char *p[1] = { order_id };
	rpc_arena *a = rpc_ctx_arena(ctx);
	rpc_code code;
	PGresult *r;
	int rows;

	r = exec(conn, ctx, "get reservation", lock ? lock_sql : head_sql, 1, p,
		 NULL, &code);
	if (!r)
		return code;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return rpc_ctx_error(ctx, RPC_NOT_FOUND,
				     "no reservation for this order");
	}
	out->order_id = col(r, 0, 0, a);
	out->status = reservation_status(PQgetvalue(r, 0, 1));
	out->create_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, 0, 2)));
	PQclear(r);
	if (!out->order_id || !out->create_time)
		return oom(ctx);
	r = exec(conn, ctx, "get reservation lines", lines_sql, 1, p, NULL,
		 &code);
	if (!r)
		return code;
	rows = PQntuples(r);
	out->lines = rows ? rpc_arena_calloc(a, (size_t)rows, sizeof(*out->lines))
			  : NULL;
	code = rows && !out->lines ? oom(ctx) : RPC_OK;
	for (int i = 0; code == RPC_OK && i < rows; i++) {
		cat_line *l = rpc_arena_alloc(a, sizeof(*l));

		if (!l) {
			code = oom(ctx);
			break;
		}
		estore__catalog__v1__reservation_line__init(l);
		l->product_id = col(r, i, 0, a);
		l->quantity = parse_i64(PQgetvalue(r, i, 1));
		if (!l->product_id) {
			code = oom(ctx);
			break;
		}
		out->lines[i] = l;
		out->n_lines = (size_t)i + 1;
	}
	PQclear(r);
	return code;
}

static bool same_lines(const cat_reservation *have, const cat_line *const *lines,
		       size_t n)
{
	if (have->n_lines != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(have->lines[i]->product_id, lines[i]->product_id) != 0 ||
		    have->lines[i]->quantity != lines[i]->quantity)
			return false;
	return true;
}

/* The body of cat_reserve, inside its transaction. */
static rpc_code reserve_tx(PGconn *conn, rpc_ctx *ctx, const char *order_id,
			   const cat_line *const *lines, size_t n,
			   cat_reservation *out)
{
	/* ON CONFLICT DO NOTHING waits for a concurrent insert of the same
	 * order id to commit or roll back: the loser then sees the winner's
	 * reservation, or inserts its own. */
	static const char claim_sql[] =
		"INSERT INTO catalog.reservations (order_id) VALUES ($1::uuid) "
		"ON CONFLICT (order_id) DO NOTHING RETURNING order_id";
	/* Row locks taken in product-id order: any two reservations that
	 * share products queue on the first one they share, never cross. */
	static const char lock_sql[] =
		"SELECT p.id::text, p.stock, p.status, s.status "
		"FROM catalog.products p JOIN catalog.stores s ON s.id = p.store_id "
		"WHERE p.id = ANY($1::uuid[]) ORDER BY p.id FOR UPDATE OF p";
	static const char take_sql[] =
		"UPDATE catalog.products p SET stock = p.stock - l.q, "
		"reserved = p.reserved + l.q, update_time = now() "
		"FROM unnest($1::uuid[], $2::bigint[]) AS l(id, q) WHERE p.id = l.id";
	static const char lines_sql[] =
		"INSERT INTO catalog.reservation_lines (order_id, product_id, quantity) "
		"SELECT $1::uuid, l.id, l.q FROM unnest($2::uuid[], $3::bigint[]) "
		"AS l(id, q)";
	rpc_arena *a = rpc_ctx_arena(ctx);
	char *ids = id_array(a, lines, n), *qty = qty_array(a, lines, n);
	const char *p[3];
	rpc_code code;
	PGresult *r;
	int rows;

	if (!ids || !qty)
		return oom(ctx);
	p[0] = order_id;
	r = exec(conn, ctx, "claim order", claim_sql, 1, p, NULL, &code);
	if (!r)
		return code;
	rows = PQntuples(r);
	PQclear(r);
	if (rows == 0) {
		code = load_reservation(conn, ctx, order_id, false, out);
		if (code != RPC_OK)
			return code;
		if (!same_lines(out, lines, n))
			return rpc_ctx_error(ctx, RPC_ALREADY_EXISTS,
					     "order_id: this order already holds "
					     "a reservation with other lines");
		return RPC_OK;
	}

	p[0] = ids;
	r = exec(conn, ctx, "lock products", lock_sql, 1, p, NULL, &code);
	if (!r)
		return code;
	rows = PQntuples(r);
	/* Rows come back in id order, as the (sorted) lines are. */
	for (size_t i = 0, k = 0; i < n; i++) {
		const char *id = lines[i]->product_id;

		if (k >= (size_t)rows || strcmp(PQgetvalue(r, (int)k, 0), id) != 0) {
			PQclear(r);
			return rpc_ctx_error(ctx, RPC_NOT_FOUND,
					     "lines[%zu].product_id: product "
					     "not found", i);
		}
		if (strcmp(PQgetvalue(r, (int)k, 2), "active") != 0 ||
		    strcmp(PQgetvalue(r, (int)k, 3), "active") != 0) {
			PQclear(r);
			return rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
					     "lines[%zu].product_id: product %s "
					     "is not for sale", i, id);
		}
		if (parse_i64(PQgetvalue(r, (int)k, 1)) < lines[i]->quantity) {
			code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
					     "lines[%zu].quantity: only %s of "
					     "product %s available", i,
					     PQgetvalue(r, (int)k, 1), id);
			PQclear(r);
			return code;
		}
		k++;
	}
	PQclear(r);

	p[0] = ids;
	p[1] = qty;
	r = exec(conn, ctx, "take stock", take_sql, 2, p, NULL, &code);
	if (!r)
		return code;
	PQclear(r);
	p[0] = order_id;
	p[1] = ids;
	p[2] = qty;
	r = exec(conn, ctx, "reservation lines", lines_sql, 3, p, NULL, &code);
	if (!r)
		return code;
	PQclear(r);
	return load_reservation(conn, ctx, order_id, false, out);
}

rpc_code cat_reserve(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		     const cat_line *const *lines, size_t n,
		     cat_reservation *out)
{
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);

	if (!conn)
		return code;
	code = begin(conn, ctx);
	if (code == RPC_OK) {
		code = reserve_tx(conn, ctx, order_id, lines, n, out);
		if (code == RPC_OK)
			code = commit(conn, ctx);
		else
			pg_rollback(conn);
	}
	pg_release(pool, conn);
	return code;
}

/* Release (to_status "released": units back on sale) or commit
 * ("committed": units sold) of a held reservation, in one transaction. */
static rpc_code settle(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		       bool release, cat_reservation *out)
{
	static const char lock_sql[] =
		"SELECT 1 FROM catalog.products p "
		"JOIN catalog.reservation_lines l ON l.product_id = p.id "
		"WHERE l.order_id = $1::uuid ORDER BY p.id FOR UPDATE OF p";
	static const char release_sql[] =
		"UPDATE catalog.products p SET stock = p.stock + l.quantity, "
		"reserved = p.reserved - l.quantity, update_time = now() "
		"FROM catalog.reservation_lines l "
		"WHERE l.order_id = $1::uuid AND p.id = l.product_id";
	static const char commit_sql[] =
		"UPDATE catalog.products p SET reserved = p.reserved - l.quantity, "
		"sales_count = p.sales_count + l.quantity, update_time = now() "
		"FROM catalog.reservation_lines l "
		"WHERE l.order_id = $1::uuid AND p.id = l.product_id";
	static const char status_sql[] =
		"UPDATE catalog.reservations SET status = $2, update_time = now() "
		"WHERE order_id = $1::uuid";
	const Estore__Catalog__V1__ReservationStatus done =
		release ? ESTORE__CATALOG__V1__RESERVATION_STATUS__RESERVATION_STATUS_RELEASED
			: ESTORE__CATALOG__V1__RESERVATION_STATUS__RESERVATION_STATUS_COMMITTED;
	const char *p[2] = { order_id, release ? "released" : "committed" };
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	if ((code = begin(conn, ctx)) != RPC_OK)
		goto out;
	/* The reservation row lock serialises settlements of one order;
	 * the product locks, in id order, keep clear of reservations. */
	code = load_reservation(conn, ctx, order_id, true, out);
	if (code != RPC_OK)
		goto rollback;
	if (out->status == done)
		goto rollback;  /* already done: the same answer again */
	if (out->status != ESTORE__CATALOG__V1__RESERVATION_STATUS__RESERVATION_STATUS_HELD) {
		code = rpc_ctx_error(ctx, RPC_FAILED_PRECONDITION,
				     "order_id: the reservation was already %s",
				     release ? "committed" : "released");
		goto rollback;
	}
	if (!(r = exec(conn, ctx, "lock products", lock_sql, 1, p, NULL, &code)))
		goto rollback;
	PQclear(r);
	if (!(r = exec(conn, ctx, release ? "release" : "commit",
		       release ? release_sql : commit_sql, 1, p, NULL, &code)))
		goto rollback;
	PQclear(r);
	if (!(r = exec(conn, ctx, "settle", status_sql, 2, p, NULL, &code)))
		goto rollback;
	PQclear(r);
	if ((code = commit(conn, ctx)) == RPC_OK)
		out->status = done;
	goto out;
rollback:
	pg_rollback(conn);
out:
	pg_release(pool, conn);
	return code;
}

rpc_code cat_release(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		     cat_reservation *out)
{
	return settle(pool, ctx, order_id, true, out);
}

rpc_code cat_commit(pg_pool *pool, rpc_ctx *ctx, const char *order_id,
		    cat_reservation *out)
{
	return settle(pool, ctx, order_id, false, out);
}
