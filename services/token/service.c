/*
 * service.c - TokenService handlers (behaviour in service.h).
 */
#include "services/token/service.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "rpc/log.h"
#include "services/token/b64url.h"
#include "services/token/jwt.h"

typedef Estore__Token__V1__TokenPair token_pair;
typedef Estore__Token__V1__Jwk jwk;

/* Refresh tokens: 256 random bits, 43 base64url characters. */
#define REFRESH_BYTES 32
#define REFRESH_CHARS B64URL_ENCODED_LEN(REFRESH_BYTES)
/* Longest refresh_token accepted as input at all: anything longer is not
 * a token of ours but a payload, and is refused before it is hashed. */
#define REFRESH_INPUT_MAX 512
#define ROLES_MAX 8
#define SERVICE_NAME_MAX 64
#define SECRET_MAX 1024

/* One service allowed to obtain service tokens; the secret's digest is
 * what gets compared, so the comparison has a fixed length. */
struct service_secret {
	const char *name;
	uint8_t digest[32];
};

struct token_service {
	char *issuer;
	char *audience;
	long long access_ttl_s;
	long long refresh_ttl_s;
	long long service_ttl_s;
	struct service_secret services[1];
	size_t n_services;
	const keyset *keys;
	tstore *store;
	atok_policy policy;
	/* GetJwks answers from here: built once, read-only afterwards. */
	jwk *jwk_items;
	jwk **jwk_ptrs;
	size_t n_jwk;
};

static const char *const known_roles[] = { "customer", "vendor", "admin" };

static long long now_s(void)
{
	return (long long)time(NULL);
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

static bool sha256(const void *data, size_t len, uint8_t out[32])
{
	return EVP_Digest(data, len, out, NULL, EVP_sha256(), NULL) == 1;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ---- lifecycle ------------------------------------------------------ */

token_service *token_service_new(const token_settings *set, const keyset *keys,
				 tstore *store)
{
	token_service *svc = calloc(1, sizeof(*svc));
	size_t n;

	if (!svc)
		return NULL;
	svc->issuer = strdup(set->issuer);
	svc->audience = strdup(set->audience);
	if (!svc->issuer || !svc->audience)
		goto fail;
	svc->access_ttl_s = set->access_ttl_s;
	svc->refresh_ttl_s = set->refresh_ttl_s;
	svc->service_ttl_s = set->service_ttl_s;
	svc->keys = keys;
	svc->store = store;
	svc->services[0].name = "auth";
	if (!sha256(set->auth_secret, strlen(set->auth_secret),
		    svc->services[0].digest))
		goto fail;
	svc->n_services = 1;
	svc->policy = (atok_policy){ .keys = keys, .issuer = svc->issuer,
				     .audience = svc->audience,
				     .skew_s = TOKEN_SKEW_S };

	n = keyset_count(keys);
	svc->jwk_items = calloc(n, sizeof(*svc->jwk_items));
	svc->jwk_ptrs = calloc(n, sizeof(*svc->jwk_ptrs));
	if (!svc->jwk_items || !svc->jwk_ptrs)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		const token_key *k = keyset_get(keys, i);
		jwk *j = &svc->jwk_items[i];

		estore__token__v1__jwk__init(j);
		/* Read-only for the life of the service: the reply encoder
		 * only reads these. */
		j->kty = (char *)"EC";
		j->crv = (char *)"P-256";
		j->x = (char *)k->x;
		j->y = (char *)k->y;
		j->kid = (char *)k->kid;
		j->alg = (char *)"ES256";
		j->use = (char *)"sig";
		svc->jwk_ptrs[i] = j;
	}
	svc->n_jwk = n;
	return svc;
fail:
	token_service_free(svc);
	return NULL;
}

void token_service_free(token_service *svc)
{
	if (!svc)
		return;
	OPENSSL_cleanse(svc->services, sizeof(svc->services));
	free(svc->issuer);
	free(svc->audience);
	free(svc->jwk_items);
	free(svc->jwk_ptrs);
	free(svc);
}

/* ---- input validation ------------------------------------------------ */

/* 8-4-4-4-12 hex digits; copied lower-cased into out (37 bytes), so one
 * account never ends up under two spellings of its id. */
static bool uuid_normalize(const char *s, char out[37])
{
	size_t i;

	for (i = 0; i < 36; i++) {
		char c = s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
			out[i] = c;
			continue;
		}
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		out[i] = c;
	}
	out[36] = '\0';
	return s[36] == '\0';
}

/* Our session ids: 32 lowercase hex characters (atok_random_hex16). */
static bool session_id_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 32;
}

/* Checks the requested roles and maps them to our static names (so a
 * token never carries request memory). Returns RPC_OK or an error set on
 * ctx. */
static rpc_code check_roles(rpc_ctx *ctx, char *const *roles, size_t n,
			    const char **out, size_t *n_out)
{
	if (n > ROLES_MAX)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "roles: at most %d entries", ROLES_MAX);
	*n_out = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = NULL;
		bool dup = false;

		for (size_t k = 0; k < sizeof(known_roles) / sizeof(known_roles[0]); k++)
			if (roles[i] && strcmp(roles[i], known_roles[k]) == 0)
				name = known_roles[k];
		if (!name)
			return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "roles[%zu]: unknown role (customer, "
					     "vendor or admin)", i);
		for (size_t k = 0; k < *n_out; k++)
			dup |= out[k] == name;
		if (!dup)
			out[(*n_out)++] = name;
	}
	return RPC_OK;
}

/* "customer,admin": how roles are stored with a refresh token. */
static void roles_join(const char *const *roles, size_t n,
		       char out[TSTORE_ROLES_MAX])
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(out + o, TSTORE_ROLES_MAX - o, "%s%s",
				      i ? "," : "", roles[i]);
}

/* The stored list back to our static names; names we do not know (a
 * role retired since) are dropped rather than signed into a token. */
static size_t roles_split(const char *csv, const char **out)
{
	size_t n = 0;

	while (*csv && n < ROLES_MAX) {
		size_t len = strcspn(csv, ",");

		for (size_t k = 0; k < sizeof(known_roles) / sizeof(known_roles[0]); k++)
			if (strlen(known_roles[k]) == len &&
			    memcmp(known_roles[k], csv, len) == 0)
				out[n++] = known_roles[k];
		csv += len;
		if (*csv == ',')
			csv++;
	}
	return n;
}

/* The refresh-token text is checked for shape before any work: a string
 * that cannot be one of ours is simply not a valid token. */
static rpc_code refresh_input(rpc_ctx *ctx, const char *field, const char *tok,
			      bool *well_formed)
{
	size_t len = strlen(tok);
	uint8_t raw[REFRESH_BYTES];
	size_t n;

	if (len == 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "%s: required",
				     field);
	if (len > REFRESH_INPUT_MAX)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "%s: longer than %d bytes", field,
				     REFRESH_INPUT_MAX);
	*well_formed = len == REFRESH_CHARS &&
		       b64url_decode(tok, len, raw, sizeof(raw), &n) &&
		       n == REFRESH_BYTES;
	return RPC_OK;
}

/* The store key of a refresh token: SHA-256 hex. The token itself is
 * never stored or logged. */
static bool refresh_hash(const char *tok, char out[TSTORE_HASH_LEN])
{
	uint8_t d[32];

	if (!sha256(tok, strlen(tok), d))
		return false;
	hex_encode(d, sizeof(d), out);
	return true;
}

/* A new refresh token (text into the arena) and its hash. */
static char *new_refresh(rpc_arena *arena, char hash[TSTORE_HASH_LEN])
{
	uint8_t raw[REFRESH_BYTES];
	char *text = rpc_arena_alloc(arena, REFRESH_CHARS + 1);

	if (!text || RAND_bytes(raw, sizeof(raw)) != 1)
		return NULL;
	b64url_encode(raw, sizeof(raw), text);
	OPENSSL_cleanse(raw, sizeof(raw));
	if (!refresh_hash(text, hash))
		return NULL;
	return text;
}

static rpc_code store_failed(rpc_ctx *ctx, rpc_code code)
{
	/* Whatever went wrong with Redis, the answer is "try again": a
	 * token whose revocation state is unknown is never valid, and a
	 * refresh that may not have rotated must not be reported as one. */
	(void)code;
	return rpc_ctx_error(ctx, RPC_UNAVAILABLE, "token store unavailable");
}

/* Signs an access token into the arena. */
static char *sign_into(rpc_ctx *ctx, token_service *svc, const char *sub,
		       const char *const *roles, size_t n_roles,
		       const char *sid, long long ttl_s, char jti[33])
{
	atok_spec spec = {
		.issuer = svc->issuer, .audience = svc->audience, .sub = sub,
		.roles = roles, .n_roles = n_roles, .sid = sid,
		.iat = now_s(), .ttl_s = ttl_s,
	};
	char *tok = atok_sign(keyset_signing(svc->keys), &spec, jti);
	char *copy;

	if (!tok)
		return NULL;
	copy = rpc_arena_strdup(rpc_ctx_arena(ctx), tok);
	free(tok);
	return copy;
}

/*
 * Everything ValidateToken checks: the token itself (jwt.h), then its
 * revocation state. Returns RPC_OK with *c filled, UNAUTHENTICATED with
 * the reason, or UNAVAILABLE.
 */
static rpc_code check_access(rpc_ctx *ctx, token_service *svc,
			     const char *tok, size_t len, atok_claims *c)
{
	const char *why = atok_verify(&svc->policy, tok, len, now_s(), c, NULL);
	tstore_verdict v;
	rpc_code code;

	if (why)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "%s", why);
	code = tstore_check_access(svc->store, c->jti,
				   c->is_service ? NULL : c->sub,
				   c->is_service ? NULL : c->sid, c->iat, &v);
	if (code != RPC_OK)
		return store_failed(ctx, code);
	switch (v) {
	case TSTORE_VALID:
		return RPC_OK;
	case TSTORE_DENIED:
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "token revoked");
	case TSTORE_SESSION_REVOKED:
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "session revoked");
	case TSTORE_ACCOUNT_REVOKED:
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "token revoked for this account");
	}
	return rpc_ctx_error(ctx, RPC_INTERNAL, "unexpected revocation state");
}

/* ---- handlers -------------------------------------------------------- */

static void fill_pair(rpc_ctx *ctx, token_service *svc, token_pair *out,
		      char *access, char *refresh, const char *account_id)
{
	out->access_token = access;
	out->refresh_token = refresh;
	out->token_type = (char *)"Bearer";
	out->expires_in = svc->access_ttl_s;
	out->account_id = rpc_arena_strdup(rpc_ctx_arena(ctx), account_id);
}

static rpc_code issue_token_pair(rpc_ctx *ctx,
				 const Estore__Token__V1__IssueTokenPairRequest *in,
				 token_pair *out)
{
	token_service *svc = rpc_ctx_user(ctx);
	const char *roles[ROLES_MAX];
	size_t n_roles;
	char account[37], family[33], jti[33], hash[TSTORE_HASH_LEN];
	char csv[TSTORE_ROLES_MAX];
	char *access, *refresh;
	rpc_code code;

	if (!*str_or_empty(in->account_id))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "account_id: required");
	if (!uuid_normalize(in->account_id, account))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "account_id: not a UUID");
	code = check_roles(ctx, in->roles, in->n_roles, roles, &n_roles);
	if (code != RPC_OK)
		return code;
	if (!atok_random_hex16(family))
		return rpc_ctx_error(ctx, RPC_INTERNAL, "random source failed");
	refresh = new_refresh(rpc_ctx_arena(ctx), hash);
	access = sign_into(ctx, svc, account, roles, n_roles, family,
			   svc->access_ttl_s, jti);
	if (!refresh || !access)
		return rpc_ctx_error(ctx, RPC_INTERNAL, "cannot issue tokens");
	roles_join(roles, n_roles, csv);
	code = tstore_create_family(svc->store, account, family, hash, csv);
	if (code != RPC_OK)
		return store_failed(ctx, code);
	fill_pair(ctx, svc, out, access, refresh, account);
	rpc_log(RPC_LOG_DEBUG, "token", "session %s opened for account %s",
		family, account);
	return RPC_OK;
}

static rpc_code refresh_token_pair(rpc_ctx *ctx,
				   const Estore__Token__V1__RefreshTokenPairRequest *in,
				   token_pair *out)
{
	token_service *svc = rpc_ctx_user(ctx);
	const char *tok = str_or_empty(in->refresh_token);
	const char *roles[ROLES_MAX];
	size_t n_roles;
	char old_hash[TSTORE_HASH_LEN], new_hash[TSTORE_HASH_LEN], jti[33];
	char account[TSTORE_ID_MAX], family[TSTORE_ID_MAX];
	char csv_in[TSTORE_ROLES_MAX], csv_out[TSTORE_ROLES_MAX];
	char *access, *refresh;
	tstore_rotation res;
	bool well_formed = false;
	rpc_code code;

	code = refresh_input(ctx, "refresh_token", tok, &well_formed);
	if (code != RPC_OK)
		return code;
	code = check_roles(ctx, in->roles, in->n_roles, roles, &n_roles);
	if (code != RPC_OK)
		return code;
	if (!well_formed)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "invalid refresh token");
	refresh = new_refresh(rpc_ctx_arena(ctx), new_hash);
	if (!refresh || !refresh_hash(tok, old_hash))
		return rpc_ctx_error(ctx, RPC_INTERNAL, "cannot issue tokens");
	/* No roles in the request: keep the session's (see service.h). */
	roles_join(roles, n_roles, csv_in);
	code = tstore_rotate(svc->store, old_hash, new_hash, csv_in, &res,
			     account, family, csv_out);
	if (code != RPC_OK)
		return store_failed(ctx, code);
	switch (res) {
	case TSTORE_ROTATED:
		break;
	case TSTORE_UNKNOWN:
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "invalid refresh token");
	case TSTORE_REVOKED:
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "refresh token revoked");
	case TSTORE_REUSED:
		/* Either the client raced itself or someone else holds a copy
		 * of the token: both end the session (RFC 9700 §4.14.2). */
		rpc_log(RPC_LOG_WARN, "token", "refresh token reuse: session "
			"%s of account %s revoked", family, account);
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "refresh token reuse detected; session "
				     "revoked");
	}
	n_roles = roles_split(csv_out, roles);
	access = sign_into(ctx, svc, account, roles, n_roles, family,
			   svc->access_ttl_s, jti);
	if (!access)
		return rpc_ctx_error(ctx, RPC_INTERNAL, "cannot issue tokens");
	fill_pair(ctx, svc, out, access, refresh, account);
	return RPC_OK;
}

static rpc_code validate_token(rpc_ctx *ctx,
			       const Estore__Token__V1__ValidateTokenRequest *in,
			       Estore__Token__V1__TokenClaims *out)
{
	token_service *svc = rpc_ctx_user(ctx);
	const char *tok = str_or_empty(in->access_token);
	size_t len = strlen(tok);
	rpc_arena *arena = rpc_ctx_arena(ctx);
	atok_claims c;
	rpc_code code;

	if (len == 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "access_token: required");
	if (len > ATOK_MAX_LEN)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "access_token: longer than %d bytes",
				     ATOK_MAX_LEN);
	code = check_access(ctx, svc, tok, len, &c);
	if (code != RPC_OK)
		return code;
	out->subject = rpc_arena_strdup(arena, c.sub);
	out->token_id = rpc_arena_strdup(arena, c.jti);
	out->session_id = rpc_arena_strdup(arena, c.sid);
	out->issued_at = c.iat;
	out->expires_at = c.exp;
	out->is_service = c.is_service;
	out->roles = rpc_arena_calloc(arena, c.n_roles ? c.n_roles : 1,
				      sizeof(char *));
	if (!out->subject || !out->token_id || !out->session_id || !out->roles)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < c.n_roles; i++) {
		out->roles[i] = rpc_arena_strdup(arena, c.roles[i]);
		if (!out->roles[i])
			return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
					     "out of memory");
	}
	out->n_roles = c.n_roles;
	return RPC_OK;
}

/*
 * Revoking an access token checks it first: a token that is not ours (bad
 * signature, algorithm, issuer...) is UNAUTHENTICATED, so the deny-list
 * only ever holds ids we issued. One that has merely expired is refused
 * everywhere already: revoking it succeeds and stores nothing, so a
 * logout with a stale token still works.
 */
static rpc_code revoke_access(rpc_ctx *ctx, token_service *svc, const char *tok)
{
	size_t len = strlen(tok);
	long long now = now_s();
	bool expired = false;
	const char *why;
	atok_claims c;
	rpc_code code;

	if (len == 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "access_token: required");
	if (len > ATOK_MAX_LEN)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "access_token: longer than %d bytes",
				     ATOK_MAX_LEN);
	why = atok_verify(&svc->policy, tok, len, now, &c, &expired);
	if (why && expired)
		return RPC_OK;
	if (why)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "%s", why);
	/* Until the last second any verifier (with its skew) accepts it. */
	code = tstore_deny(svc->store, c.jti, c.exp + TOKEN_SKEW_S - now + 1);
	if (code != RPC_OK)
		return store_failed(ctx, code);
	rpc_log(RPC_LOG_DEBUG, "token", "access token %s revoked", c.jti);
	return RPC_OK;
}

/* An unknown or malformed refresh token has no session to end: success,
 * so that logging out twice (or after expiry) is not an error. */
static rpc_code revoke_refresh(rpc_ctx *ctx, token_service *svc, const char *tok)
{
	char hash[TSTORE_HASH_LEN];
	bool well_formed = false, found = false;
	rpc_code code;

	code = refresh_input(ctx, "refresh_token", tok, &well_formed);
	if (code != RPC_OK || !well_formed)
		return code;
	if (!refresh_hash(tok, hash))
		return rpc_ctx_error(ctx, RPC_INTERNAL, "hash failed");
	code = tstore_revoke_refresh(svc->store, hash, &found);
	if (code != RPC_OK)
		return store_failed(ctx, code);
	return RPC_OK;
}

static rpc_code revoke_account(rpc_ctx *ctx, token_service *svc,
			       const char *account_id, const char *keep)
{
	char account[37];
	int n = 0;
	rpc_code code;

	if (!*account_id)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "account_id: required");
	if (!uuid_normalize(account_id, account))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "account_id: not a UUID");
	if (*keep && !session_id_ok(keep))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "except_session_id: not a session id");
	code = tstore_revoke_account(svc->store, account, keep, now_s(),
				     svc->access_ttl_s + TOKEN_SKEW_S, &n);
	if (code != RPC_OK)
		return store_failed(ctx, code);
	rpc_log(RPC_LOG_INFO, "token", "account %s: %d session(s) revoked%s",
		account, n, *keep ? " (the caller's kept)" : "");
	return RPC_OK;
}

static rpc_code revoke_tokens(rpc_ctx *ctx,
			      const Estore__Token__V1__RevokeTokensRequest *in,
			      Google__Protobuf__Empty *out)
{
	token_service *svc = rpc_ctx_user(ctx);
	const char *keep = str_or_empty(in->except_session_id);

	(void)out;
	if (*keep && in->target_case !=
		     ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_ACCOUNT_ID)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "except_session_id: only with account_id");
	switch (in->target_case) {
	case ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_ACCESS_TOKEN:
		return revoke_access(ctx, svc, str_or_empty(in->access_token));
	case ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_REFRESH_TOKEN:
		return revoke_refresh(ctx, svc, str_or_empty(in->refresh_token));
	case ESTORE__TOKEN__V1__REVOKE_TOKENS_REQUEST__TARGET_ACCOUNT_ID:
		return revoke_account(ctx, svc, str_or_empty(in->account_id),
				      keep);
	default:
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "target: one of access_token, "
				     "refresh_token or account_id is required");
	}
}

static bool service_name_ok(const char *s)
{
	size_t i;

	for (i = 0; s[i]; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-' || s[i] == '_'))
			return false;
	return i > 0 && i <= SERVICE_NAME_MAX;
}

static rpc_code issue_service_token(rpc_ctx *ctx,
				    const Estore__Token__V1__IssueServiceTokenRequest *in,
				    Estore__Token__V1__ServiceToken *out)
{
	static const char *const roles[] = { "service" };
	token_service *svc = rpc_ctx_user(ctx);
	const char *name = str_or_empty(in->service);
	const char *secret = str_or_empty(in->secret);
	const struct service_secret *known = NULL;
	uint8_t digest[32];
	char sub[8 + SERVICE_NAME_MAX + 1], jti[33];
	size_t slen = strlen(secret);
	bool match;

	if (!*name)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "service: required");
	if (!service_name_ok(name))
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "service: 1-%d of [a-z0-9_-]",
				     SERVICE_NAME_MAX);
	if (slen == 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT, "secret: required");
	if (slen > SECRET_MAX)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "secret: longer than %d bytes", SECRET_MAX);
	for (size_t i = 0; i < svc->n_services; i++)
		if (strcmp(svc->services[i].name, name) == 0)
			known = &svc->services[i];
	if (!sha256(secret, slen, digest))
		return rpc_ctx_error(ctx, RPC_INTERNAL, "hash failed");
	/* Digests of equal length compared in constant time: neither the
	 * secret's content nor its length shows in the timing. An unknown
	 * service is compared against the first one anyway and refused with
	 * the same message. */
	match = CRYPTO_memcmp(digest, known ? known->digest
					    : svc->services[0].digest,
			      sizeof(digest)) == 0 && known;
	OPENSSL_cleanse(digest, sizeof(digest));
	if (!match) {
		rpc_log(RPC_LOG_WARN, "token", "service token refused (peer %s)",
			rpc_ctx_peer(ctx));
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
				     "unknown service or wrong secret");
	}
	snprintf(sub, sizeof(sub), "service:%s", name);
	out->access_token = sign_into(ctx, svc, sub, roles, 1, NULL,
				      svc->service_ttl_s, jti);
	if (!out->access_token)
		return rpc_ctx_error(ctx, RPC_INTERNAL, "cannot issue tokens");
	out->expires_in = svc->service_ttl_s;
	return RPC_OK;
}

static rpc_code get_jwks(rpc_ctx *ctx, const Estore__Token__V1__GetJwksRequest *in,
			 Estore__Token__V1__Jwks *out)
{
	token_service *svc = rpc_ctx_user(ctx);

	(void)in;
	out->keys = svc->jwk_ptrs;
	out->n_keys = svc->n_jwk;
	return RPC_OK;
}

const estore_token_v1_TokenService_impl token_service_impl = {
	.issue_token_pair = issue_token_pair,
	.refresh_token_pair = refresh_token_pair,
	.validate_token = validate_token,
	.revoke_tokens = revoke_tokens,
	.issue_service_token = issue_service_token,
	.get_jwks = get_jwks,
};

/* ---- authenticator and self-test -------------------------------------- */

rpc_code token_service_authenticate(void *user, rpc_ctx *ctx,
				    const char *token, size_t len,
				    rpc_identity *out)
{
	token_service *svc = user;
	atok_claims c;
	rpc_code code = check_access(ctx, svc, token, len, &c);

	if (code != RPC_OK)
		return code;
	snprintf(out->subject, sizeof(out->subject), "%s", c.sub);
	snprintf(out->token_id, sizeof(out->token_id), "%s", c.jti);
	out->is_service = c.is_service;
	out->expires_at = c.exp;
	out->roles = 0;
	for (size_t i = 0; i < c.n_roles; i++) {
		if (strcmp(c.roles[i], "customer") == 0)
			out->roles |= RPC_ROLE_CUSTOMER;
		else if (strcmp(c.roles[i], "vendor") == 0)
			out->roles |= RPC_ROLE_VENDOR;
		else if (strcmp(c.roles[i], "admin") == 0)
			out->roles |= RPC_ROLE_ADMIN;
	}
	return RPC_OK;
}

const char *token_service_self_test(token_service *svc)
{
	static const char *const roles[] = { "customer" };
	atok_spec spec = {
		.issuer = svc->issuer, .audience = svc->audience,
		.sub = "00000000-0000-4000-8000-000000000000",
		.roles = roles, .n_roles = 1,
		.sid = "00000000000000000000000000000000",
		.iat = now_s(), .ttl_s = 60,
	};
	char jti[33];
	char *tok = atok_sign(keyset_signing(svc->keys), &spec, jti);
	const char *why;
	atok_claims c;

	if (!tok)
		return "cannot sign with the signing key";
	why = atok_verify(&svc->policy, tok, strlen(tok), spec.iat, &c, NULL);
	free(tok);
	if (why)
		return why;
	if (strcmp(c.jti, jti) != 0 || strcmp(c.sub, spec.sub) != 0)
		return "claims did not survive signing";
	return NULL;
}
