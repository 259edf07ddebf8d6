/*
 * jwt.h - access tokens: ES256-signed JWTs (RFC 7519, JWS compact form).
 *
 * Both directions are written out here against OpenSSL with the keys
 * parsed once at start. libjwt 1.10 parses the PEM again for every token
 * it signs or decodes (470 µs a signature on our bench machine against
 * about 30 µs with the parsed key), and its decoder lets the token's
 * header pick the algorithm. Verification is also where the classic JWT
 * mistakes live:
 *  - the JOSE header is decoded and checked first: "alg" must be exactly
 *    "ES256" (never "none", HS*, RS* or anything the token proposes) and
 *    "kid" must name one of our keys; "crit" is refused;
 *  - the signature must be exactly 64 bytes (r || s) and verify with that
 *    key over "header.payload" (ECDSA P-256 / SHA-256);
 *  - only then is the payload parsed and its claims checked (iss, aud,
 *    exp, nbf, iat with a skew; sub, jti, roles, sid well-formed).
 *
 * Revocation (deny-list, account not-before, revoked sessions) is the
 * store's job, checked by the caller after atok_verify succeeds.
 */
#ifndef ESTORE_TOKEN_JWT_H
#define ESTORE_TOKEN_JWT_H

#include <stdbool.h>
#include <stddef.h>

#include "services/token/keys.h"

/* Longest token accepted for verification (ours are ~600 bytes). */
#define ATOK_MAX_LEN 8192
#define ATOK_ROLES_MAX 8
#define ATOK_ROLE_MAX 15         /* characters of one role name */
#define ATOK_SUB_MAX 79          /* fits rpc_identity.subject */
#define ATOK_JTI_MAX 63          /* fits rpc_identity.token_id */
#define ATOK_SID_MAX 63

/* The verified content of a token. */
typedef struct atok_claims {
	char sub[ATOK_SUB_MAX + 1];
	char jti[ATOK_JTI_MAX + 1];
	char sid[ATOK_SID_MAX + 1];    /* "" when the token has none */
	long long iat, nbf, exp;
	char roles[ATOK_ROLES_MAX][ATOK_ROLE_MAX + 1];
	size_t n_roles;
	bool is_service;               /* sub starts with "service:" */
} atok_claims;

/* What to check a token against. */
typedef struct atok_policy {
	const keyset *keys;
	const char *issuer;
	const char *audience;
	long long skew_s;              /* allowed clock difference */
} atok_policy;

/* What a new token says. */
typedef struct atok_spec {
	const char *issuer;
	const char *audience;
	const char *sub;
	const char *const *roles;
	size_t n_roles;
	const char *sid;               /* NULL: no "sid" claim (service tokens) */
	long long iat;                 /* unix seconds; nbf = iat */
	long long ttl_s;               /* exp = iat + ttl_s */
} atok_spec;

/*
 * Signs a new token with `key` (ES256, header "kid"), choosing a random
 * 128-bit jti (32 hex characters, written to jti_out). Returns the
 * malloc'd token (free()) or NULL on failure (no memory, RNG or signing
 * failure, or a key without its private part: one from a JWKS).
 */
char *atok_sign(const token_key *key, const atok_spec *spec,
		char jti_out[33]);

/*
 * Verifies `token` (len bytes, need not be NUL-terminated) at time `now`
 * and fills *out. Returns NULL when the token is authentic and current,
 * otherwise a short static reason for the caller ("token expired",
 * "signature mismatch", ...) that reveals nothing secret.
 *
 * *expired is set to true when the only problem is that the token has
 * expired (for revocation, which treats that as a no-op); it may be NULL.
 */
const char *atok_verify(const atok_policy *pol, const char *token, size_t len,
			long long now, atok_claims *out, bool *expired);

/* 16 random bytes as 32 lowercase hex characters + NUL; false when the
 * RNG fails. Also used for session (family) ids. */
bool atok_random_hex16(char out[33]);

#endif
