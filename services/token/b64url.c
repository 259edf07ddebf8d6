/*
 * b64url.c - base64url without padding.
 */
#include "services/token/b64url.h"

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t b64url_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return o;
}

/* Value of one alphabet character, or -1. */
static int sextet(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

bool b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap,
		   size_t *outlen)
{
	size_t full = len / 4, rest = len % 4, o = 0;
	uint32_t v;
	int s[4];

	/* One leftover character carries only 6 bits: never a whole byte. */
	if (rest == 1)
		return false;
	if (full * 3 + (rest ? rest - 1 : 0) > cap)
		return false;
	for (size_t b = 0; b < full; b++) {
		for (int k = 0; k < 4; k++)
			if ((s[k] = sextet((unsigned char)in[b * 4 + k])) < 0)
				return false;
		v = (uint32_t)s[0] << 18 | (uint32_t)s[1] << 12 |
		    (uint32_t)s[2] << 6 | (uint32_t)s[3];
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
		out[o++] = (uint8_t)v;
	}
	if (rest) {
		const char *t = in + full * 4;

		for (size_t k = 0; k < rest; k++)
			if ((s[k] = sextet((unsigned char)t[k])) < 0)
				return false;
		if (rest == 2) {
			if (s[1] & 15)
				return false;
			out[o++] = (uint8_t)(s[0] << 2 | s[1] >> 4);
		} else {
			if (s[2] & 3)
				return false;
			v = (uint32_t)s[0] << 18 | (uint32_t)s[1] << 12 |
			    (uint32_t)s[2] << 6;
			out[o++] = (uint8_t)(v >> 16);
			out[o++] = (uint8_t)(v >> 8);
		}
	}
	*outlen = o;
	return true;
}
