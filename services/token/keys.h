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

#include <stddef.h>

#include <openssl/evp.h>

/* A kid is a file name: letters, digits, '.', '_' and '-', at most this
 * many characters (it travels in every token header). */
#define KEYS_KID_MAX 64
/* More files than this in the key directory is a mistake, not rotation. */
#define KEYS_MAX 16

typedef struct token_key {
	char kid[KEYS_KID_MAX + 1];
	EVP_PKEY *pkey;          /* private + public: signs and verifies */
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

/* Frees the keys, wiping the PEM text. keyset_free(NULL) is a no-op. */
void keyset_free(keyset *ks);

/* The key with this kid (len bytes, not NUL-terminated), or NULL. */
const token_key *keyset_find(const keyset *ks, const char *kid, size_t len);

/* The key that signs new tokens; never NULL for a loaded set. */
const token_key *keyset_signing(const keyset *ks);

/* Number of keys and the i-th in kid order, for the JWKS. */
size_t keyset_count(const keyset *ks);
const token_key *keyset_get(const keyset *ks, size_t i);

#endif
