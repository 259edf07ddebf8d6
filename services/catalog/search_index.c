/*
 * search_index.c - builds and updates the search index from PostgreSQL
 * (see search_index.h).
 */
#include "search_index.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/log.h"
#include "store_pg.h"

/* Rows per FETCH of the build: big enough that round trips do not
 * matter, small enough that a batch is a few MB at most. */
#define BATCH 2000
#define FETCH_SQL "FETCH 2000 FROM search_build"

/* Products changed since the last build are scored in full on every query
 * (search.h, es_optimize); past this share of the index (and this many)
 * a fresh build from PostgreSQL replaces it. A build rather than
 * es_optimize in place, which would hold queries for its whole run. */
#define TAIL_REBUILD_SHARE 20 /* 1/20 = 5% */
#define TAIL_REBUILD_MIN 64

struct search_index {
	/* Guards the pointer only (es_index locks itself): a rebuild swaps
	 * under the write lock, queries hold the read lock while they use
	 * the index. */
	pthread_rwlock_t lock;
	es_index *ix;
	bool failing; /* feed thread only: log one failure in a row */
};

/* Category paths root first, from the top down (parents are never
 * deleted, so every category reaches a root); ES_MAX_CATEGORY_DEPTH caps
 * the walk. Attributes travel as key US value RS ..., characters
 * validate.c refuses in keys and values. */
#define DOC_SQL(where)                                                        \
	"WITH RECURSIVE cp(id, path, depth) AS ("                             \
	" SELECT id, id::text, 1 FROM catalog.categories WHERE parent_id IS NULL" \
	" UNION ALL SELECT c.id, cp.path || ',' || c.id::text, cp.depth + 1"  \
	" FROM catalog.categories c JOIN cp ON c.parent_id = cp.id"           \
	" WHERE cp.depth < 16) "                                              \
	"SELECT p.id::text, p.store_id::text, p.title, p.description,"       \
	" coalesce(cp.path, ''),"                                             \
	" coalesce((SELECT string_agg(e.key || chr(31) || e.value, chr(30)"   \
	"  ORDER BY e.key) FROM jsonb_each_text(p.attributes) e), ''),"       \
	" p.price_minor, p.currency, p.stock, p.rating_average,"              \
	" p.rating_count, p.sales_count,"                                     \
	" extract(epoch FROM p.create_time)::bigint,"                         \
	" p.status = 'active' AND s.status = 'active' "                       \
	"FROM catalog.products p JOIN catalog.stores s ON s.id = p.store_id"  \
	" LEFT JOIN cp ON cp.id = p.category_id " where

search_index *search_index_new(void)
{
	search_index *s = calloc(1, sizeof(*s));
	pthread_rwlockattr_t attr;

	if (!s)
		return NULL;
	/* A swap must not wait behind an endless stream of queries. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return s;
}

void search_index_free(search_index *s)
{
	if (!s)
		return;
	es_destroy(s->ix);
	pthread_rwlock_destroy(&s->lock);
	free(s);
}

es_index *search_index_get(search_index *s)
{
	pthread_rwlock_rdlock(&s->lock);
	if (!s->ix) {
		pthread_rwlock_unlock(&s->lock);
		return NULL;
	}
	return s->ix;
}

bool search_index_ready(void *arg)
{
	search_index *s = arg;
	bool ready;

	pthread_rwlock_rdlock(&s->lock);
	ready = s->ix != NULL;
	pthread_rwlock_unlock(&s->lock);
	return ready;
}

void search_index_put(search_index *s)
{
	pthread_rwlock_unlock(&s->lock);
}

/* ---- rows to documents ---------------------------------------------------- */

static int64_t i64(PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool searchable(PGresult *r, int row)
{
	return PQgetvalue(r, row, 13)[0] == 't';
}

/* Upserts row `row` of r into ix. */
static int upsert_row(es_index *ix, PGresult *r, int row)
{
	const char *cats[ES_MAX_CATEGORY_DEPTH];
	es_attr attrs[ES_MAX_ATTRS];
	es_doc d = { 0 };
	char *path = strdup(PQgetvalue(r, row, 4));
	char *attr = strdup(PQgetvalue(r, row, 5));
	char *save = NULL, *tok;
	int rc;

	if (!path || !attr) {
		free(path);
		free(attr);
		return ES_ENOMEM;
	}
	for (tok = strtok_r(path, ",", &save);
	     tok && d.category_count < ES_MAX_CATEGORY_DEPTH;
	     tok = strtok_r(NULL, ",", &save))
		cats[d.category_count++] = tok;
	for (tok = strtok_r(attr, "\x1e", &save);
	     tok && d.attr_count < ES_MAX_ATTRS;
	     tok = strtok_r(NULL, "\x1e", &save)) {
		char *sep = strchr(tok, '\x1f');

		if (!sep)
			continue;
		*sep = '\0';
		attrs[d.attr_count].key = tok;
		attrs[d.attr_count++].value = sep + 1;
	}
	d.product_id = PQgetvalue(r, row, 0);
	d.store_id = PQgetvalue(r, row, 1);
	d.title = PQgetvalue(r, row, 2);
	d.description = PQgetvalue(r, row, 3);
	d.category_path = cats;
	d.attrs = attrs;
	d.price = i64(r, row, 6);
	d.currency = PQgetvalue(r, row, 7);
	d.stock = i64(r, row, 8);
	d.rating = strtod(PQgetvalue(r, row, 9), NULL);
	d.rating_count = (uint32_t)i64(r, row, 10);
	d.sales = (uint64_t)i64(r, row, 11);
	d.created = i64(r, row, 12);
	rc = es_upsert(ix, &d);
	if (rc != ES_OK)
		rpc_log(RPC_LOG_WARN, "search", "product %s not indexed: %s",
			d.product_id, es_strerror(rc));
	free(path);
	free(attr);
	return rc;
}

/* Applies every row of r: searchable ones upserted, others removed. */
static void apply_rows(es_index *ix, PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		if (searchable(r, i))
			(void)upsert_row(ix, r, i);
		else
			(void)es_remove(ix, PQgetvalue(r, i, 0));
	}
}

static bool exec_ok(PGconn *conn, const char *sql)
{
	PGresult *r = PQexec(conn, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;

	PQclear(r);
	return ok;
}

/* ---- hooks ---------------------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Builds a fresh index from one snapshot and swaps it in; false (the
 * current index kept) when that fails. */
static bool build(search_index *s, PGconn *conn)
{
	double t0 = now_ms();
	es_index *ix = es_create(NULL), *old;
	es_stats st = { 0 };
	char why[256];
	bool ok = ix != NULL;

	/* One snapshot for the whole read; LISTEN came first, so a change
	 * committed after it is notified and applied after the swap. */
	ok = ok && exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ "
			   "READ ONLY");
	ok = ok && exec_ok(conn, "DECLARE search_build NO SCROLL CURSOR FOR "
			   DOC_SQL("WHERE p.status = 'active' AND "
				   "s.status = 'active'"));
	while (ok) {
		PGresult *r = PQexec(conn, FETCH_SQL);
		int n;

		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			PQclear(r);
			ok = false;
			break;
		}
		n = PQntuples(r);
		apply_rows(ix, r);
		PQclear(r);
		if (n < BATCH)
			break;
	}
	/* Kept before ROLLBACK, which clears it. */
	snprintf(why, sizeof(why), "%s",
		 ok || !ix ? "out of memory" : PQerrorMessage(conn));
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		(void)exec_ok(conn, ok ? "COMMIT" : "ROLLBACK");
	if (ok)
		es_get_stats(ix, &st);
	if (!ok || es_optimize(ix) != ES_OK) {
		/* The old index (if any) stays until the feed's next
		 * connection builds again; queries on it are no staler than
		 * the cache that is off meanwhile. */
		if (!s->failing)
			rpc_log(RPC_LOG_WARN, "search", "cannot build the search "
				"index (retrying): %s", why);
		s->failing = true;
		es_destroy(ix);
		return false;
	}
	s->failing = false;
	es_get_stats(ix, &st);
	pthread_rwlock_wrlock(&s->lock);
	old = s->ix;
	s->ix = ix;
	pthread_rwlock_unlock(&s->lock);
	es_destroy(old);
	rpc_log(RPC_LOG_INFO, "search", "search index built: %" PRIu64
		" products in %.0f ms (%" PRIu64 " bytes)", st.docs,
		now_ms() - t0, st.memory_bytes);
	return true;
}

/* Re-reads the products `where` names ($1) and applies them. */
static void reread(search_index *s, PGconn *conn, const char *sql,
		   const char *id)
{
	const char *params[1] = { id };
	es_index *ix = search_index_get(s);
	es_stats st;
	PGresult *r;

	if (!ix)
		return; /* the build in progress reads it */
	r = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		apply_rows(ix, r);
	else
		rpc_log(RPC_LOG_WARN, "search", "cannot re-read %s: %s", id,
			PQerrorMessage(conn));
	PQclear(r);
	es_get_stats(ix, &st);
	search_index_put(s);
	if (st.tail_docs >= TAIL_REBUILD_MIN &&
	    st.tail_docs * TAIL_REBUILD_SHARE >= st.docs)
		(void)build(s, conn);
}

static bool on_connected(void *arg, PGconn *conn)
{
	return build(arg, conn);
}

static bool on_reload(void *arg, PGconn *conn)
{
	return build(arg, conn);
}

static void on_product(void *arg, PGconn *conn, const char *id)
{
	reread(arg, conn, DOC_SQL("WHERE p.id = $1::uuid"), id);
}

static void on_store(void *arg, PGconn *conn, const char *id)
{
	reread(arg, conn, DOC_SQL("WHERE p.store_id = $1::uuid"), id);
}

void search_index_feed_hooks(search_index *s, cat_feed_hooks *out)
{
	*out = (cat_feed_hooks){
		.name = "search",
		.connected = on_connected,
		.product_changed = on_product,
		.store_changed = on_store,
		.reload = on_reload,
		.arg = s,
	};
}
