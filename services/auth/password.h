/*
 * password.h - password hashing and the password policy of estore-auth.
 *
 * Hashes are argon2id in the PHC string format
 * ("$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>"), so each stored hash
 * carries its own parameters: verification reads them from the string and
 * a login can tell that a hash was made with weaker parameters than the
 * configured ones and must be redone (pw_needs_rehash).
 *
 * The policy follows NIST SP 800-63B §5.1.1.2 and ASVS 5.0 V6: 8 to 128
 * characters counted as Unicode code points of valid UTF-8, every byte
 * hashed (never truncated, unlike bcrypt's 72 bytes), no composition rules,
 * and no password from a deny-list of common and breached ones, compared
 * case-insensitively (ASCII letters) so "PassWord1" is as refused as
 * "password1".
 *
 * Nothing here logs; nothing here keeps a copy of a password.
 */
#ifndef ESTORE_AUTH_PASSWORD_H
#define ESTORE_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Policy limits, in code points. */
#define PW_MIN_CHARS 8
#define PW_MAX_CHARS 128

/* Room for an encoded hash with any parameters we produce (16-byte salt,
 * 32-byte digest, 10-digit numbers): about 100 bytes, with margin. */
#define PW_HASH_MAX 160

typedef struct pw_params {
	uint32_t m_kib;   /* memory in KiB */
	uint32_t t;       /* iterations */
	uint32_t p;       /* lanes (parallelism) */
} pw_params;

/* ---- UTF-8 ----------------------------------------------------------- */

/* Number of code points in s[0..len) when it is valid UTF-8 (shortest
 * forms only, no surrogates, nothing above U+10FFFF), else -1. */
long pw_utf8_chars(const char *s, size_t len);

/* ---- deny-list --------------------------------------------------------- */

typedef struct pw_denylist pw_denylist;

/* An empty list. NULL on no memory. */
pw_denylist *pw_denylist_new(void);

/* pw_denylist_free(NULL) is a no-op. */
void pw_denylist_free(pw_denylist *d);

/* Adds one password (stored ASCII-lower-cased). Returns 0 or
 * RPC_ERR_NOMEM. Duplicates are kept once. */
int pw_denylist_add(pw_denylist *d, const char *pw, size_t len);

/* Adds every line of a text file: one password a line, "\r\n" or "\n",
 * lines starting with "#!comment:" (John the Ripper's header) and empty
 * lines skipped. *added (may be NULL) receives the number of lines taken.
 * Returns 0, RPC_ERR_IO (cannot open or read; errno kept) or
 * RPC_ERR_NOMEM. */
int pw_denylist_load_file(pw_denylist *d, const char *path, size_t *added);

/* Adds the list compiled into the binary from common-passwords.txt.
 * Returns 0 or RPC_ERR_NOMEM. */
int pw_denylist_load_builtin(pw_denylist *d, size_t *added);

/* True when the password is on the list (ASCII case-insensitively). */
bool pw_denylist_contains(const pw_denylist *d, const char *pw, size_t len);

/* Distinct entries held. */
size_t pw_denylist_size(const pw_denylist *d);

/* ---- policy ---------------------------------------------------------- */

typedef enum pw_verdict {
	PW_OK = 0,
	PW_BAD_UTF8,     /* not valid UTF-8 */
	PW_BAD_LENGTH,   /* fewer than 8 or more than 128 code points */
	PW_TOO_COMMON,   /* on the deny-list */
} pw_verdict;

/* Checks a new password against the policy. `deny` may be NULL (no list). */
pw_verdict pw_check_policy(const pw_denylist *deny, const char *pw,
			   size_t len);

/* ---- hashing --------------------------------------------------------- */

/* Hashes with argon2id, a fresh 16-byte salt from getrandom(2) and a
 * 32-byte digest, writing the NUL-terminated PHC string into out (cap
 * bytes, at least PW_HASH_MAX). Returns 0, RPC_ERR_INVALID (bad params or
 * cap too small), RPC_ERR_IO (no randomness) or RPC_ERR_NOMEM (argon2
 * could not allocate its memory). CPU- and memory-heavy by design: callers
 * bound how many run at once. */
int pw_hash(const pw_params *params, const char *pw, size_t len, char *out,
	    size_t cap);

/* Unmaps the argon2 memory kept for reuse by finished computations
 * (pw_hash and pw_verify keep up to 8 regions while hashing goes on).
 * Call it when no computation runs or waits. */
void pw_memory_release(void);

/* Verifies pw against a PHC string in constant time (argon2's own
 * comparison). Returns 1 on a match, 0 on a mismatch, RPC_ERR_INVALID when
 * the string is not an argon2id hash we accept (then no work was done:
 * callers that must spend the same work either way verify a dummy hash
 * instead), RPC_ERR_NOMEM when argon2 could not allocate. */
int pw_verify(const char *encoded, const char *pw, size_t len);

/* Reads the parameters of an argon2id PHC string. Returns 0, or
 * RPC_ERR_INVALID when it is not "$argon2id$v=19$m=..,t=..,p=..$...". */
int pw_parse_params(const char *encoded, pw_params *out);

/* True when the stored hash should be redone with `want`: it is not a
 * parseable argon2id v=19 hash, or any of m, t, p is below `want`. */
bool pw_needs_rehash(const char *encoded, const pw_params *want);

#endif
