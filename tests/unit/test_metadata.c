/*
 * test_metadata.c - metadata keys, values, wire form and base64.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/metadata.h"
#include "rpc/status.h"

static bool valid(const char *k)
{
	return rpc_metadata_key_valid(k, strlen(k));
}

static void test_key_valid(void **state)
{
	(void)state;
	assert_true(valid("x-request-id"));
	assert_true(valid("authorization"));
	assert_true(valid("trace.id_2"));
	assert_true(valid("a"));
	assert_true(valid("x-trace-bin"));
	assert_true(valid("grpc"));          /* only the "grpc-" prefix is reserved */
	assert_true(valid("my-grpc-thing"));
	assert_true(valid("tea"));           /* "te" itself only */

	assert_false(valid(""));
	assert_false(valid("X-Request-Id")); /* upper-case */
	assert_false(valid(":path"));
	assert_false(valid(":authority"));
	assert_false(valid("grpc-timeout"));
	assert_false(valid("grpc-status"));
	assert_false(valid("grpc-"));
	assert_false(valid("content-type"));
	assert_false(valid("te"));
	assert_false(valid("host"));
	assert_false(valid("connection"));
	assert_false(valid("transfer-encoding"));
	assert_false(valid("upgrade"));
	assert_false(valid("keep-alive"));
	assert_false(valid("proxy-connection"));
	assert_false(valid("user-agent"));
	assert_false(valid("x request"));
	assert_false(valid("x/y"));
	assert_false(valid("caf\xc3\xa9"));
	assert_false(rpc_metadata_key_valid(NULL, 0));
	/* Only len bytes are looked at. */
	assert_true(rpc_metadata_key_valid("abc:def", 3));
	assert_false(rpc_metadata_key_valid("abc", 0));
}

static void test_is_binary(void **state)
{
	(void)state;
	assert_true(rpc_metadata_is_binary("x-trace-bin", 11));
	assert_true(rpc_metadata_is_binary("-bin", 4));
	assert_false(rpc_metadata_is_binary("bin", 3));
	assert_false(rpc_metadata_is_binary("x-binary", 8));
	assert_false(rpc_metadata_is_binary("x-trace-bin", 10));
	assert_false(rpc_metadata_is_binary("x_bin", 5));
}

static void test_add_and_get(void **state)
{
	rpc_metadata md;
	(void)state;

	rpc_metadata_init(&md);
	assert_int_equal(rpc_metadata_add(&md, "x-a", "one", 3), 0);
	assert_int_equal(rpc_metadata_add(&md, "x-a", "two", 3), 0);
	assert_int_equal(rpc_metadata_add(&md, "x-empty", NULL, 0), 0);
	for (int i = 0; i < 20; i++) /* force growth */
		assert_int_equal(rpc_metadata_add(&md, "x-n", "v", 1), 0);
	assert_int_equal(md.count, 23);
	assert_int_equal(md.bytes, 3 + 3 + 3 + 3 + 7 + 20 * (3 + 1));

	const rpc_md_entry *e = rpc_metadata_get(&md, "x-a");
	assert_non_null(e);
	assert_string_equal((const char *)e->value, "one"); /* first wins */
	assert_int_equal(e->value_len, 3);
	e = rpc_metadata_get(&md, "x-empty");
	assert_non_null(e);
	assert_int_equal(e->value_len, 0);
	assert_string_equal((const char *)e->value, "");
	assert_null(rpc_metadata_get(&md, "x-missing"));
	assert_null(rpc_metadata_get(&md, "X-A"));

	rpc_metadata_dispose(&md);
	assert_int_equal(md.count, 0);
	assert_null(md.items);
	rpc_metadata_dispose(&md);
	rpc_metadata_dispose(NULL);
}

static void test_add_rejects(void **state)
{
	rpc_metadata md;
	(void)state;

	rpc_metadata_init(&md);
	assert_int_equal(rpc_metadata_add(&md, "grpc-status", "0", 1),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add(&md, "User-Agent", "x", 1),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add(&md, "user-agent", "x", 1),
			 RPC_ERR_INVALID);
	/* ASCII values must be printable 0x20..0x7E. */
	assert_int_equal(rpc_metadata_add(&md, "x-a", "a\nb", 3),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add(&md, "x-a", "a\0b", 3),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add(&md, "x-a", "tab\t", 4),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add(&md, "x-a", "\x7f", 1),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add(&md, "x-a", "caf\xc3\xa9", 5),
			 RPC_ERR_INVALID);
	assert_int_equal(md.count, 0);
	assert_int_equal(md.bytes, 0);
	/* Edges of the printable range are fine. */
	assert_int_equal(rpc_metadata_add(&md, "x-a", " ~", 2), 0);
	/* ...and binary keys take any bytes. */
	assert_int_equal(rpc_metadata_add(&md, "x-raw-bin", "a\0\n\xff", 4), 0);
	const rpc_md_entry *e = rpc_metadata_get(&md, "x-raw-bin");
	assert_non_null(e);
	assert_int_equal(e->value_len, 4);
	assert_memory_equal(e->value, "a\0\n\xff", 4);
	rpc_metadata_dispose(&md);
}

static void test_add_wire_ascii(void **state)
{
	rpc_metadata md;
	(void)state;

	rpc_metadata_init(&md);
	assert_int_equal(rpc_metadata_add_wire(&md, "x-id", 4, "abc123", 6), 0);
	/* Handlers may read the caller's user agent. */
	assert_int_equal(rpc_metadata_add_wire(&md, "user-agent", 10,
					       "grpc-python/1.51", 16), 0);
	/* Key and value are length-delimited, not NUL-terminated. */
	assert_int_equal(rpc_metadata_add_wire(&md, "x-keyXXX", 5, "valYYY", 3),
			 0);
	assert_int_equal(rpc_metadata_add_wire(&md, "grpc-timeout", 12, "1S", 2),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add_wire(&md, ":path", 5, "/a/b", 4),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add_wire(&md, "te", 2, "trailers", 8),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add_wire(&md, "x-id", 4, "a\rb", 3),
			 RPC_ERR_INVALID);
	assert_int_equal(md.count, 3);
	assert_string_equal((const char *)rpc_metadata_get(&md, "user-agent")->value,
			    "grpc-python/1.51");
	const rpc_md_entry *e = rpc_metadata_get(&md, "x-key");
	assert_non_null(e);
	assert_string_equal((const char *)e->value, "val");
	rpc_metadata_dispose(&md);
}

static void test_add_wire_binary(void **state)
{
	rpc_metadata md;
	(void)state;

	rpc_metadata_init(&md);
	/* "\x00\x01\xfe\xff" in padded, unpadded and URL-safe forms. */
	assert_int_equal(rpc_metadata_add_wire(&md, "a-bin", 5, "AAH+/w==", 8), 0);
	assert_int_equal(rpc_metadata_add_wire(&md, "b-bin", 5, "AAH+/w", 6), 0);
	assert_int_equal(rpc_metadata_add_wire(&md, "c-bin", 5, "AAH-_w", 6), 0);
	for (size_t i = 0; i < md.count; i++) {
		assert_int_equal(md.items[i].value_len, 4);
		assert_memory_equal(md.items[i].value, "\x00\x01\xfe\xff", 4);
	}
	assert_int_equal(rpc_metadata_add_wire(&md, "e-bin", 5, "", 0), 0);
	assert_int_equal(rpc_metadata_get(&md, "e-bin")->value_len, 0);

	/* Not base64: rejected, nothing appended. */
	size_t before = md.count;
	assert_int_equal(rpc_metadata_add_wire(&md, "d-bin", 5, "AA H", 4),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add_wire(&md, "d-bin", 5, "A", 1),
			 RPC_ERR_INVALID);
	assert_int_equal(rpc_metadata_add_wire(&md, "d-bin", 5, "AA*A", 4),
			 RPC_ERR_INVALID);
	assert_int_equal(md.count, before);
	rpc_metadata_dispose(&md);
}

static void test_wire_value(void **state)
{
	rpc_metadata md;
	const char *out;
	size_t len;
	bool must_free;
	(void)state;

	rpc_metadata_init(&md);
	assert_int_equal(rpc_metadata_add(&md, "x-id", "abc", 3), 0);
	assert_int_equal(rpc_metadata_add(&md, "x-id-bin", "\x00\x01\xfe\xff", 4),
			 0);

	assert_int_equal(rpc_metadata_wire_value(&md.items[0], &out, &len,
						 &must_free), 0);
	assert_false(must_free);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "abc", 3);

	assert_int_equal(rpc_metadata_wire_value(&md.items[1], &out, &len,
						 &must_free), 0);
	assert_true(must_free);
	assert_string_equal(out, "AAH+/w"); /* unpadded on the way out */
	assert_int_equal(len, 6);

	/* What we send, we read back. */
	rpc_metadata back;
	rpc_metadata_init(&back);
	assert_int_equal(rpc_metadata_add_wire(&back, "x-id-bin", 8, out, len),
			 0);
	assert_int_equal(back.items[0].value_len, 4);
	assert_memory_equal(back.items[0].value, "\x00\x01\xfe\xff", 4);
	free((void *)out);
	rpc_metadata_dispose(&back);
	rpc_metadata_dispose(&md);
}

static void check_b64(const char *raw, size_t raw_len, const char *padded,
		      const char *unpadded)
{
	size_t n;
	char *e = rpc_base64_encode((const uint8_t *)raw, raw_len, true, &n);
	assert_non_null(e);
	assert_string_equal(e, padded);
	assert_int_equal(n, strlen(padded));
	free(e);
	e = rpc_base64_encode((const uint8_t *)raw, raw_len, false, &n);
	assert_non_null(e);
	assert_string_equal(e, unpadded);
	assert_int_equal(n, strlen(unpadded));
	free(e);

	const char *forms[] = { padded, unpadded };
	for (int i = 0; i < 2; i++) {
		uint8_t *d = NULL;
		assert_int_equal(rpc_base64_decode(forms[i], strlen(forms[i]),
						   &d, &n), 0);
		assert_int_equal(n, raw_len);
		assert_memory_equal(d, raw, raw_len);
		assert_int_equal(d[n], 0);
		free(d);
	}
}

static void test_base64_rfc4648_vectors(void **state)
{
	(void)state;
	check_b64("", 0, "", "");
	check_b64("f", 1, "Zg==", "Zg");
	check_b64("fo", 2, "Zm8=", "Zm8");
	check_b64("foo", 3, "Zm9v", "Zm9v");
	check_b64("foob", 4, "Zm9vYg==", "Zm9vYg");
	check_b64("fooba", 5, "Zm9vYmE=", "Zm9vYmE");
	check_b64("foobar", 6, "Zm9vYmFy", "Zm9vYmFy");
	check_b64("\xfb\xff\xbf", 3, "+/+/", "+/+/");
}

static void test_base64_url_safe(void **state)
{
	uint8_t *d;
	size_t n;
	(void)state;
	assert_int_equal(rpc_base64_decode("-_-_", 4, &d, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(d, "\xfb\xff\xbf", 3);
	free(d);
}

static void test_base64_all_bytes(void **state)
{
	uint8_t raw[256];
	(void)state;
	for (int i = 0; i < 256; i++)
		raw[i] = (uint8_t)(255 - i);
	for (size_t len = 0; len <= sizeof(raw); len += 37) {
		for (int pad = 0; pad < 2; pad++) {
			size_t en, dn;
			uint8_t *d;
			char *e = rpc_base64_encode(raw, len, pad, &en);
			assert_non_null(e);
			assert_int_equal(rpc_base64_decode(e, en, &d, &dn), 0);
			assert_int_equal(dn, len);
			if (len)
				assert_memory_equal(d, raw, len);
			free(e);
			free(d);
		}
	}
}

static void test_base64_invalid(void **state)
{
	const char *bad[] = {
		"A",        /* one char carries only 6 bits */
		"AAAAA",
		"Zg=",      /* padding present but wrong length */
		"Zg===",
		"====",
		"A===",
		"Z=g=",     /* padding in the middle */
		"Zm9v\n",   /* whitespace */
		" Zm9v",
		"Zm9v!",
		"Zm 9v",
		"Zm9\x80",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t *d = (uint8_t *)"untouched";
		size_t n = 99;
		assert_int_equal(rpc_base64_decode(bad[i], strlen(bad[i]), &d, &n),
				 RPC_ERR_INVALID);
		assert_string_equal((const char *)d, "untouched");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_valid),
		cmocka_unit_test(test_is_binary),
		cmocka_unit_test(test_add_and_get),
		cmocka_unit_test(test_add_rejects),
		cmocka_unit_test(test_add_wire_ascii),
		cmocka_unit_test(test_add_wire_binary),
		cmocka_unit_test(test_wire_value),
		cmocka_unit_test(test_base64_rfc4648_vectors),
		cmocka_unit_test(test_base64_url_safe),
		cmocka_unit_test(test_base64_all_bytes),
		cmocka_unit_test(test_base64_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
