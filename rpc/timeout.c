/*
 * timeout.c - grpc-timeout parsing and formatting.
 */
#include "rpc/timeout.h"

#include "rpc/status.h"

#include <stdbool.h>

#define MAX_DIGITS 8
#define MAX_VALUE 99999999

struct unit {
	char c;
	int64_t ns;
};

/* Finest first: format walks this order and keeps the first unit whose
 * rounded-up value fits in 8 digits, which is the most precise one. */
static const struct unit units[] = {
	{ 'n', 1 },
	{ 'u', 1000 },
	{ 'm', 1000000 },
	{ 'S', 1000000000 },
	{ 'M', 60LL * 1000000000 },
	{ 'H', 3600LL * 1000000000 },
};

#define N_UNITS (sizeof(units) / sizeof(units[0]))

int rpc_timeout_parse(const char *s, size_t len, int64_t *out_ns)
{
	if (!s || !out_ns || len < 2 || len > MAX_DIGITS + 1)
		return RPC_ERR_INVALID;

	int64_t mult = 0;
	for (size_t i = 0; i < N_UNITS; i++) {
		if (s[len - 1] == units[i].c) {
			mult = units[i].ns;
			break;
		}
	}
	if (!mult)
		return RPC_ERR_INVALID;

	/* Hand-rolled rather than strtoll: strtoll accepts signs, leading
	 * blanks and "0x", none of which the grammar allows. */
	int64_t v = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return RPC_ERR_INVALID;
		v = v * 10 + (s[i] - '0');
	}

	/* 99999999H is about 3.6e20 ns, past int64: saturate rather than fail,
	 * since "effectively forever" is what such a peer means. */
	if (v > INT64_MAX / mult)
		*out_ns = INT64_MAX;
	else
		*out_ns = v * mult;
	return 0;
}

size_t rpc_timeout_format(int64_t ns, char buf[RPC_TIMEOUT_BUFLEN])
{
	char unit = 'n';
	int64_t v = 1;

	if (ns > 0) {
		/* Even INT64_MAX fits in hours (about 2.5e6 H), so the loop
		 * always finds a unit. */
		for (size_t i = 0; i < N_UNITS; i++) {
			int64_t q = ns / units[i].ns;
			if (ns % units[i].ns)
				q++;
			if (q <= MAX_VALUE) {
				v = q;
				unit = units[i].c;
				break;
			}
		}
	}

	/* Digits written backwards into a scratch area, then copied, to avoid
	 * snprintf's locale and the int64 format macro dance. */
	char tmp[MAX_DIGITS];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v && n < MAX_DIGITS);

	size_t len = 0;
	while (n)
		buf[len++] = tmp[--n];
	buf[len++] = unit;
	buf[len] = '\0';
	return len;
}
