/*
 * service.c - AccountService handlers (rules in service.h).
 */
#include "service.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "estore/account/v1/account.rpc.h"
#include "store_pg.h"
#include "validate.h"

typedef Estore__Account__V1__Account account;
typedef Estore__Account__V1__Preferences preferences;

#define ROLE_MAX ESTORE__ACCOUNT__V1__ROLE__ROLE_ADMIN
#define PAGE_SIZE_DEFAULT 20
#define PAGE_SIZE_MAX 100

/* ---- helpers ------------------------------------------------------------ */

static acct_service *svc_of(rpc_ctx *ctx)
{
	return rpc_ctx_user(ctx);
}

static rpc_code need_ready(rpc_ctx *ctx)
{
	if (!atomic_load(&svc_of(ctx)->ready))
		return rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "account store unavailable: database not "
				     "reachable or not migrated yet");
	return RPC_OK;
}

static bool is_admin(const rpc_identity *who)
{
	return who && !who->is_service && (who->roles & RPC_ROLE_ADMIN);
}

static bool is_self(const rpc_identity *who, const char *id)
{
	return who && !who->is_service && strcasecmp(who->subject, id) == 0;
}

/* The identity every ACCESS_ACCOUNT method has (the server refused the call
 * otherwise); checked anyway so a change of access rule fails closed. */
static rpc_code need_identity(rpc_ctx *ctx, const rpc_identity **who)
{
	*who = rpc_ctx_identity(ctx);
	if (!*who)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "this call needs an access token");
	return RPC_OK;
}

/* "me" → the caller's own account id; otherwise a UUID, lower-cased into
 * the arena so comparisons and logs see one spelling. */
static rpc_code resolve_id(rpc_ctx *ctx, const char *field, const char *in,
			   const rpc_identity *who, const char **out)
{
	if (strcmp(in, "me") == 0) {
		if (!who || who->is_service || !acct_is_uuid(who->subject))
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "%s: \"me\" needs an account's "
					     "access token", field);
		in = who->subject;
	} else if (!acct_is_uuid(in)) {
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: must be a UUID or \"me\"", field);
	}
	char *id = rpc_arena_strdup(rpc_ctx_arena(ctx), in);

	if (!id)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");
	for (char *p = id; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	*out = id;
	return RPC_OK;
}

/* Roles as a bit set (1 << value); duplicates fold. Every value must be a
 * real role, and at least one is required (an account without any role
 * could not do anything, which is what deletion is for). */
static rpc_code check_roles(rpc_ctx *ctx, const Estore__Account__V1__Role *r,
			    size_t n, unsigned *bits)
{
	*bits = 0;
	if (n == 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "roles: must hold at least one role");
	for (size_t i = 0; i < n; i++) {
		int v = (int)r[i];

		if (v <= 0 || v > ROLE_MAX)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "roles: unknown role %d", v);
		*bits |= 1u << v;
	}
	return RPC_OK;
}

static rpc_code field_error(rpc_ctx *ctx, const char *field, const char *why)
{
	return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s: %s", field, why);
}

#define CHECK(ctx, field, fn, value)                                    \
	do {                                                            \
		const char *why_ = fn(value);                           \
		if (why_)                                               \
			return field_error(ctx, field, why_);           \
	} while (0)

static rpc_code check_preferences(rpc_ctx *ctx, const preferences *p)
{
	if (!p)
		return RPC_OK;
	CHECK(ctx, "preferences.locale", acct_check_locale, p->locale);
	CHECK(ctx, "preferences.currency", acct_check_currency, p->currency);
	return RPC_OK;
}

/* ---- CreateAccount ------------------------------------------------------ */

static rpc_code create_account(rpc_ctx *ctx,
			       const Estore__Account__V1__CreateAccountRequest *in,
			       account *out)
{
	acct_new n = { 0 };
	rpc_code code;

	CHECK(ctx, "email", acct_check_email, in->email);
	CHECK(ctx, "display_name", acct_check_display_name, in->display_name);
	CHECK(ctx, "password_hash", acct_check_password_hash,
	      in->password_hash);
	if (in->n_roles == 0) {
		n.roles = 1u << ESTORE__ACCOUNT__V1__ROLE__ROLE_CUSTOMER;
	} else {
		code = check_roles(ctx, in->roles, in->n_roles, &n.roles);
		if (code != RPC_OK)
			return code;
	}
	code = check_preferences(ctx, in->preferences);
	if (code != RPC_OK)
		return code;
	code = need_ready(ctx);
	if (code != RPC_OK)
		return code;
	n.email = in->email;
	n.display_name = in->display_name;
	n.password_hash = in->password_hash;
	n.locale = in->preferences ? in->preferences->locale : "";
	n.currency = in->preferences ? in->preferences->currency : "";
	n.marketing_opt_in = in->preferences && in->preferences->marketing_opt_in;
	return acct_store_create(svc_of(ctx)->pool, ctx, &n, out);
}

/* ---- GetAccount --------------------------------------------------------- */

static rpc_code get_account(rpc_ctx *ctx,
			    const Estore__Account__V1__GetAccountRequest *in,
			    account *out)
{
	const rpc_identity *who;
	const char *id;
	rpc_code code;

	if ((code = need_identity(ctx, &who)) != RPC_OK ||
	    (code = resolve_id(ctx, "id", in->id, who, &id)) != RPC_OK)
		return code;
	/* Services read any account (e.g. auth looking up roles on refresh). */
	if (!who->is_service && !is_admin(who) && !is_self(who, id))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "you may only read your own account");
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return acct_store_get(svc_of(ctx)->pool, ctx, id, out);
}

/* ---- UpdateAccount ------------------------------------------------------ */

static const struct {
	const char *path;
	unsigned fields;
} mask_paths[] = {
	{ "email", ACCT_F_EMAIL },
	{ "display_name", ACCT_F_DISPLAY_NAME },
	{ "roles", ACCT_F_ROLES },
	{ "preferences", ACCT_F_LOCALE | ACCT_F_CURRENCY | ACCT_F_MARKETING },
	{ "preferences.locale", ACCT_F_LOCALE },
	{ "preferences.currency", ACCT_F_CURRENCY },
	{ "preferences.marketing_opt_in", ACCT_F_MARKETING },
};

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

static rpc_code parse_mask(rpc_ctx *ctx, const Google__Protobuf__FieldMask *m,
			   const account *a, unsigned *fields)
{
	*fields = 0;
	if (!m || m->n_paths == 0) {
		/* AIP-134: no mask means "the fields that are set". A
		 * default value (empty, false) cannot be told from unset, so
		 * clearing a field takes an explicit mask. */
		const preferences *p = a->preferences;

		if (a->email[0])
			*fields |= ACCT_F_EMAIL;
		if (a->display_name[0])
			*fields |= ACCT_F_DISPLAY_NAME;
		if (a->n_roles)
			*fields |= ACCT_F_ROLES;
		if (p && p->locale[0])
			*fields |= ACCT_F_LOCALE;
		if (p && p->currency[0])
			*fields |= ACCT_F_CURRENCY;
		if (p && p->marketing_opt_in)
			*fields |= ACCT_F_MARKETING;
		if (*fields == 0)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "update_mask: names no field and "
					     "the account sets none");
		return RPC_OK;
	}
	for (size_t i = 0; i < m->n_paths; i++) {
		const char *path = m->paths[i];
		size_t k;

		for (k = 0; k < sizeof(mask_paths) / sizeof(mask_paths[0]); k++)
			if (strcmp(path, mask_paths[k].path) == 0)
				break;
		if (k == sizeof(mask_paths) / sizeof(mask_paths[0])) {
			if (printable_path(path))
				return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
						     "update_mask: unknown path '%s'",
						     path);
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "update_mask: unknown path");
		}
		*fields |= mask_paths[k].fields;
	}
	return RPC_OK;
}

static rpc_code update_account(rpc_ctx *ctx,
			       const Estore__Account__V1__UpdateAccountRequest *in,
			       account *out)
{
	const account *a = in->account;
	const preferences *p;
	const rpc_identity *who;
	acct_patch pt = { 0 };
	const char *id;
	rpc_code code;

	if ((code = need_identity(ctx, &who)) != RPC_OK)
		return code;
	if (!a)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "account: is required");
	if ((code = resolve_id(ctx, "account.id", a->id, who, &id)) != RPC_OK)
		return code;
	if (who->is_service)
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "services may not update accounts");
	if (!is_admin(who) && !is_self(who, id))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "you may only update your own account");
	if ((code = parse_mask(ctx, in->update_mask, a, &pt.mask)) != RPC_OK)
		return code;
	if ((pt.mask & ACCT_F_ROLES) && !is_admin(who))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "roles: only admins can grant roles");

	/* Only what the mask names is validated and written: a client that
	 * sends back a whole account it read need not clean it up. */
	p = a->preferences;
	if (pt.mask & ACCT_F_EMAIL) {
		CHECK(ctx, "account.email", acct_check_email, a->email);
		pt.email = a->email;
	}
	if (pt.mask & ACCT_F_DISPLAY_NAME) {
		CHECK(ctx, "account.display_name", acct_check_display_name,
		      a->display_name);
		pt.display_name = a->display_name;
	}
	if (pt.mask & ACCT_F_ROLES) {
		code = check_roles(ctx, a->roles, a->n_roles, &pt.roles);
		if (code != RPC_OK)
			return code;
	}
	/* A masked preference with no preferences message means its
	 * default (""/false): that is how a client clears one. */
	pt.locale = p ? p->locale : "";
	pt.currency = p ? p->currency : "";
	pt.marketing_opt_in = p && p->marketing_opt_in;
	if (pt.mask & ACCT_F_LOCALE)
		CHECK(ctx, "account.preferences.locale", acct_check_locale,
		      pt.locale);
	if (pt.mask & ACCT_F_CURRENCY)
		CHECK(ctx, "account.preferences.currency", acct_check_currency,
		      pt.currency);
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return acct_store_update(svc_of(ctx)->pool, ctx, id, &pt, out);
}

/* ---- DeleteAccount ------------------------------------------------------ */

static rpc_code delete_account(rpc_ctx *ctx,
			       const Estore__Account__V1__DeleteAccountRequest *in,
			       Google__Protobuf__Empty *out)
{
	const rpc_identity *who;
	const char *id;
	rpc_code code;

	(void)out;
	if ((code = need_identity(ctx, &who)) != RPC_OK ||
	    (code = resolve_id(ctx, "id", in->id, who, &id)) != RPC_OK)
		return code;
	if (who->is_service)
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "services may not delete accounts");
	if (!is_admin(who) && !is_self(who, id))
		return rpc_ctx_error(ctx, RPC_PERMISSION_DENIED,
				     "you may only delete your own account");
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return acct_store_delete(svc_of(ctx)->pool, ctx, id);
}

/* ---- ListAccounts ------------------------------------------------------- */

static int64_t timestamp_us(const Google__Protobuf__Timestamp *t)
{
	return t->seconds * 1000000 + t->nanos / 1000;
}

static rpc_code list_accounts(rpc_ctx *ctx,
			      const Estore__Account__V1__ListAccountsRequest *in,
			      Estore__Account__V1__ListAccountsResponse *out)
{
	int size = in->page_size == 0 ? PAGE_SIZE_DEFAULT : in->page_size;
	int role = (int)in->role;
	acct_list_pos after = { 0 };
	acct_cursor cur;
	account **rows;
	size_t n;
	rpc_code code;

	if (size < 1 || size > PAGE_SIZE_MAX)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "page_size: must be between 1 and 100 "
				     "(0 means 20)");
	if (role < 0 || role > ROLE_MAX)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "role: unknown role %d", role);
	if (in->page_token[0]) {
		const char *why = acct_cursor_decode(in->page_token, &cur);

		if (why)
			return field_error(ctx, "page_token", why);
		/* AIP-158: a token continues the listing it came from. */
		if (cur.role != role)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "page_token: was issued for a "
					     "different role filter");
		after.set = true;
		after.create_us = cur.create_us;
		after.id = cur.id;
	}
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	/* One row more than asked tells whether another page exists, so the
	 * last page never hands out a token that leads to an empty one. */
	code = acct_store_list(svc_of(ctx)->pool, ctx, role, &after, size + 1,
			       &rows, &n);
	if (code != RPC_OK)
		return code;
	if (n > (size_t)size) {
		const account *last = rows[size - 1];
		char *tok = rpc_arena_alloc(rpc_ctx_arena(ctx),
					    ACCT_CURSOR_TOKEN_MAX);

		if (!tok)
			return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
					     "out of memory");
		cur.create_us = timestamp_us(last->create_time);
		snprintf(cur.id, sizeof(cur.id), "%s", last->id);
		cur.role = role;
		acct_cursor_encode(&cur, tok);
		out->next_page_token = tok;
		n = (size_t)size;
	}
	out->accounts = rows;
	out->n_accounts = n;
	return RPC_OK;
}

/* ---- internal RPCs ------------------------------------------------------ */

static rpc_code get_account_by_email(
	rpc_ctx *ctx, const Estore__Account__V1__GetAccountByEmailRequest *in,
	Estore__Account__V1__AccountCredentials *out)
{
	account *a;
	char *hash = NULL;
	rpc_code code;

	CHECK(ctx, "email", acct_check_email, in->email);
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	a = rpc_arena_alloc(rpc_ctx_arena(ctx), sizeof(*a));
	if (!a)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory");
	estore__account__v1__account__init(a);
	code = acct_store_get_by_email(svc_of(ctx)->pool, ctx, in->email, a,
				       &hash);
	if (code != RPC_OK)
		return code;
	out->account = a;
	out->password_hash = hash;
	return RPC_OK;
}

static rpc_code set_password_hash(
	rpc_ctx *ctx, const Estore__Account__V1__SetPasswordHashRequest *in,
	Google__Protobuf__Empty *out)
{
	rpc_code code;

	(void)out;
	if (!acct_is_uuid(in->id))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "id: must be a UUID");
	CHECK(ctx, "password_hash", acct_check_password_hash,
	      in->password_hash);
	if ((code = need_ready(ctx)) != RPC_OK)
		return code;
	return acct_store_set_password_hash(svc_of(ctx)->pool, ctx, in->id,
					    in->password_hash);
}

/* ---- registration ------------------------------------------------------- */

int acct_service_register(rpc_server *srv, acct_service *svc)
{
	static const estore_account_v1_AccountService_impl impl = {
		.create_account = create_account,
		.get_account = get_account,
		.update_account = update_account,
		.delete_account = delete_account,
		.list_accounts = list_accounts,
		.get_account_by_email = get_account_by_email,
		.set_password_hash = set_password_hash,
	};

	return estore_account_v1_AccountService_register(srv, &impl, svc);
}
