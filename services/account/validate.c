/*
 * validate.c - input rules of the account service (see validate.h).
 */
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ------------------------------------------------------------ */

/* Decodes one code point at s[i] (i < len); returns its length in bytes, or
 * 0 when the sequence is malformed. Written against RFC 3629's table so
 * overlong forms and surrogates fail here rather than reach PostgreSQL
 * (which would refuse them with a less helpful error). */
static size_t utf8_decode(const unsigned char *s, size_t len, size_t i,
			  uint32_t *cp)
{
	unsigned char c = s[i];
	size_t n;
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		v = c & 0x07;
	} else {
		return 0; /* continuation byte, C0/C1 overlong lead, or > F4 */
	}
	if (len - i < n)
		return 0;
	for (size_t k = 1; k < n; k++) {
		if ((s[i + k] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i + k] & 0x3F);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
	    (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return n;
}

bool acct_utf8_valid(const char *s, size_t len, size_t *n_cp)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t count = 0;

	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_decode(u, len, i, &cp);

		if (n == 0)
			return false;
		i += n;
		count++;
	}
	if (n_cp)
		*n_cp = count;
	return true;
}

static bool is_control(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
}

/* ---- email ------------------------------------------------------------ */

/* Characters RFC 5322 gives special meaning outside quoted strings; we do
 * not accept quoted local parts, so they never belong in an address. */
static bool is_email_special(uint32_t cp)
{
	return cp == ' ' || strchr("()<>[]\\,;:\"", (int)cp) != NULL;
}

static const char *check_domain(const char *d, size_t len)
{
	size_t labels = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && d[i] != '.')
			continue;
		size_t llen = i - start;

		if (llen == 0)
			return "domain must be a name like example.com";
		if (llen > 63)
			return "domain labels must be at most 63 characters";
		if (d[start] == '-' || d[i - 1] == '-')
			return "domain labels must not start or end with '-'";
		for (size_t k = start; k < i; k++) {
			unsigned char c = (unsigned char)d[k];

			/* Non-ASCII is an internationalised label (already
			 * checked as UTF-8); ASCII must be LDH. */
			if (c < 0x80 && !isalnum(c) && c != '-')
				return "domain must be a name like example.com";
		}
		labels++;
		start = i + 1;
	}
	if (labels < 2)
		return "domain must be a name like example.com";
	return NULL;
}

const char *acct_check_email(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), at = 0, n_at = 0;

	if (len == 0)
		return "is required";
	if (len > ACCT_EMAIL_MAX)
		return "must be at most 254 characters";
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_decode(u, len, i, &cp);

		if (n == 0)
			return "must be valid UTF-8";
		if (is_control(cp) || is_email_special(cp))
			return "must not contain spaces, control or special characters";
		if (cp == '@') {
			n_at++;
			at = i;
		}
		i += n;
	}
	if (n_at != 1)
		return "must contain exactly one '@'";
	if (at == 0 || at > ACCT_EMAIL_LOCAL_MAX)
		return "local part must be 1 to 64 characters";
	if (s[0] == '.' || s[at - 1] == '.' || memmem(s, at, "..", 2) != NULL)
		return "local part must not start or end with '.' or contain '..'";
	return check_domain(s + at + 1, len - at - 1);
}

/* ---- display name ------------------------------------------------------ */

const char *acct_check_display_name(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), count = 0;
	bool blank = true;

	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n = utf8_decode(u, len, i, &cp);

		if (n == 0)
			return "must be 1 to 100 characters of valid UTF-8";
		if (is_control(cp))
			return "must not contain control characters";
		if (cp != ' ')
			blank = false;
		i += n;
		count++;
	}
	if (count == 0 || count > ACCT_DISPLAY_NAME_MAX)
		return "must be 1 to 100 characters of valid UTF-8";
	if (blank)
		return "must not be blank";
	return NULL;
}

/* ---- preferences ------------------------------------------------------- */

const char *acct_check_locale(const char *s)
{
	static const char msg[] =
		"must be a BCP 47 language tag such as en-GB";
	size_t len = strlen(s), start = 0;
	bool first = true;

	if (len == 0)
		return NULL;
	if (len > ACCT_LOCALE_MAX)
		return "must be at most 35 characters";
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '-') {
			if (!isascii((unsigned char)s[i]) ||
			    !isalnum((unsigned char)s[i]))
				return msg;
			continue;
		}
		size_t n = i - start;

		if (n == 0 || n > 8)
			return msg;
		if (first) {
			bool letters = true;

			for (size_t k = start; k < i; k++)
				letters &= isalpha((unsigned char)s[k]) != 0;
			/* A language (2-8 letters) or the "i-"/"x-"
			 * grandfathered/private-use prefixes. */
			if (!letters || (n == 1 && s[start] != 'i' &&
					 s[start] != 'x' && s[start] != 'I' &&
					 s[start] != 'X'))
				return msg;
			first = false;
		}
		start = i + 1;
	}
	return NULL;
}

const char *acct_check_currency(const char *s)
{
	if (s[0] == '\0')
		return NULL;
	for (int i = 0; i < 3; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			return "must be a 3-letter ISO 4217 code";
	if (s[3] != '\0')
		return "must be a 3-letter ISO 4217 code";
	return NULL;
}

const char *acct_check_password_hash(const char *s)
{
	size_t len = strlen(s);

	if (len == 0)
		return "is required";
	if (len > ACCT_PASSWORD_HASH_MAX)
		return "must be at most 512 characters";
	if (strncmp(s, "$argon2", 7) != 0)
		return "must be an argon2 PHC string ($argon2id$...)";
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return "must be printable ASCII without spaces";
	return NULL;
}

bool acct_is_uuid(const char *s)
{
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!isxdigit((unsigned char)s[i])) {
			return false; /* also stops at a short string's NUL */
		}
	}
	return s[36] == '\0';
}

/* ---- page tokens ------------------------------------------------------- */

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url (RFC 4648 §5): safe in URLs and JSON unescaped. */
static void b64url_encode(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];

		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
	}
	out[o] = '\0';
}

/* Strict decoding: only the URL alphabet, no padding, and unused low bits
 * zero, so every payload has exactly one token. Returns the decoded length
 * or -1. */
static long b64url_decode(const char *in, unsigned char *out, size_t cap)
{
	size_t len = strlen(in), o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		const char *p = in[i] ? strchr(b64url, in[i]) : NULL;

		if (!p)
			return -1;
		acc = (acc << 6) | (uint32_t)(p - b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == cap)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return -1;
	return (long)o;
}

/* The payload is "1.<create_us>.<id>.<role>": a version first so the
 * format can change without old tokens being misread. */
void acct_cursor_encode(const acct_cursor *c, char *out)
{
	char raw[72];
	int n = snprintf(raw, sizeof(raw), "1.%" PRId64 ".%s.%d", c->create_us,
			 c->id, c->role);

	b64url_encode((const unsigned char *)raw, (size_t)n, out);
}

const char *acct_cursor_decode(const char *token, acct_cursor *c)
{
	static const char bad[] = "is not a token this service issued";
	unsigned char raw[72];
	char buf[73], *f[4], *save = NULL, *end;
	long n;
	int nf = 0;

	if (strlen(token) >= ACCT_CURSOR_TOKEN_MAX)
		return bad;
	n = b64url_decode(token, raw, sizeof(raw));
	if (n <= 0)
		return bad;
	memcpy(buf, raw, (size_t)n);
	buf[n] = '\0';
	if (strlen(buf) != (size_t)n)
		return bad; /* embedded NUL */
	for (char *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
		if (nf == 4)
			return bad;
		f[nf++] = t;
	}
	if (nf != 4 || strcmp(f[0], "1") != 0)
		return bad;
	if (!isdigit((unsigned char)f[1][0]) || strlen(f[1]) > 18)
		return bad;
	errno = 0;
	c->create_us = strtoll(f[1], &end, 10);
	if (errno != 0 || *end != '\0')
		return bad;
	if (!acct_is_uuid(f[2]))
		return bad;
	for (int i = 0; i < 37; i++)
		c->id[i] = (char)tolower((unsigned char)f[2][i]);
	if (f[3][0] < '0' || f[3][0] > '3' || f[3][1] != '\0')
		return bad;
	c->role = f[3][0] - '0';
	return NULL;
}
