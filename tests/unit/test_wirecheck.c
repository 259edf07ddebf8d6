/*
 * test_wirecheck.c - rpc/wirecheck.c: strings that protobuf-c would decode
 * into something other than what was sent are refused, with the field
 * path; everything else passes untouched. Messages are built by hand in
 * wire form from the reflection protos (a string, a oneof, a nested and a
 * repeated nested message), and descriptor.proto's self-nesting
 * DescriptorProto for the depth limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "rpc/wirecheck.h"

#define REQ (&grpc__reflection__v1__server_reflection_request__descriptor)
#define LIST (&grpc__reflection__v1__list_service_response__descriptor)

static int run(const ProtobufCMessageDescriptor *d, const void *wire,
	       size_t len, char *err)
{
	err[0] = '\0';
	return rpc_wirecheck_strings(d, wire, len, err, 256);
}

static void clean_strings_pass(void **state)
{
	/* host = "héllo ✓ 𝄞" (2-, 3- and 4-byte forms), list_services = "". */
	static const uint8_t wire[] = {
		0x0a, 0x0f, 'h', 0xc3, 0xa9, 'l', 'l', 'o', ' ', 0xe2, 0x9c,
		0x93, ' ', 0xf0, 0x9d, 0x84, 0x9e,
		0x3a, 0x00,
	};
	char err[256];

	(void)state;
	assert_int_equal(run(REQ, wire, sizeof(wire), err), 0);
	assert_int_equal(run(REQ, "", 0, err), 0);
	assert_int_equal(run(REQ, NULL, 0, err), 0);
}

static void nul_byte_is_refused(void **state)
{
	static const uint8_t wire[] = { 0x0a, 0x03, 'a', 0x00, 'b' };
	char err[256];

	(void)state;
	assert_int_equal(run(REQ, wire, sizeof(wire), err), -1);
	assert_string_equal(err, "host: contains a NUL byte");
}

static void invalid_utf8_is_refused(void **state)
{
	static const uint8_t *const bad[] = {
		(const uint8_t *)"\xff",             /* never valid */
		(const uint8_t *)"\xc0\xaf",         /* overlong '/' */
		(const uint8_t *)"\xed\xa0\x80",     /* surrogate D800 */
		(const uint8_t *)"\xf4\x90\x80\x80", /* beyond U+10FFFF */
		(const uint8_t *)"\xe2\x9c",         /* cut short */
	};
	static const size_t len[] = { 1, 2, 3, 4, 2 };
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		uint8_t wire[8] = { 0x1a, (uint8_t)len[i] }; /* file_by_filename */

		memcpy(wire + 2, bad[i], len[i]);
		assert_int_equal(run(REQ, wire, 2 + len[i], err), -1);
		assert_string_equal(err, "file_by_filename: not valid UTF-8");
	}
}

static void nested_and_repeated_paths(void **state)
{
	/* file_containing_extension { containing_type = "x\0" } */
	static const uint8_t nested[] = { 0x2a, 0x04, 0x0a, 0x02, 'x', 0x00 };
	/* service { name = "ok" } service { name = "\xff" } */
	static const uint8_t repeated[] = {
		0x0a, 0x04, 0x0a, 0x02, 'o', 'k',
		0x0a, 0x03, 0x0a, 0x01, 0xff,
	};
	char err[256];

	(void)state;
	assert_int_equal(run(REQ, nested, sizeof(nested), err), -1);
	assert_string_equal(err, "file_containing_extension.containing_type: "
				 "contains a NUL byte");
	assert_int_equal(run(LIST, repeated, sizeof(repeated), err), -1);
	assert_string_equal(err, "service[1].name: not valid UTF-8");
}

static void unknown_fields_and_bytes_are_skipped(void **state)
{
	/* field 99 (unknown, length-delimited) with a NUL and invalid UTF-8,
	 * a varint, a fixed64 and a fixed32 unknown field, then a good host. */
	static const uint8_t wire[] = {
		0x9a, 0x06, 0x02, 0x00, 0xff,
		0x98, 0x06, 0x96, 0x01,
		0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8,
		0x9d, 0x06, 1, 2, 3, 4,
		0x0a, 0x01, 'h',
	};
	char err[256];

	(void)state;
	assert_int_equal(run(REQ, wire, sizeof(wire), err), 0);
}

static void malformed_is_left_to_unpack(void **state)
{
	/* Length beyond the end, a cut varint: unpack refuses these with its
	 * own error, the check stays out of the way. */
	static const uint8_t longer[] = { 0x0a, 0x20, 'a' };
	static const uint8_t cut[] = { 0x08, 0xff };
	char err[256];

	(void)state;
	assert_int_equal(run(REQ, longer, sizeof(longer), err), 0);
	assert_int_equal(run(REQ, cut, sizeof(cut), err), 0);
}

/* DescriptorProto nests itself through nested_type (field 3). */
static size_t nest(uint8_t *buf, size_t cap, int levels)
{
	uint8_t tmp[1024];
	size_t n = 0;

	buf[n++] = 0x0a;   /* name = "x" */
	buf[n++] = 0x01;
	buf[n++] = 'x';
	for (int i = 0; i < levels; i++) {
		size_t h = 0;

		tmp[h++] = 0x1a;
		/* varint length */
		for (size_t v = n; ; v >>= 7) {
			tmp[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
			if (v <= 0x7f)
				break;
		}
		assert_true(h + n <= cap);
		memmove(buf + h, buf, n);
		memcpy(buf, tmp, h);
		n += h;
	}
	return n;
}

static void deep_nesting_is_refused(void **state)
{
	static uint8_t wire[1024];
	const ProtobufCMessageDescriptor *d =
		&google__protobuf__descriptor_proto__descriptor;
	char err[256];
	size_t n;

	(void)state;
	n = nest(wire, sizeof(wire), RPC_WIRECHECK_MAX_DEPTH);
	assert_int_equal(run(d, wire, n, err), 0);
	n = nest(wire, sizeof(wire), RPC_WIRECHECK_MAX_DEPTH + 1);
	assert_int_equal(run(d, wire, n, err), -1);
	assert_non_null(strstr(err, "nested deeper than"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clean_strings_pass),
		cmocka_unit_test(nul_byte_is_refused),
		cmocka_unit_test(invalid_utf8_is_refused),
		cmocka_unit_test(nested_and_repeated_paths),
		cmocka_unit_test(unknown_fields_and_bytes_are_skipped),
		cmocka_unit_test(malformed_is_left_to_unpack),
		cmocka_unit_test(deep_nesting_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
