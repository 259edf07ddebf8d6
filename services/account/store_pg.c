/*
 * store_pg.c - the account service's SQL (see store_pg.h). Table
 * account.accounts is created by migrations/001_init.sql.
 */
#include "store_pg.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc/log.h"
#include "services/common/pgcall.h"

/* The columns every read returns, in the order row_to_account reads them.
 * Times travel as integral microseconds since the epoch: exact (PostgreSQL
 * 15's extract() yields numeric), and they double as the list cursor. */
#define ACCOUNT_COLS                                                    \
	"id::text, email, display_name, array_to_string(roles, ','), "  \
	"locale, currency, marketing_opt_in, "                          \
	"(extract(epoch FROM create_time) * 1000000)::bigint, "         \
	"(extract(epoch FROM update_time) * 1000000)::bigint"
#define N_ACCOUNT_COLS 9

/* Role names as stored in accounts.roles (and as in access tokens). */
static const char *const role_names[] = {
	[ESTORE__ACCOUNT__V1__ROLE__ROLE_CUSTOMER] = "customer",
	[ESTORE__ACCOUNT__V1__ROLE__ROLE_VENDOR] = "vendor",
	[ESTORE__ACCOUNT__V1__ROLE__ROLE_ADMIN] = "admin",
};
#define ROLE_MAX ESTORE__ACCOUNT__V1__ROLE__ROLE_ADMIN

/* ---- plumbing ---------------------------------------------------------- */

static PGconn *acquire(pg_pool *pool, rpc_ctx *ctx, rpc_code *code)
{
	return pgcall_acquire(pool, ctx, "account store", code);
}

/* One statement; failures become the call's status (pgcall.h). The only
 * unique constraint besides the primary key (always generated) is
 * lower(email). */
static PGresult *exec(PGconn *conn, rpc_ctx *ctx, const char *what,
		      const char *sql, int n, const char *const *params,
		      rpc_code *code)
{
	static const pgcall_violations v = { .unique = "email: already registered" };

	return pgcall_exec(conn, ctx, "account store", what, sql, n, params, &v,
			   code);
}

static unsigned roles_from_text(const char *s)
{
	unsigned bits = 0;

	while (*s) {
		size_t n = strcspn(s, ",");

		for (int r = 1; r <= ROLE_MAX; r++)
			if (strlen(role_names[r]) == n &&
			    strncmp(s, role_names[r], n) == 0)
				bits |= 1u << r;
		s += n;
		if (*s == ',')
			s++;
	}
	return bits;
}

/* "{customer,admin}": an array literal, passed as a parameter. Only our
 * own names go in, so no element needs quoting. */
static void roles_to_literal(unsigned bits, char *out, size_t cap)
{
	size_t o = (size_t)snprintf(out, cap, "{");

	for (int r = 1; r <= ROLE_MAX; r++)
		if (bits & (1u << r))
			o += (size_t)snprintf(out + o, cap - o, "%s%s",
					      o > 1 ? "," : "", role_names[r]);
	snprintf(out + o, cap - o, "}");
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

/* Fills *out from row `i`, strings copied into the arena. Returns false on
 * no memory. */
static bool row_to_account(PGresult *r, int i, rpc_arena *a,
			   acct_account *out)
{
	Estore__Account__V1__Preferences *p;
	unsigned roles;
	size_t n = 0;

	out->id = rpc_arena_strdup(a, PQgetvalue(r, i, 0));
	out->email = rpc_arena_strdup(a, PQgetvalue(r, i, 1));
	out->display_name = rpc_arena_strdup(a, PQgetvalue(r, i, 2));
	roles = roles_from_text(PQgetvalue(r, i, 3));
	out->roles = rpc_arena_calloc(a, ROLE_MAX, sizeof(*out->roles));
	p = rpc_arena_alloc(a, sizeof(*p));
	if (!out->id || !out->email || !out->display_name || !out->roles ||
	    !p)
		return false;
	for (int k = 1; k <= ROLE_MAX; k++)
		if (roles & (1u << k))
			out->roles[n++] = (Estore__Account__V1__Role)k;
	out->n_roles = n;
	estore__account__v1__preferences__init(p);
	p->locale = rpc_arena_strdup(a, PQgetvalue(r, i, 4));
	p->currency = rpc_arena_strdup(a, PQgetvalue(r, i, 5));
	p->marketing_opt_in = PQgetvalue(r, i, 6)[0] == 't';
	out->preferences = p;
	out->create_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, i, 7)));
	out->update_time = timestamp_from_us(a, parse_i64(PQgetvalue(r, i, 8)));
	return p->locale && p->currency && out->create_time &&
	       out->update_time;
}

/* The one-row reads and writes: runs sql, maps its single row into *out
 * (and column N_ACCOUNT_COLS into *extra when asked), NOT_FOUND when no
 * row came back. */
static rpc_code one_account(pg_pool *pool, rpc_ctx *ctx, const char *what,
			    const char *sql, int n, const char *const *params,
			    acct_account *out, char **extra)
{
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	r = exec(conn, ctx, what, sql, n, params, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	if (PQntuples(r) == 0) {
		code = rpc_ctx_error(ctx, RPC_NOT_FOUND, "account not found");
	} else if (!row_to_account(r, 0, rpc_ctx_arena(ctx), out) ||
		   (extra && !(*extra = rpc_arena_strdup(
				       rpc_ctx_arena(ctx),
				       PQgetvalue(r, 0, N_ACCOUNT_COLS))))) {
		code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");
	} else {
		code = RPC_OK;
	}
	PQclear(r);
	return code;
}

/* Statements that return no rows; NOT_FOUND when nothing was affected. */
static rpc_code one_command(pg_pool *pool, rpc_ctx *ctx, const char *what,
			    const char *sql, int n, const char *const *params)
{
	rpc_code code;
	PGconn *conn = acquire(pool, ctx, &code);
	PGresult *r;

	if (!conn)
		return code;
	r = exec(conn, ctx, what, sql, n, params, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	code = strcmp(PQcmdTuples(r), "0") == 0
		       ? rpc_ctx_error(ctx, RPC_NOT_FOUND, "account not found")
		       : RPC_OK;
	PQclear(r);
	return code;
}

/* ---- statements ---------------------------------------------------------- */

rpc_code acct_store_create(pg_pool *pool, rpc_ctx *ctx, const acct_new *in,
			   acct_account *out)
{
	static const char sql[] =
		"INSERT INTO account.accounts (email, display_name, "
		"password_hash, roles, locale, currency, marketing_opt_in) "
		"VALUES ($1, $2, $3, $4::text[], $5, $6, $7::boolean) "
		"RETURNING " ACCOUNT_COLS;
	char roles[64];
	const char *p[7];

	roles_to_literal(in->roles, roles, sizeof(roles));
	p[0] = in->email;
	p[1] = in->display_name;
	p[2] = in->password_hash;
	p[3] = roles;
	p[4] = in->locale;
	p[5] = in->currency;
	p[6] = in->marketing_opt_in ? "true" : "false";
	return one_account(pool, ctx, "create", sql, 7, p, out, NULL);
}

rpc_code acct_store_get(pg_pool *pool, rpc_ctx *ctx, const char *id,
			acct_account *out)
{
	static const char sql[] =
		"SELECT " ACCOUNT_COLS " FROM account.accounts WHERE id = $1::uuid";
	const char *p[1] = { id };

	return one_account(pool, ctx, "get", sql, 1, p, out, NULL);
}

rpc_code acct_store_get_by_email(pg_pool *pool, rpc_ctx *ctx,
				 const char *email, acct_account *out,
				 char **hash)
{
	/* lower() on both sides matches the unique index, so this is an
	 * index lookup and agrees with what counts as a duplicate. */
	static const char sql[] =
		"SELECT " ACCOUNT_COLS ", password_hash FROM account.accounts "
		"WHERE lower(email) = lower($1)";
	const char *p[1] = { email };

	return one_account(pool, ctx, "get by email", sql, 1, p, out, hash);
}

rpc_code acct_store_update(pg_pool *pool, rpc_ctx *ctx, const char *id,
			   const acct_patch *pt, acct_account *out)
{
	/* One statement with a flag per column: the update is atomic without
	 * a read-modify-write transaction, and the SQL text is constant. */
	static const char sql[] =
		"UPDATE account.accounts SET "
		"email = CASE WHEN $2::boolean THEN $3 ELSE email END, "
		"display_name = CASE WHEN $4::boolean THEN $5 ELSE display_name END, "
		"roles = CASE WHEN $6::boolean THEN $7::text[] ELSE roles END, "
		"locale = CASE WHEN $8::boolean THEN $9 ELSE locale END, "
		"currency = CASE WHEN $10::boolean THEN $11 ELSE currency END, "
		"marketing_opt_in = CASE WHEN $12::boolean THEN $13::boolean "
		"ELSE marketing_opt_in END, "
		"update_time = now() "
		"WHERE id = $1::uuid RETURNING " ACCOUNT_COLS;
	char roles[64];
	const char *p[13];

#define FLAG(bit) ((pt->mask & (bit)) ? "true" : "false")
	roles_to_literal(pt->roles, roles, sizeof(roles));
	p[0] = id;
	p[1] = FLAG(ACCT_F_EMAIL);
	p[2] = pt->email ? pt->email : "";
	p[3] = FLAG(ACCT_F_DISPLAY_NAME);
	p[4] = pt->display_name ? pt->display_name : "";
	p[5] = FLAG(ACCT_F_ROLES);
	p[6] = roles;
	p[7] = FLAG(ACCT_F_LOCALE);
	p[8] = pt->locale ? pt->locale : "";
	p[9] = FLAG(ACCT_F_CURRENCY);
	p[10] = pt->currency ? pt->currency : "";
	p[11] = FLAG(ACCT_F_MARKETING);
	p[12] = pt->marketing_opt_in ? "true" : "false";
#undef FLAG
	return one_account(pool, ctx, "update", sql, 13, p, out, NULL);
}

rpc_code acct_store_delete(pg_pool *pool, rpc_ctx *ctx, const char *id)
{
	static const char sql[] =
		"DELETE FROM account.accounts WHERE id = $1::uuid";
	const char *p[1] = { id };

	return one_command(pool, ctx, "delete", sql, 1, p);
}

rpc_code acct_store_set_password_hash(pg_pool *pool, rpc_ctx *ctx,
				      const char *id, const char *hash)
{
	static const char sql[] =
		"UPDATE account.accounts SET password_hash = $2, "
		"update_time = now() WHERE id = $1::uuid";
	const char *p[2] = { id, hash };

	return one_command(pool, ctx, "set password hash", sql, 2, p);
}

/* Microseconds since the epoch as a timestamptz literal PostgreSQL parses
 * exactly (a float conversion could move the cursor by a microsecond and
 * repeat or skip a row). */
static void us_to_timestamptz(int64_t us, char *out, size_t cap)
{
	time_t sec = (time_t)(us / 1000000);
	long rem = (long)(us % 1000000);
	struct tm tm;

	if (rem < 0) {
		sec--;
		rem += 1000000;
	}
	gmtime_r(&sec, &tm);
	snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, rem);
}

rpc_code acct_store_list(pg_pool *pool, rpc_ctx *ctx, int role,
			 const acct_list_pos *after, int limit,
			 acct_account ***accounts, size_t *n)
{
	/* Keyset paging over (create_time, id), both in the index: every
	 * page costs the same however deep, and rows inserted or deleted
	 * meanwhile neither repeat nor shift the ones not yet seen. */
	static const char sql[] =
		"SELECT " ACCOUNT_COLS " FROM account.accounts "
		"WHERE ($1::text IS NULL OR roles @> ARRAY[$1::text]) "
		"AND ($2::timestamptz IS NULL OR "
		"(create_time, id) < ($2::timestamptz, $3::uuid)) "
		"ORDER BY create_time DESC, id DESC LIMIT $4::int";
	rpc_arena *a = rpc_ctx_arena(ctx);
	char ts[48], lim[16];
	const char *p[4];
	rpc_code code;
	PGconn *conn;
	PGresult *r;
	int rows;

	*n = 0;
	*accounts = NULL;
	p[0] = role >= 1 && role <= ROLE_MAX ? role_names[role] : NULL;
	if (after && after->set) {
		us_to_timestamptz(after->create_us, ts, sizeof(ts));
		p[1] = ts;
		p[2] = after->id;
	} else {
		p[1] = NULL;
		p[2] = NULL;
	}
	snprintf(lim, sizeof(lim), "%d", limit);
	p[3] = lim;
	conn = acquire(pool, ctx, &code);
	if (!conn)
		return code;
	r = exec(conn, ctx, "list", sql, 4, p, &code);
	pg_release(pool, conn);
	if (!r)
		return code;
	rows = PQntuples(r);
	code = RPC_OK;
	if (rows > 0) {
		*accounts = rpc_arena_calloc(a, (size_t)rows, sizeof(**accounts));
		if (!*accounts)
			code = RPC_RESOURCE_EXHAUSTED;
	}
	for (int i = 0; code == RPC_OK && i < rows; i++) {
		acct_account *acc = rpc_arena_alloc(a, sizeof(*acc));

		if (!acc) {
			code = RPC_RESOURCE_EXHAUSTED;
			break;
		}
		estore__account__v1__account__init(acc);
		if (!row_to_account(r, i, a, acc)) {
			code = RPC_RESOURCE_EXHAUSTED;
			break;
		}
		(*accounts)[i] = acc;
		*n = (size_t)i + 1;
	}
	PQclear(r);
	if (code != RPC_OK)
		return rpc_ctx_error(ctx, code, "out of memory");
	return RPC_OK;
}
