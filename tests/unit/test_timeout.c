/*
 * test_timeout.c - grpc-timeout parsing and formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/status.h"
#include "rpc/timeout.h"

#define NS_PER_S 1000000000LL

static int64_t parse_ok(const char *s)
{
	int64_t ns = -1;
	assert_int_equal(rpc_timeout_parse(s, strlen(s), &ns), 0);
	return ns;
}

static void parse_bad(const char *s, size_t len)
{
	int64_t ns = 777;
	assert_int_equal(rpc_timeout_parse(s, len, &ns), RPC_ERR_INVALID);
	assert_int_equal(ns, 777);
}

static void test_parse_every_unit(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("7n"), 7);
	assert_int_equal(parse_ok("7u"), 7000);
	assert_int_equal(parse_ok("7m"), 7000000);
	assert_int_equal(parse_ok("7S"), 7 * NS_PER_S);
	assert_int_equal(parse_ok("7M"), 7 * 60 * NS_PER_S);
	assert_int_equal(parse_ok("7H"), 7 * 3600 * NS_PER_S);
}

static void test_parse_digits(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("0n"), 0);
	assert_int_equal(parse_ok("00000100m"), 100000000);
	assert_int_equal(parse_ok("99999999n"), 99999999);
	assert_int_equal(parse_ok("12345678u"), 12345678000LL);
	/* Only the first len bytes count: the header value is not
	 * NUL-terminated on the wire. */
	int64_t ns;
	assert_int_equal(rpc_timeout_parse("5Sjunk", 2, &ns), 0);
	assert_int_equal(ns, 5 * NS_PER_S);
}

static void test_parse_invalid(void **state)
{
	(void)state;
	parse_bad("", 0);
	parse_bad("S", 1);            /* no digits */
	parse_bad("5", 1);            /* no unit */
	parse_bad("123456789S", 10);  /* 9 digits */
	parse_bad("5s", 2);           /* unknown unit (lower-case s) */
	parse_bad("5h", 2);
	parse_bad("5x", 2);
	parse_bad("5ms", 3);
	parse_bad("-5S", 3);          /* sign */
	parse_bad("+5S", 3);
	parse_bad(" 5S", 3);          /* space */
	parse_bad("5 S", 3);
	parse_bad("5S ", 3);
	parse_bad("1.5S", 4);
	parse_bad("0x5S", 4);
	parse_bad("5\0S", 3);
	int64_t ns;
	assert_int_equal(rpc_timeout_parse(NULL, 0, &ns), RPC_ERR_INVALID);
}

static void test_parse_saturates(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("99999999H"), INT64_MAX);
	/* 2562048 hours is just past INT64_MAX ns; 2562047 is just below. */
	assert_int_equal(parse_ok("2562048H"), INT64_MAX);
	assert_int_equal(parse_ok("2562047H"), 2562047LL * 3600 * NS_PER_S);
	/* Minutes never overflow with 8 digits. */
	assert_int_equal(parse_ok("99999999M"), 99999999LL * 60 * NS_PER_S);
}

static void check_format(int64_t ns, const char *want)
{
	char buf[RPC_TIMEOUT_BUFLEN];
	memset(buf, 'X', sizeof(buf));
	size_t n = rpc_timeout_format(ns, buf);
	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
}

static void test_format_finest_unit(void **state)
{
	(void)state;
	check_format(1, "1n");
	check_format(99999999, "99999999n");
	check_format(100000000, "100000u");      /* 9 digits of n: go to u */
	check_format(100000001, "100001u");      /* rounded up */
	check_format(5 * NS_PER_S, "5000000u");
	check_format(100 * NS_PER_S, "100000m");
	check_format(99999999LL * 1000000, "99999999m");
	check_format(200000 * NS_PER_S, "200000S");
	check_format(99999999LL * NS_PER_S, "99999999S");
	check_format(100000000LL * NS_PER_S, "1666667M");
	check_format(99999999LL * 60 * NS_PER_S, "99999999M");
	check_format(INT64_MAX, "2562048H");
}

static void test_format_expired(void **state)
{
	(void)state;
	check_format(0, "1n");
	check_format(-1, "1n");
	check_format(INT64_MIN, "1n");
}

static void test_format_never_shortens(void **state)
{
	/* Whatever the rounding, the peer's deadline must be >= ours. */
	const int64_t samples[] = {
		1, 999, 1001, 99999999, 100000000, 123456789,
		999999999999LL, 100000000001LL, 12345678901234LL,
		5999999999999999LL, 6000000000000001LL, INT64_MAX / 3,
		INT64_MAX - 1, INT64_MAX,
	};
	(void)state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char buf[RPC_TIMEOUT_BUFLEN];
		int64_t back = 0;
		size_t n = rpc_timeout_format(samples[i], buf);
		assert_true(n >= 2 && n <= RPC_TIMEOUT_BUFLEN - 1);
		assert_int_equal(rpc_timeout_parse(buf, n, &back), 0);
		assert_true(back >= samples[i]);
	}
}

static void test_format_round_trip_exact(void **state)
{
	/* Values that are whole in their unit come back unchanged. */
	const char *vals[] = {
		"1n", "12345678n", "100000u", "100000m", "100000S",
		"1666667M", "30S", "250m",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		int64_t ns = parse_ok(vals[i]);
		char buf[RPC_TIMEOUT_BUFLEN];
		size_t n = rpc_timeout_format(ns, buf);
		int64_t back;
		assert_int_equal(rpc_timeout_parse(buf, n, &back), 0);
		assert_int_equal(back, ns);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_every_unit),
		cmocka_unit_test(test_parse_digits),
		cmocka_unit_test(test_parse_invalid),
		cmocka_unit_test(test_parse_saturates),
		cmocka_unit_test(test_format_finest_unit),
		cmocka_unit_test(test_format_expired),
		cmocka_unit_test(test_format_never_shortens),
		cmocka_unit_test(test_format_round_trip_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
