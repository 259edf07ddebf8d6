/*
 * store_pg.h - every SQL statement of the account service, over the shared
 * PostgreSQL pool (services/common/pg.h), schema `account`.
 *
 * Functions run on handler threads and block. They map rows straight into
 * protobuf-c messages allocated from the call's arena, and report failures
 * through rpc_ctx_error so the message reaches the caller:
 *   UNAVAILABLE        database unreachable (or the pool could not connect)
 *   RESOURCE_EXHAUSTED every pooled connection busy past the call's deadline
 *   ALREADY_EXISTS     the email is taken (case-insensitively)
 *   NOT_FOUND          no account with that id / email
 *   INTERNAL           anything else (logged, not detailed to the caller)
 * Inputs are assumed validated by service.c; every value travels as a
 * statement parameter, never inside SQL text.
 */
#ifndef ESTORE_ACCOUNT_STORE_PG_H
#define ESTORE_ACCOUNT_STORE_PG_H

#include <stdbool.h>
#include <stdint.h>

#include "estore/account/v1/account.pb-c.h"
#include "rpc/server.h"
#include "services/common/pg.h"

typedef Estore__Account__V1__Account acct_account;

/* The columns an update may change (bits of acct_patch.mask). */
enum {
	ACCT_F_EMAIL = 1u << 0,
	ACCT_F_DISPLAY_NAME = 1u << 1,
	ACCT_F_ROLES = 1u << 2,
	ACCT_F_LOCALE = 1u << 3,
	ACCT_F_CURRENCY = 1u << 4,
	ACCT_F_MARKETING = 1u << 5,
};

/* New values for the columns in `mask`; the others are ignored. roles is
 * a bit set of (1 << ESTORE__ACCOUNT__V1__ROLE__*). */
typedef struct acct_patch {
	unsigned mask;
	const char *email;
	const char *display_name;
	unsigned roles;
	const char *locale;
	const char *currency;
	bool marketing_opt_in;
} acct_patch;

/* A new account; every field set (roles non-empty, strings may be ""). */
typedef struct acct_new {
	const char *email;
	const char *display_name;
	const char *password_hash;
	unsigned roles;
	const char *locale;
	const char *currency;
	bool marketing_opt_in;
} acct_new;

/* Inserts; fills *out (id and times from the database). */
rpc_code acct_store_create(pg_pool *pool, rpc_ctx *ctx, const acct_new *in,
			   acct_account *out);

/* By id (a validated UUID). */
rpc_code acct_store_get(pg_pool *pool, rpc_ctx *ctx, const char *id,
			acct_account *out);

/* By email, compared case-insensitively; also returns the password hash
 * (arena string) in *hash. */
rpc_code acct_store_get_by_email(pg_pool *pool, rpc_ctx *ctx,
				 const char *email, acct_account *out,
				 char **hash);

/* Applies the patch atomically (one UPDATE ... RETURNING) and fills *out
 * with the result; update_time becomes now. */
rpc_code acct_store_update(pg_pool *pool, rpc_ctx *ctx, const char *id,
			   const acct_patch *p, acct_account *out);

rpc_code acct_store_delete(pg_pool *pool, rpc_ctx *ctx, const char *id);

rpc_code acct_store_set_password_hash(pg_pool *pool, rpc_ctx *ctx,
				      const char *id, const char *hash);

/* Keyset cursor for listing, newest first: rows strictly after
 * (create_us, id) in (create_time DESC, id DESC) order. */
typedef struct acct_list_pos {
	bool set;
	int64_t create_us;
	const char *id;
} acct_list_pos;

/* Up to `limit` accounts after `after` (when set), optionally only those
 * holding `role` (0 = any). Fills accounts[0..*n) (arena array of arena
 * messages); each create_time is exact to the microsecond, so it can seed
 * the next cursor. */
rpc_code acct_store_list(pg_pool *pool, rpc_ctx *ctx, int role,
			 const acct_list_pos *after, int limit,
			 acct_account ***accounts, size_t *n);

#endif
