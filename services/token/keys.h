/*
 * keys.h - the token service's signing keys: ES256 (ECDSA on P-256)
 * private keys in PEM files, one per file in TOKEN_KEY_DIR, the kid being
 * the file name without ".pem".
 *
 * Every key in the directory verifies tokens and is published in the
 * JWKS (so a key can be rotated in before it signs and kept after it
 * stops signing); exactly one of them signs new tokens. Keys are parsed
 * once at start: verification then never touches PEM text, and the set is
 * immutable afterwards, so it is shared by all threads without locks.
 *
 * Key material is never logged; the PEM text kept for signing is wiped
 * when the set is freed.
 */
#ifndef ESTORE_TOKEN_KEYS_H
#define ESTORE_TOKEN_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "estore/token/v1/token.pb-c.h"

/* A kid is a file name: letters, digits, '.', '_' and '-', at most this
 * many characters (it travels in every token header). */
#define KEYS_KID_MAX 64
/* More files than this in the key directory is a mistake, not rotation. */
#define KEYS_MAX 16

typedef struct token_key {
	char kid[KEYS_KID_MAX + 1];
	EVP_PKEY *pkey;          /* private + public (keyset_load): signs and
				    verifies; public only (keyset_from_jwks):
				    verifies */
	bool has_private;        /* atok_sign refuses a key without it */
	char x[44], y[44];       /* public point, base64url without padding */
} token_key;

typedef struct keyset keyset;

/*
 * Loads every "*.pem" file of `dir` (sorted by name; other files and
 * hidden files are ignored). Each must be an EC P-256 private key (PKCS#8
 * or SEC1 PEM) and its kid must be a valid file-name kid. The signing key
 * is `signing_kid`, or the last kid in sorted order when signing_kid is
 * NULL or "". Returns the set, or NULL with a message in err (a missing
 * or unreadable directory, no key, a file that is not a P-256 key, an
 * unknown signing kid); the message names files, never their content.
 */
keyset *keyset_load(const char *dir, const char *signing_kid, char *err,
		    size_t errlen);

/*
 * Builds a verify-only set from a JWKS (TokenService.GetJwks), for those
 * who check tokens without signing them (the edge proxy). Every key must
 * be kty "EC", crv "P-256", alg "ES256" (alg may not be left out: we
 * never guess an algorithm), "use" empty or "sig", a valid kid (as for
 * files) that no other key of the set has, and x and y base64url of
 * exactly 32 bytes each naming a point on the curve. One bad key refuses
 * the whole set: a JWKS we half understand is not trusted. Between 1 and
 * KEYS_MAX keys.
 *
 * Returns the set (keyset_signing() is NULL for it), or NULL with a
 * message in err naming the key (by index and kid) and the problem.
 * `jwks` is only read.
 */
keyset *keyset_from_jwks(const Estore__Token__V1__Jwks *jwks, char *err,
			 size_t errlen);

/* Frees the keys, wiping the PEM text. keyset_free(NULL) is a no-op. */
void keyset_free(keyset *ks);

/* The key with this kid (len bytes, not NUL-terminated), or NULL. */
const token_key *keyset_find(const keyset *ks, const char *kid, size_t len);

/* The key that signs new tokens; never NULL for a set from keyset_load,
 * always NULL for one from keyset_from_jwks. */
const token_key *keyset_signing(const keyset *ks);

/* Number of keys and the i-th in kid order, for the JWKS. */
size_t keyset_count(const keyset *ks);
const token_key *keyset_get(const keyset *ks, size_t i);

#endif
