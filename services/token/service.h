/*
 * service.h - estore.token.v1.TokenService: the business rules of tokens
 * over protobuf-c structs (no transport, no Redis commands: those are in
 * store_redis.h; no JWT encoding: jwt.h).
 *
 *  IssueTokenPair   (internal) a new session (refresh family) for an
 *                   account: an access token + its first refresh token
 *  RefreshTokenPair (internal) rotates a refresh token; reuse of a rotated
 *                   one revokes the session: UNAUTHENTICATED. The new
 *                   access token carries the request's roles (the
 *                   account's current ones) or, when the request names
 *                   none, the roles stored with the session
 *  ValidateToken    (public)   the claims of a valid access token, else
 *                   UNAUTHENTICATED with a short reason; UNAVAILABLE when
 *                   revocation cannot be checked (never "valid")
 *  RevokeTokens     (internal) an access token (its jti, until it
 *                   expires), a refresh token (its session), or every
 *                   session of an account but one
 *  IssueServiceToken (public)  a service token against the service's
 *                   configured secret (constant-time comparison)
 *  GetJwks          (public)   every public key, RFC 7517/7518 EC JWKs
 *
 * Input errors are INVALID_ARGUMENT naming the field. Access rules
 * (internal = service tokens only) are enforced by the generated layer
 * with token_service_authenticate installed as the server's
 * authenticator.
 */
#ifndef ESTORE_TOKEN_SERVICE_H
#define ESTORE_TOKEN_SERVICE_H

#include "estore/token/v1/token.rpc.h"
#include "rpc/server.h"
#include "services/token/keys.h"
#include "services/token/store_redis.h"

/* Clock difference forgiven on exp, nbf and iat. */
#define TOKEN_SKEW_S 60

typedef struct token_settings {
	const char *issuer;          /* TOKEN_ISSUER */
	const char *audience;        /* TOKEN_AUDIENCE */
	long long access_ttl_s;      /* TOKEN_ACCESS_TTL_S */
	long long refresh_ttl_s;     /* TOKEN_REFRESH_TTL_S */
	long long service_ttl_s;     /* TOKEN_SERVICE_TTL_S */
	const char *auth_secret;     /* AUTH_SERVICE_SECRET (service "auth") */
} token_settings;

typedef struct token_service token_service;

/*
 * The settings' strings are copied (the secret is wiped on free); keys
 * and store are borrowed and must outlive the service. NULL on no memory.
 */
token_service *token_service_new(const token_settings *set, const keyset *keys,
				 tstore *store);
void token_service_free(token_service *svc);

/* The handlers; register with `svc` as the user pointer. */
extern const estore_token_v1_TokenService_impl token_service_impl;

/*
 * The server's authenticator (user = the token_service): the same checks
 * as ValidateToken, filling the caller's identity (is_service for
 * "service:" subjects). See rpc_authenticator in rpc/server.h.
 */
rpc_code token_service_authenticate(void *user, rpc_ctx *ctx,
				    const char *token, size_t len,
				    rpc_identity *out);

/*
 * Signs and verifies one throw-away token with the signing key: run at
 * start so that a key OpenSSL cannot sign with (or a signature our
 * verifier rejects) stops the service instead of failing every login.
 * Returns NULL or a reason.
 */
const char *token_service_self_test(token_service *svc);

#endif
