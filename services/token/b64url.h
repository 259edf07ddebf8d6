/*
 * b64url.h - base64url without padding (RFC 4648 §5, as JOSE uses it:
 * RFC 7515 §2).
 */
#ifndef ESTORE_TOKEN_B64URL_H
#define ESTORE_TOKEN_B64URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Characters needed to encode n bytes, without the terminating NUL. */
#define B64URL_ENCODED_LEN(n) (((n) * 4 + 2) / 3)

/* Encodes n bytes into out (at least B64URL_ENCODED_LEN(n) + 1 bytes),
 * NUL-terminated. Returns the length written. */
size_t b64url_encode(const uint8_t *in, size_t n, char *out);

/*
 * Decodes len characters into out (capacity cap). Strict: only the
 * base64url alphabet, no padding, no whitespace, and the unused low bits
 * of the last character must be zero (so one value has exactly one
 * encoding: a token cannot be altered without changing its bytes).
 * Returns true with *outlen set, false on malformed input or when the
 * result would not fit.
 */
bool b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap,
		   size_t *outlen);

#endif
