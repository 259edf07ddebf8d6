/*
 * test_percent.c - grpc-message percent-encoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/percent.h"

static void check_encode(const char *in, size_t len, const char *want)
{
	size_t n = 12345;
	char *out = rpc_percent_encode(in, len, &n);
	assert_non_null(out);
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
	free(out);
}

static void check_decode(const char *in, const char *want, size_t want_len)
{
	size_t n = 12345;
	char *out = rpc_percent_decode(in, strlen(in), &n);
	assert_non_null(out);
	assert_int_equal(n, want_len);
	assert_memory_equal(out, want, want_len);
	assert_int_equal(out[n], '\0');
	free(out);
}

static void test_plain_ascii_passes(void **state)
{
	(void)state;
	check_encode("product not found", 17, "product not found");
	check_encode("", 0, "");
	/* The whole printable range except '%' is left alone. */
	char all[95];
	size_t k = 0;
	for (int c = 0x20; c <= 0x7e; c++)
		if (c != '%')
			all[k++] = (char)c;
	all[k] = '\0';
	check_encode(all, k, all);
}

static void test_percent_sign_escaped(void **state)
{
	(void)state;
	check_encode("100%", 4, "100%25");
	check_encode("%%", 2, "%25%25");
	check_decode("100%25", "100%", 4);
}

static void test_controls_and_high_bytes(void **state)
{
	(void)state;
	check_encode("a\nb\tc", 5, "a%0Ab%09c");
	check_encode("\x7f\x1f", 2, "%7F%1F");
	check_encode("\0x", 2, "%00x");
	check_encode("\xff", 1, "%FF");
}

static void test_utf8_round_trip(void **state)
{
	/* "café – ☕ 日本" plus a 4-byte emoji: every non-ASCII byte must be
	 * escaped, and decoding gives back the exact bytes. */
	const char *msg = "caf\xc3\xa9 \xe2\x80\x93 \xe2\x98\x95 "
			  "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80";
	size_t len = strlen(msg), en = 0, dn = 0;
	(void)state;

	char *enc = rpc_percent_encode(msg, len, &en);
	assert_non_null(enc);
	assert_string_equal(enc, "caf%C3%A9 %E2%80%93 %E2%98%95 "
				 "%E6%97%A5%E6%9C%AC %F0%9F%98%80");
	for (size_t i = 0; i < en; i++)
		assert_true(enc[i] >= 0x20 && enc[i] <= 0x7e);

	char *dec = rpc_percent_decode(enc, en, &dn);
	assert_non_null(dec);
	assert_int_equal(dn, len);
	assert_memory_equal(dec, msg, len);
	free(enc);
	free(dec);
}

static void test_all_bytes_round_trip(void **state)
{
	char in[256];
	size_t en, dn;
	(void)state;
	for (int i = 0; i < 256; i++)
		in[i] = (char)i;
	char *enc = rpc_percent_encode(in, sizeof(in), &en);
	assert_non_null(enc);
	char *dec = rpc_percent_decode(enc, en, &dn);
	assert_non_null(dec);
	assert_int_equal(dn, 256);
	assert_memory_equal(dec, in, 256);
	free(enc);
	free(dec);
}

static void test_decode_lower_case_hex(void **state)
{
	(void)state;
	check_decode("caf%c3%a9", "caf\xc3\xa9", 5);
}

static void test_decode_malformed_kept_literally(void **state)
{
	(void)state;
	check_decode("%G1", "%G1", 3);
	check_decode("50%", "50%", 3);
	check_decode("50%4", "50%4", 4);
	check_decode("%%41", "%A", 2);
	check_decode("%zz%41%", "%zzA%", 5);
	check_decode("%", "%", 1);
	check_decode("", "", 0);
}

static void test_decode_embedded_nul(void **state)
{
	(void)state;
	check_decode("a%00b", "a\0b", 3);
}

static void test_null_out_len(void **state)
{
	(void)state;
	char *e = rpc_percent_encode("x y", 3, NULL);
	assert_string_equal(e, "x y");
	char *d = rpc_percent_decode("%41", 3, NULL);
	assert_string_equal(d, "A");
	free(e);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_ascii_passes),
		cmocka_unit_test(test_percent_sign_escaped),
		cmocka_unit_test(test_controls_and_high_bytes),
		cmocka_unit_test(test_utf8_round_trip),
		cmocka_unit_test(test_all_bytes_round_trip),
		cmocka_unit_test(test_decode_lower_case_hex),
		cmocka_unit_test(test_decode_malformed_kept_literally),
		cmocka_unit_test(test_decode_embedded_nul),
		cmocka_unit_test(test_null_out_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
