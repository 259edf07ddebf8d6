/*
 * percent.c - grpc-message percent-encoding.
 */
#include "rpc/percent.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static const char hex_upper[] = "0123456789ABCDEF";

static bool passes_through(unsigned char c)
{
	return c >= 0x20 && c <= 0x7e && c != '%';
}

/* -1 for a non-hex character. Lower-case is accepted on decode because the
 * spec only asks senders for upper-case; being liberal costs nothing. */
static int hex_val(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *rpc_percent_encode(const char *in, size_t len, size_t *out_len)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t n = 0;

	/* Bounding len first makes the 3x growth below impossible to wrap. */
	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	/* Size exactly: messages are usually plain ASCII, and an exact
	 * allocation avoids a 3x worst-case buffer for every status. */
	for (size_t i = 0; i < len; i++)
		n += passes_through(p[i]) ? 1 : 3;

	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	char *w = out;
	for (size_t i = 0; i < len; i++) {
		if (passes_through(p[i])) {
			*w++ = (char)p[i];
		} else {
			*w++ = '%';
			*w++ = hex_upper[p[i] >> 4];
			*w++ = hex_upper[p[i] & 0x0f];
		}
	}
	*w = '\0';
	if (out_len)
		*out_len = n;
	return out;
}

char *rpc_percent_decode(const char *in, size_t len, size_t *out_len)
{
	const unsigned char *p = (const unsigned char *)in;

	/* Decoding never grows the text, so len + 1 always suffices. */
	if (len == SIZE_MAX)
		return NULL;
	char *out = malloc(len + 1);
	if (!out)
		return NULL;

	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;
		if (p[i] == '%' && len - i >= 3 &&
		    (hi = hex_val(p[i + 1])) >= 0 &&
		    (lo = hex_val(p[i + 2])) >= 0) {
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			/* The spec says a receiver must not fail the call over
			 * a bad escape: the status matters more than exact
			 * text, so keep the bytes as they came. */
			out[n++] = (char)p[i];
		}
	}
	out[n] = '\0';
	if (out_len)
		*out_len = n;
	return out;
}
