/*
 * authn.c - the remote authenticator: ask the token service, with a
 * one-second cache of positive answers.
 */
#include "services/common/authn.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "estore/token/v1/token.rpc.h"
#include "rpc/log.h"
#include "rpc/loop.h"

/* A validation is at most this long, whatever the caller's deadline: a
 * token service that hangs must not hold a worker for the caller's whole
 * budget. */
#define VALIDATE_MAX_NS (2000LL * 1000000LL)
/* How long a positive answer is reused. Revocation is seen by every
 * service within this delay; it also absorbs a client's burst of calls
 * with one token. */
#define CACHE_TTL_NS (1000LL * 1000000LL)
#define CACHE_SLOTS 1024

struct cache_entry {
	uint8_t key[32];         /* SHA-256 of the token: the token itself is
				    never kept */
	long long stored_ns;     /* 0 = empty */
	rpc_identity id;
};

/*
 * One cache per process (services install one remote authenticator).
 * Direct-mapped: a colliding token simply evicts the other, which keeps
 * the size fixed and the lookup O(1). It is static rather than allocated
 * so nothing is left to free when the server goes away.
 */
static struct {
	pthread_mutex_t lock;
	struct cache_entry slots[CACHE_SLOTS];
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

unsigned authn_roles_from_names(char *const *names, size_t n)
{
	unsigned roles = 0;

	for (size_t i = 0; i < n; i++) {
		if (!names[i])
			continue;
		if (strcmp(names[i], "customer") == 0)
			roles |= RPC_ROLE_CUSTOMER;
		else if (strcmp(names[i], "vendor") == 0)
			roles |= RPC_ROLE_VENDOR;
		else if (strcmp(names[i], "admin") == 0)
			roles |= RPC_ROLE_ADMIN;
	}
	return roles;
}

static bool token_hash(const char *token, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	return EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) == 1 &&
	       n == 32;
}

static size_t slot_of(const uint8_t key[32])
{
	return ((size_t)key[0] | (size_t)key[1] << 8) % CACHE_SLOTS;
}

static bool cache_get(const uint8_t key[32], long long now, rpc_identity *out)
{
	struct cache_entry *e = &cache.slots[slot_of(key)];
	bool hit = false;

	pthread_mutex_lock(&cache.lock);
	if (e->stored_ns != 0 && now - e->stored_ns < CACHE_TTL_NS &&
	    memcmp(e->key, key, 32) == 0 &&
	    e->id.expires_at > (long long)time(NULL)) {
		*out = e->id;
		hit = true;
	}
	pthread_mutex_unlock(&cache.lock);
	return hit;
}

static void cache_put(const uint8_t key[32], long long now,
		      const rpc_identity *id)
{
	struct cache_entry *e = &cache.slots[slot_of(key)];

	pthread_mutex_lock(&cache.lock);
	memcpy(e->key, key, 32);
	e->stored_ns = now;
	e->id = *id;
	pthread_mutex_unlock(&cache.lock);
}

/* Fills the identity from the claims; false when a field does not fit
 * (cutting a subject short could turn it into another one). */
static bool fill_identity(const Estore__Token__V1__TokenClaims *c,
			  rpc_identity *out)
{
	size_t ls = c->subject ? strlen(c->subject) : 0;
	size_t lt = c->token_id ? strlen(c->token_id) : 0;

	if (ls == 0 || ls >= sizeof(out->subject) || lt >= sizeof(out->token_id))
		return false;
	memset(out, 0, sizeof(*out));
	memcpy(out->subject, c->subject, ls + 1);
	if (lt > 0)
		memcpy(out->token_id, c->token_id, lt + 1);
	out->roles = authn_roles_from_names(c->roles, c->n_roles);
	out->is_service = c->is_service != 0;
	out->expires_at = c->expires_at;
	return true;
}

static rpc_code remote_authenticate(void *user, rpc_ctx *ctx,
				    const char *token, size_t len,
				    rpc_identity *out)
{
	rpc_channel *ch = user;
	Estore__Token__V1__ValidateTokenRequest req =
		ESTORE__TOKEN__V1__VALIDATE_TOKEN_REQUEST__INIT;
	Estore__Token__V1__TokenClaims *claims = NULL;
	rpc_call_opts opts = { 0 };
	rpc_status st = { 0 };
	uint8_t key[32];
	bool hashed;
	long long now = rpc_now_ns(), deadline = rpc_ctx_deadline(ctx);
	char *copy;
	rpc_code code;

	hashed = token_hash(token, len, key);
	if (hashed && cache_get(key, now, out))
		return RPC_OK;

	if (deadline != 0 && deadline <= now)
		return rpc_ctx_error(ctx, RPC_DEADLINE_EXCEEDED,
				     "deadline exceeded before the token "
				     "could be verified");
	/* The caller's remaining budget, capped. */
	opts.deadline_ns = now + VALIDATE_MAX_NS;
	if (deadline != 0 && deadline < opts.deadline_ns)
		opts.deadline_ns = deadline;

	copy = malloc(len + 1);
	if (!copy)
		return rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "token service unavailable");
	memcpy(copy, token, len);
	copy[len] = '\0';
	req.access_token = copy;
	code = estore_token_v1_TokenService_validate_token(ch, &opts, &req,
							   &claims, &st);
	free(copy);

	switch (code) {
	case RPC_OK:
		if (!fill_identity(claims, out)) {
			code = rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
					     "invalid access token");
			break;
		}
		if (hashed)
			cache_put(key, now, out);
		break;
	case RPC_UNAUTHENTICATED:
	case RPC_INVALID_ARGUMENT:
		/* The token service's words ("token expired", "revoked")
		 * help the client and reveal nothing it did not send. */
		code = rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "%s",
				     st.message && *st.message
					     ? st.message : "invalid access token");
		break;
	default:
		/* Never "valid" by default: whatever went wrong, the caller
		 * may retry later. */
		rpc_log(RPC_LOG_WARN, "authn", "token validation failed: %s%s%s",
			rpc_code_name(code), st.message ? ": " : "",
			st.message ? st.message : "");
		code = rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "token service unavailable");
		break;
	}
	if (claims)
		protobuf_c_message_free_unpacked(&claims->base, NULL);
	rpc_status_dispose(&st);
	return code;
}

void authn_install_remote(rpc_server *srv, rpc_channel *token_ch)
{
	rpc_server_set_authenticator(srv, remote_authenticate, token_ch);
}
