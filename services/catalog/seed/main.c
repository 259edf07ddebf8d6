/*
 * estore-seed - fills the catalog with a generated, realistic catalog
 * (gen.h) through a bulk path: COPY in one transaction.
 *
 *   estore-seed --products N [--seed S]
 *
 * Connects with the services' DB_* variables, applies the account and
 * catalog migrations if the services have not yet, and writes vendor
 * accounts, their stores, the category tree (reusing categories that
 * exist) and N products. Everything commits together or not at all.
 *
 * The products' NOTIFY trigger is disabled inside the transaction (other
 * sessions never see it off): a million notices would make every running
 * catalog replica re-read a million rows one by one. A single notice on
 * 'catalog_reload' at COMMIT tells them to drop their cache and rebuild
 * their search index from a snapshot instead.
 *
 * Vendors sign in with a password made up here and printed once (on
 * stdout, with the rest of the summary).
 */
#include <argon2.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gen.h"
#include "rpc/log.h"
#include "services/common/config.h"
#include "services/common/pg.h"

#define PROG "estore-seed"
#define MAX_PRODUCTS 10000000ULL

#ifndef CATALOG_MIGRATIONS_DEFAULT_DIR
#define CATALOG_MIGRATIONS_DEFAULT_DIR "migrations"
#endif
#ifndef ACCOUNT_MIGRATIONS_DEFAULT_DIR
#define ACCOUNT_MIGRATIONS_DEFAULT_DIR "migrations"
#endif

struct config {
	char *db_host;
	long long db_port;
	char *db_user;
	char *db_password;
	char *db_name;
	char *catalog_migrations_dir;
	char *account_migrations_dir;
};

#define F(field) offsetof(struct config, field)
static const cfg_var config_vars[] = {
	{ "DB_HOST", CFG_STRING, F(db_host), "127.0.0.1", 0, 0, false,
	  "PostgreSQL host" },
	{ "DB_PORT", CFG_INT, F(db_port), "5432", 1, 65535, false,
	  "PostgreSQL port" },
	{ "DB_USER", CFG_STRING, F(db_user), "estore", 0, 0, false,
	  "PostgreSQL user" },
	{ "DB_PASSWORD", CFG_STRING, F(db_password), "", 0, 0, true,
	  "PostgreSQL password" },
	{ "DB_NAME", CFG_STRING, F(db_name), "estore", 0, 0, false,
	  "PostgreSQL database" },
	{ "CATALOG_MIGRATIONS_DIR", CFG_STRING, F(catalog_migrations_dir),
	  CATALOG_MIGRATIONS_DEFAULT_DIR, 0, 0, false,
	  "directory of the catalog's NNN_name.sql migrations" },
	{ "ACCOUNT_MIGRATIONS_DIR", CFG_STRING, F(account_migrations_dir),
	  ACCOUNT_MIGRATIONS_DEFAULT_DIR, 0, 0, false,
	  "directory of the account service's NNN_name.sql migrations" },
};
#undef F
#define N_VARS (sizeof(config_vars) / sizeof(config_vars[0]))

/* The auth service's default argon2id cost (AUTH_ARGON2_*): its logins
 * verify any cost, and rehash to theirs when it differs. */
#define HASH_T 2
#define HASH_M_KIB 19456
#define HASH_P 1

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " --products N [--seed S]\n"
		"  writes N generated products (1..%llu), with vendors, stores\n"
		"  and categories, deterministically from seed S (default 1)\n"
		"  into the database named by DB_HOST, DB_PORT, DB_USER,\n"
		"  DB_PASSWORD and DB_NAME\n", MAX_PRODUCTS);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max,
		      uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/* ---- SQL helpers ----------------------------------------------------------- */

static bool run(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
		  PQresultStatus(r) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, PROG ": %s", PQerrorMessage(c));
	PQclear(r);
	return ok;
}

/* A COPY in progress: rows are buffered and sent 256 KiB at a time. */
typedef struct copy {
	PGconn *conn;
	char buf[256 * 1024];
	size_t len;
	bool failed;
} copy;

static bool copy_begin(copy *cp, PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	bool ok = PQresultStatus(r) == PGRES_COPY_IN;

	if (!ok)
		fprintf(stderr, PROG ": %s", PQerrorMessage(c));
	PQclear(r);
	cp->conn = c;
	cp->len = 0;
	cp->failed = !ok;
	return ok;
}

static void copy_flush(copy *cp)
{
	if (!cp->failed && cp->len &&
	    PQputCopyData(cp->conn, cp->buf, (int)cp->len) != 1) {
		fprintf(stderr, PROG ": %s", PQerrorMessage(cp->conn));
		cp->failed = true;
	}
	cp->len = 0;
}

/* Appends one field in COPY's text format: backslash, tab and line
 * breaks escaped; fields separated by tabs, the row ended by the caller. */
static void copy_field(copy *cp, const char *s, bool first)
{
	if (cp->len + 2 * strlen(s) + 4 > sizeof(cp->buf))
		copy_flush(cp);
	if (!first)
		cp->buf[cp->len++] = '\t';
	for (; *s; s++) {
		switch (*s) {
		case '\\': cp->buf[cp->len++] = '\\'; cp->buf[cp->len++] = '\\'; break;
		case '\t': cp->buf[cp->len++] = '\\'; cp->buf[cp->len++] = 't'; break;
		case '\n': cp->buf[cp->len++] = '\\'; cp->buf[cp->len++] = 'n'; break;
		case '\r': cp->buf[cp->len++] = '\\'; cp->buf[cp->len++] = 'r'; break;
		default: cp->buf[cp->len++] = *s;
		}
	}
}

static void copy_row_end(copy *cp)
{
	cp->buf[cp->len++] = '\n';
}

static bool copy_end(copy *cp)
{
	PGresult *r;
	bool ok;

	copy_flush(cp);
	if (PQputCopyEnd(cp->conn, cp->failed ? "seed failed" : NULL) != 1)
		cp->failed = true;
	r = PQgetResult(cp->conn);
	ok = !cp->failed && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok && !cp->failed)
		fprintf(stderr, PROG ": %s", PQerrorMessage(cp->conn));
	PQclear(r);
	while ((r = PQgetResult(cp->conn)) != NULL)
		PQclear(r);
	return ok;
}

static void iso_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%d %H:%M:%S+00", &tm);
}

/* ---- the steps ----------------------------------------------------------------- */

/* The category tree: existing categories of the same slug under the same
 * parent are kept, so seeds share one tree and an admin's edits stay.
 * ids[i] receives each node's id. */
static bool write_categories(PGconn *c, const seed_plan *plan, char (*ids)[SEED_UUID_LEN + 1])
{
	static const char insert_sql[] =
		"INSERT INTO catalog.categories (id, parent_id, slug, name) "
		"SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM "
		"catalog.categories WHERE parent_id IS NOT DISTINCT FROM $2 "
		"AND slug = $3)";
	static const char select_sql[] =
		"SELECT id FROM catalog.categories WHERE parent_id IS NOT "
		"DISTINCT FROM $1::uuid AND slug = $2";
	size_t n;
	const seed_category *tree = seed_categories(&n);

	for (size_t i = 0; i < n; i++) {
		char fresh[SEED_UUID_LEN + 1];
		const char *parent = tree[i].parent < 0 ? NULL : ids[tree[i].parent];
		const char *ins[4] = { fresh, parent, tree[i].slug, tree[i].name };
		const char *sel[2] = { parent, tree[i].slug };
		PGresult *r;
		bool ok;

		seed_uuid(plan->seed, SEED_CATEGORY, i, fresh);
		r = PQexecParams(c, insert_sql, 4, NULL, ins, NULL, NULL, 0);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
		if (ok) {
			r = PQexecParams(c, select_sql, 2, NULL, sel, NULL,
					 NULL, 0);
			ok = PQresultStatus(r) == PGRES_TUPLES_OK &&
			     PQntuples(r) == 1;
			if (ok)
				snprintf(ids[i], SEED_UUID_LEN + 1, "%s",
					 PQgetvalue(r, 0, 0));
			PQclear(r);
		}
		if (!ok) {
			fprintf(stderr, PROG ": category %s: %s", tree[i].slug,
				PQerrorMessage(c));
			return false;
		}
	}
	return true;
}

static bool write_vendors(PGconn *c, const seed_plan *plan, const char *hash)
{
	copy *cp = malloc(sizeof(*cp));
	seed_vendor v;
	bool ok;

	if (!cp)
		return false;
	ok = copy_begin(cp, c, "COPY account.accounts (id, email, "
			"display_name, roles, password_hash) FROM STDIN");
	for (uint64_t i = 0; ok && i < plan->vendors && !cp->failed; i++) {
		seed_vendor_make(plan, i, &v);
		copy_field(cp, v.id, true);
		copy_field(cp, v.email, false);
		copy_field(cp, v.display_name, false);
		copy_field(cp, "{customer,vendor}", false);
		copy_field(cp, hash, false);
		copy_row_end(cp);
	}
	ok = ok && copy_end(cp);
	free(cp);
	return ok;
}

static bool write_stores(PGconn *c, const seed_plan *plan, uint64_t *suspended)
{
	copy *cp = malloc(sizeof(*cp));
	seed_store s;
	seed_vendor v;
	bool ok;

	if (!cp)
		return false;
	ok = copy_begin(cp, c, "COPY catalog.stores (id, owner_id, name, "
			"slug, description, status) FROM STDIN");
	for (uint64_t i = 0; ok && i < plan->stores && !cp->failed; i++) {
		seed_store_make(plan, i, &s);
		seed_vendor_make(plan, s.vendor, &v);
		copy_field(cp, s.id, true);
		copy_field(cp, v.id, false);
		copy_field(cp, s.name, false);
		copy_field(cp, s.slug, false);
		copy_field(cp, s.description, false);
		copy_field(cp, s.suspended ? "suspended" : "active", false);
		copy_row_end(cp);
		*suspended += s.suspended != 0;
	}
	ok = ok && copy_end(cp);
	free(cp);
	return ok;
}

static bool write_products(PGconn *c, const seed_plan *plan,
			   char (*cat_ids)[SEED_UUID_LEN + 1],
			   uint64_t *active)
{
	copy *cp = malloc(sizeof(*cp));
	seed_product p;
	seed_store s;
	char num[64], created[32], images[200];
	double t0 = now_s();
	bool ok;

	if (!cp)
		return false;
	ok = copy_begin(cp, c, "COPY catalog.products (id, store_id, title, "
			"description, category_id, price_minor, currency, "
			"attributes, image_urls, status, stock, rating_average, "
			"rating_count, sales_count, create_time, update_time) "
			"FROM STDIN");
	for (uint64_t i = 0; ok && i < plan->products && !cp->failed; i++) {
		seed_product_make(plan, i, &p);
		seed_uuid(plan->seed, SEED_STORE, p.store, s.id);
		iso_time(p.create_time, created);
		copy_field(cp, p.id, true);
		copy_field(cp, s.id, false);
		copy_field(cp, p.title, false);
		copy_field(cp, p.description, false);
		copy_field(cp, cat_ids[p.category], false);
		snprintf(num, sizeof(num), "%" PRId64, p.price_minor);
		copy_field(cp, num, false);
		copy_field(cp, p.currency, false);
		copy_field(cp, p.attributes, false);
		snprintf(images, sizeof(images), "{%s}", p.image_url);
		copy_field(cp, images, false);
		copy_field(cp, p.status, false);
		snprintf(num, sizeof(num), "%" PRId64, p.stock);
		copy_field(cp, num, false);
		snprintf(num, sizeof(num), "%.1f", p.rating_average);
		copy_field(cp, num, false);
		snprintf(num, sizeof(num), "%" PRId32, p.rating_count);
		copy_field(cp, num, false);
		snprintf(num, sizeof(num), "%" PRId64, p.sales_count);
		copy_field(cp, num, false);
		copy_field(cp, created, false);
		copy_field(cp, created, false);
		copy_row_end(cp);
		*active += strcmp(p.status, "active") == 0;
		if ((i + 1) % 100000 == 0)
			fprintf(stderr, PROG ": %" PRIu64 " products (%.0f/s)\n",
				i + 1, (double)(i + 1) / (now_s() - t0));
	}
	ok = ok && copy_end(cp);
	free(cp);
	return ok;
}

/* A made-up password: 18 random bytes, base64url (24 characters). */
static bool make_password(char out[25])
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[18];

	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return false;
	for (int i = 0; i < 6; i++) {
		uint32_t v = (uint32_t)raw[3 * i] << 16 |
			     (uint32_t)raw[3 * i + 1] << 8 | raw[3 * i + 2];

		for (int k = 0; k < 4; k++)
			out[4 * i + k] = b64[(v >> (18 - 6 * k)) & 63];
	}
	out[24] = '\0';
	return true;
}

static bool hash_password(const char *pw, char *out, size_t cap)
{
	unsigned char salt[16];

	if (getrandom(salt, sizeof(salt), 0) != (ssize_t)sizeof(salt))
		return false;
	return argon2id_hash_encoded(HASH_T, HASH_M_KIB, HASH_P, pw,
				     strlen(pw), salt, sizeof(salt), 32, out,
				     cap) == ARGON2_OK;
}

static int seed(const struct config *cfg, const char *conninfo,
		uint64_t seed_value, uint64_t products)
{
	seed_plan plan;
	seed_store first;
	size_t ncat;
	char (*cat_ids)[SEED_UUID_LEN + 1];
	char password[25], hash[160], err[512];
	uint64_t suspended = 0, active = 0;
	double t0 = now_s();
	PGconn *c = NULL;
	int rc = 1;

	seed_plan_make(seed_value, products, &plan);
	(void)seed_categories(&ncat);
	cat_ids = calloc(ncat, sizeof(*cat_ids));
	if (!cat_ids)
		return 1;
	if (!make_password(password)) {
		fprintf(stderr, PROG ": no randomness for a password\n");
		goto out;
	}
	if (!hash_password(password, hash, sizeof(hash))) {
		fprintf(stderr, PROG ": cannot hash the vendor password\n");
		goto out;
	}
	if (pg_migrate(conninfo, "account", cfg->account_migrations_dir, err,
		       sizeof(err)) != 0 ||
	    pg_migrate(conninfo, "catalog", cfg->catalog_migrations_dir, err,
		       sizeof(err)) != 0) {
		fprintf(stderr, PROG ": migrations: %s\n", err);
		goto out;
	}
	c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, PROG ": %s", PQerrorMessage(c));
		goto out;
	}
	if (!run(c, "BEGIN"))
		goto out;
	seed_store_make(&plan, 0, &first);
	{
		const char *params[1] = { first.id };
		PGresult *r = PQexecParams(c, "SELECT 1 FROM catalog.stores "
					   "WHERE id = $1", 1, NULL, params,
					   NULL, NULL, 0);
		bool seeded = PQresultStatus(r) == PGRES_TUPLES_OK &&
			      PQntuples(r) > 0;
		bool failed = PQresultStatus(r) != PGRES_TUPLES_OK;

		PQclear(r);
		if (failed) {
			fprintf(stderr, PROG ": %s", PQerrorMessage(c));
			goto out;
		}
		if (seeded) {
			fprintf(stderr, PROG ": seed %" PRIu64 " is in this "
				"database already (store %s); use another "
				"--seed\n", seed_value, first.slug);
			rc = 3;
			goto out;
		}
	}
	fprintf(stderr, PROG ": seed %" PRIu64 ": %" PRIu64 " vendors, %"
		PRIu64 " stores, %zu categories, %" PRIu64 " products\n",
		seed_value, plan.vendors, plan.stores, ncat, plan.products);
	if (!write_categories(c, &plan, cat_ids) ||
	    !write_vendors(c, &plan, hash) ||
	    !write_stores(c, &plan, &suspended) ||
	    !run(c, "ALTER TABLE catalog.products DISABLE TRIGGER "
		 "products_notify") ||
	    !write_products(c, &plan, cat_ids, &active) ||
	    !run(c, "ALTER TABLE catalog.products ENABLE TRIGGER "
		 "products_notify") ||
	    !run(c, "NOTIFY catalog_reload") || !run(c, "COMMIT"))
		goto out;
	fprintf(stderr, PROG ": committed in %.1f s; analyzing\n",
		now_s() - t0);
	/* Fresh statistics, so the planner knows the tables' new sizes. */
	if (!run(c, "ANALYZE catalog.products, catalog.stores, "
		 "catalog.categories, account.accounts"))
		goto out;
	printf("seeded %" PRIu64 " products (%" PRIu64 " active) in %" PRIu64
	       " stores (%" PRIu64 " suspended) of %" PRIu64 " vendors, %zu "
	       "categories, in %.1f s\n", plan.products, active, plan.stores,
	       suspended, plan.vendors, ncat, now_s() - t0);
	printf("vendors sign in as vendor0.seed%" PRIu64 "@example.com .. "
	       "vendor%" PRIu64 ".seed%" PRIu64 "@example.com with the "
	       "password %s\n", seed_value, plan.vendors - 1, seed_value,
	       password);
	rc = 0;
out:
	if (rc != 0 && c && PQtransactionStatus(c) != PQTRANS_IDLE)
		(void)run(c, "ROLLBACK");
	PQfinish(c);
	explicit_bzero(password, sizeof(password));
	free(cat_ids);
	return rc;
}

int main(int argc, char **argv)
{
	struct config cfg = { 0 };
	uint64_t products = 0, seed_value = 1;
	bool have_products = false;
	char err[512], *conninfo;
	int rc;

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--products") == 0 &&
		    parse_u64(v, 1, MAX_PRODUCTS, &products)) {
			have_products = true;
			i++;
		} else if (strcmp(argv[i], "--seed") == 0 &&
			   parse_u64(v, 0, UINT64_MAX, &seed_value)) {
			i++;
		} else if (strcmp(argv[i], "-h") == 0 ||
			   strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, PROG ": bad argument '%s'%s\n", argv[i],
				v && argv[i][0] == '-' ? " (or its value)" : "");
			usage(stderr);
			return 2;
		}
	}
	if (!have_products) {
		usage(stderr);
		return 2;
	}
	if (cfg_load(config_vars, N_VARS, &cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 2;
	}
	/* pg_migrate logs through rpc/log: warnings and errors only. */
	rpc_log_set_sink(rpc_log_json_sink, PROG, RPC_LOG_WARN);
	conninfo = pg_conninfo(cfg.db_host, (int)cfg.db_port, cfg.db_user,
			       cfg.db_password, cfg.db_name);
	rc = conninfo ? seed(&cfg, conninfo, seed_value, products) : 1;
	if (conninfo)
		explicit_bzero(conninfo, strlen(conninfo));
	free(conninfo);
	cfg_free(config_vars, N_VARS, &cfg);
	return rc;
}
