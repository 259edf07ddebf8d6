/*
 * validate.h - input rules of the account service, as pure functions over
 * NUL-terminated strings (no I/O, no allocation), so they can be unit
 * tested alone and reused by other services that accept the same fields.
 *
 * Every check returns NULL when the value is acceptable, or a static
 * message fragment naming what is wrong ("must be ..."); callers prefix it
 * with the field path ("email: must be ...") to build the INVALID_ARGUMENT
 * message.
 */
#ifndef ESTORE_ACCOUNT_VALIDATE_H
#define ESTORE_ACCOUNT_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACCT_EMAIL_MAX 254          /* RFC 5321 path limit, in bytes */
#define ACCT_EMAIL_LOCAL_MAX 64     /* RFC 5321 local-part limit */
#define ACCT_DISPLAY_NAME_MAX 100   /* code points */
#define ACCT_LOCALE_MAX 35          /* RFC 5646 §4.4.1 minimum buffer */
#define ACCT_PASSWORD_HASH_MAX 512  /* far above any argon2 PHC string */

/* Checks that s[0..len) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF). On success stores the number of
 * code points in *n_cp (may be NULL). */
bool acct_utf8_valid(const char *s, size_t len, size_t *n_cp);

/* An address "local@domain": exactly one '@', local part 1..64 bytes,
 * domain of dot-separated labels (at least two, none empty, none starting
 * or ending with '-'), at most 254 bytes in all, valid UTF-8, no
 * whitespace, control or RFC 5322 special characters. */
const char *acct_check_email(const char *s);

/* 1..100 code points of valid UTF-8, no control characters (C0, DEL, C1),
 * not only whitespace. */
const char *acct_check_display_name(const char *s);

/* Empty (unset), or a BCP 47-shaped tag: subtags of 1..8 ASCII letters or
 * digits separated by single hyphens, the first 2..8 letters (or "i"/"x"
 * private-use prefixes), at most 35 characters. */
const char *acct_check_locale(const char *s);

/* Empty (unset), or three upper-case ASCII letters (ISO 4217 shape). */
const char *acct_check_currency(const char *s);

/* An argon2 PHC string: starts with "$argon2", printable ASCII without
 * spaces, at most 512 bytes. Refusing anything else keeps a caller bug
 * from ever storing a plain password. */
const char *acct_check_password_hash(const char *s);

/* The canonical textual UUID form, 8-4-4-4-12 hex digits (either case). */
bool acct_is_uuid(const char *s);

/*
 * Page tokens of ListAccounts: an opaque, URL-safe encoding of the keyset
 * cursor (create_time in Unix microseconds, id of the last account
 * returned) plus the role filter the listing was made with, so a token
 * cannot be replayed against another filter.
 */
typedef struct acct_cursor {
	int64_t create_us;  /* create_time of the last row, Unix µs */
	char id[37];        /* its id, lower-case canonical UUID */
	int role;           /* the request's role filter (0 = none) */
} acct_cursor;

/* Longest token acct_cursor_encode writes, NUL included. */
#define ACCT_CURSOR_TOKEN_MAX 96

/* Writes the token into out (at least ACCT_CURSOR_TOKEN_MAX bytes). */
void acct_cursor_encode(const acct_cursor *c, char *out);

/* Parses a token made by acct_cursor_encode. Returns NULL and fills *c, or
 * a message fragment for anything else (wrong alphabet, length, version,
 * malformed fields). */
const char *acct_cursor_decode(const char *token, acct_cursor *c);

#endif
