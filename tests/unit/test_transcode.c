/*
 * test_transcode.c - the edge's JSON <-> protobuf transcoder.
 *
 * Messages come from proto/estore/testing/v1/transcode_test.proto (every
 * field kind), transcode_presence.proto (fields with presence) and the
 * account contract (real request shapes). Every error case checks the
 * field path at the start of the message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "edge-proxy/transcode.h"
#include "rpc/arena.h"
#include "estore/account/v1/account.pb-c.h"
#include "estore/testing/v1/transcode_presence.pb-c.h"
#include "estore/testing/v1/transcode_test.pb-c.h"

typedef Estore__Testing__V1__AllTypes AllTypes;
typedef Estore__Testing__V1__Inner Inner;
typedef Estore__Testing__V1__Presence Presence;

#define ALL (&estore__testing__v1__all_types__descriptor)
#define INNER (&estore__testing__v1__inner__descriptor)
#define PRESENCE (&estore__testing__v1__presence__descriptor)

/* ---- a counting allocator: every test checks nothing is left behind,
 * and a failing one drives the out-of-memory paths ---- */

typedef struct counting {
	long live;        /* allocations not yet freed */
	long total;       /* allocations made */
	long fail_after;  /* allocations that succeed before all fail; -1: never */
} counting;

static void *count_alloc(void *data, size_t size)
{
	counting *ct = data;
	void *p;

	if (ct->fail_after == 0)
		return NULL;
	if (ct->fail_after > 0)
		ct->fail_after--;
	if (!(p = malloc(size ? size : 1)))
		return NULL;
	ct->live++;
	ct->total++;
	return p;
}

static void count_free(void *data, void *p)
{
	counting *ct = data;

	if (p)
		ct->live--;
	free(p);
}

static counting ct;
static ProtobufCAllocator counted = {
	.alloc = count_alloc, .free = count_free, .allocator_data = &ct,
};

static int reset_counter(void **state)
{
	(void)state;
	ct.live = ct.total = 0;
	ct.fail_after = -1;
	return 0;
}

static int check_counter(void **state)
{
	(void)state;
	if (ct.live != 0)
		fail_msg("%ld allocations leaked", ct.live);
	return 0;
}

/* ---- helpers ---- */

static ProtobufCMessage *parse_with(const ProtobufCMessageDescriptor *d,
				    const char *json, const tc_limits *lim)
{
	ProtobufCMessage *m = NULL;
	tc_error err;
	int rc = tc_from_json(d, json, strlen(json), &counted, lim, &m, &err);

	if (rc != 0)
		fail_msg("tc_from_json(%s) = %d: %s", json, rc, err.message);
	assert_non_null(m);
	assert_int_equal(err.code, 0);
	return m;
}

static ProtobufCMessage *parse(const ProtobufCMessageDescriptor *d,
			       const char *json)
{
	return parse_with(d, json, NULL);
}

#define PARSE_ALL(json) ((AllTypes *)parse(ALL, json))

static void drop(void *m)
{
	protobuf_c_message_free_unpacked(m, &counted);
}

static void expect_error_len(const ProtobufCMessageDescriptor *d,
			     const char *json, size_t len,
			     const tc_limits *lim, int code, const char *want)
{
	ProtobufCMessage *m = (ProtobufCMessage *)1;
	tc_error err;
	int rc = tc_from_json(d, json, len, &counted, lim, &m, &err);
	int shown = len < 200 ? (int)len : 200;   /* long texts shown cut */

	if (rc != code || err.code != code || !strstr(err.message, want))
		fail_msg("%.*s: got %d \"%s\", want %d with \"%s\"", shown,
			 json, rc, err.message, code, want);
	assert_null(m);
	if (ct.live != 0)
		fail_msg("%.*s: %ld allocations leaked", shown, json, ct.live);
}

static void expect_error(const ProtobufCMessageDescriptor *d,
			 const char *json, int code, const char *want)
{
	expect_error_len(d, json, strlen(json), NULL, code, want);
}

static char *print(const void *msg)
{
	char *out = NULL;
	size_t len = 0;
	tc_error err;
	int rc = tc_to_json(msg, NULL, &out, &len, &err);

	if (rc != 0)
		fail_msg("tc_to_json = %d: %s", rc, err.message);
	assert_non_null(out);
	assert_int_equal(strlen(out), len);
	return out;
}

static void expect_print(const void *msg, const char *want)
{
	char *out = print(msg);

	assert_string_equal(out, want);
	free(out);
}

static void expect_print_error(const void *msg, const tc_limits *lim,
			       int code, const char *want)
{
	char *out = (char *)1;
	tc_error err;
	int rc = tc_to_json(msg, lim, &out, NULL, &err);

	if (rc != code || !strstr(err.message, want))
		fail_msg("got %d \"%s\", want %d with \"%s\"", rc, err.message,
			 code, want);
	assert_null(out);
}

/* Parses json, prints it back, and checks what one field printed as (up
 * to the next ',' or '}'): every field is printed, so tests look at one. */
static void expect_field_prints(const char *json, const char *key,
				const char *want)
{
	ProtobufCMessage *m = parse(ALL, json);
	char *out = print(m);
	char pat[64];
	const char *p;

	snprintf(pat, sizeof pat, "\"%s\":", key);
	if (!(p = strstr(out, pat)))
		fail_msg("%s: no %s in %s", json, key, out);
	p += strlen(pat);
	if (strncmp(p, want, strlen(want)) != 0 ||
	    (p[strlen(want)] != ',' && p[strlen(want)] != '}'))
		fail_msg("%s: %s printed as %.40s, want %s", json, key, p,
			 want);
	free(out);
	drop(m);
}

/* Two messages are equal when they pack to the same bytes (protobuf-c
 * packs in field order, maps and arrays in their order). */
static void assert_same_message(const ProtobufCMessage *a,
				const ProtobufCMessage *b)
{
	size_t la = protobuf_c_message_get_packed_size(a);
	size_t lb = protobuf_c_message_get_packed_size(b);
	uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);

	assert_int_equal(la, lb);
	protobuf_c_message_pack(a, pa);
	protobuf_c_message_pack(b, pb);
	assert_memory_equal(pa, pb, la);
	free(pa);
	free(pb);
}

/* ---- JSON -> protobuf: scalars ---- */

static void test_scalars(void **state)
{
	AllTypes *m = PARSE_ALL(
		"{\"fInt32\": -7, \"fInt64\": \"-9000000000\", \"fUint32\": 7,"
		" \"fUint64\": \"18446744073709551615\", \"fSint32\": -2147483648,"
		" \"fSint64\": -9223372036854775808, \"fFixed32\": 4294967295,"
		" \"fFixed64\": \"0\", \"fSfixed32\": \"-3\","
		" \"fSfixed64\": 9223372036854775807, \"fFloat\": 1.5,"
		" \"fDouble\": -0.25, \"fBool\": true, \"fString\": \"h\\u00e9\","
		" \"fBytes\": \"aGk=\", \"fEnum\": \"HUE_GREEN\"}");
	(void)state;

	assert_int_equal(m->f_int32, -7);
	assert_true(m->f_int64 == INT64_C(-9000000000));
	assert_int_equal(m->f_uint32, 7);
	assert_true(m->f_uint64 == UINT64_MAX);
	assert_int_equal(m->f_sint32, INT32_MIN);
	assert_true(m->f_sint64 == INT64_MIN);
	assert_true(m->f_fixed32 == UINT32_MAX);
	assert_true(m->f_fixed64 == 0);
	assert_int_equal(m->f_sfixed32, -3);
	assert_true(m->f_sfixed64 == INT64_MAX);
	assert_true(m->f_float == 1.5f);
	assert_true(m->f_double == -0.25);
	assert_true(m->f_bool);
	assert_string_equal(m->f_string, "h\xc3\xa9");
	assert_int_equal(m->f_bytes.len, 2);
	assert_memory_equal(m->f_bytes.data, "hi", 2);
	assert_int_equal(m->f_enum, ESTORE__TESTING__V1__HUE__HUE_GREEN);
	assert_null(m->f_message);
	drop(m);
}

static void test_names(void **state)
{
	AllTypes *m;
	(void)state;

	/* Proto names work as well as lowerCamelCase ones; unknown fields,
	 * whatever they hold, are skipped. */
	m = PARSE_ALL("{\"f_int32\": 1, \"fString\": \"a\", \"f_message\":"
		      " {\"name\": \"n\"}, \"unknown\": {\"deep\": [1, {}]},"
		      " \"FInt32\": \"not me\", \"r_w_int64\": [\"1\"]}");
	assert_int_equal(m->f_int32, 1);
	assert_string_equal(m->f_string, "a");
	assert_string_equal(m->f_message->name, "n");
	assert_int_equal(m->n_r_w_int64, 1);
	assert_true(m->r_w_int64[0]->value == 1);
	drop(m);

	/* One field under both its names. */
	expect_error(ALL, "{\"fInt32\": 1, \"f_int32\": 2}", TC_ERR_INVALID,
		     "f_int32: field given twice");
	/* The same key twice: jansson's check. */
	expect_error(ALL, "{\"fInt32\": 1, \"fInt32\": 2}", TC_ERR_SYNTAX,
		     "duplicate object key");
}

typedef struct int_case {
	const char *json;       /* the value, as JSON */
	const char *error;      /* NULL: accepted */
	const char *printed;    /* how the accepted value prints back */
} int_case;

/* One table per field: "{\"<field>\": <json>}". */
static void run_int_cases(const char *field, const int_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char json[160];

		snprintf(json, sizeof json, "{\"%s\": %s}", field,
			 cases[i].json);
		if (cases[i].error) {
			char want[160];

			snprintf(want, sizeof want, "%s: %s", field,
				 cases[i].error);
			expect_error(ALL, json, TC_ERR_INVALID, want);
		} else {
			expect_field_prints(json, field, cases[i].printed);
		}
	}
}

#define RUN(field, cases) run_int_cases(field, cases, sizeof cases / sizeof *cases)

static void test_int32_widths(void **state)
{
	static const int_case i32[] = {
		{ "2147483647", NULL, "2147483647" },
		{ "-2147483648", NULL, "-2147483648" },
		{ "\"-2147483648\"", NULL, "-2147483648" },
		{ "1.0", NULL, "1" },
		{ "1e2", NULL, "100" },
		{ "\"1e2\"", NULL, "100" },
		{ "-0", NULL, "0" },
		{ "2147483648", "2147483648 is out of range for int32", NULL },
		{ "-2147483649", "-2147483649 is out of range for int32", NULL },
		{ "\"2147483648\"", "\"2147483648\" is out of range for int32", NULL },
		{ "99999999999", "99999999999 is out of range for int32", NULL },
		{ "1.5", "1.5 is not an integer", NULL },
		{ "\"1.5\"", "\"1.5\" is not an integer", NULL },
		{ "\"NaN\"", "\"NaN\" is not an integer", NULL },
		{ "\"Infinity\"", "\"Infinity\" is not an integer", NULL },
		{ "\"1e999\"", "\"1e999\" is out of range for int32", NULL },
		{ "\"abc\"", "\"abc\" is not a number", NULL },
		{ "\" 1\"", "\" 1\" is not a number", NULL },
		{ "\"+1\"", "\"+1\" is not a number", NULL },
		{ "\"0x10\"", "\"0x10\" is not a number", NULL },
		{ "\"\"", "\"\" is not a number", NULL },
		{ "true", "expected a number, got true", NULL },
		{ "[1]", "expected a number, got an array", NULL },
		{ "{}", "expected a number, got an object", NULL },
	};
	static const int_case u32[] = {
		{ "4294967295", NULL, "4294967295" },
		{ "\"4294967295\"", NULL, "4294967295" },
		{ "0", NULL, "0" },
		{ "-0.0", NULL, "0" },
		{ "4294967296", "4294967296 is out of range for uint32", NULL },
		{ "-1", "-1 is out of range for uint32", NULL },
		{ "\"-1\"", "\"-1\" is out of range for uint32", NULL },
	};
	static const int_case s32[] = {
		{ "-2147483648", NULL, "-2147483648" },
		{ "2147483648", "2147483648 is out of range for sint32", NULL },
	};
	static const int_case f32[] = {
		{ "4294967295", NULL, "4294967295" },
		{ "4294967296", "4294967296 is out of range for fixed32", NULL },
		{ "-1", "-1 is out of range for fixed32", NULL },
	};
	static const int_case sf32[] = {
		{ "-2147483648", NULL, "-2147483648" },
		{ "-2147483649", "-2147483649 is out of range for sfixed32", NULL },
	};
	(void)state;

	RUN("fInt32", i32);
	RUN("fUint32", u32);
	RUN("fSint32", s32);
	RUN("fFixed32", f32);
	RUN("fSfixed32", sf32);
}

static void test_int64_widths(void **state)
{
	static const int_case i64[] = {
		{ "\"9223372036854775807\"", NULL, "\"9223372036854775807\"" },
		{ "\"-9223372036854775808\"", NULL, "\"-9223372036854775808\"" },
		{ "9223372036854775807", NULL, "\"9223372036854775807\"" },
		/* Integers are exact: no rounding through a double. */
		{ "9007199254740993", NULL, "\"9007199254740993\"" },
		{ "\"9007199254740993\"", NULL, "\"9007199254740993\"" },
		{ "1e3", NULL, "\"1000\"" },
		{ "\"9223372036854775808\"", "\"9223372036854775808\" is out of range for int64", NULL },
		{ "\"-9223372036854775809\"", "\"-9223372036854775809\" is out of range for int64", NULL },
		{ "\"99999999999999999999999\"", "\"99999999999999999999999\" is out of range for int64", NULL },
		/* A real beyond 2^53 may not be what the client wrote. */
		{ "1e18", "1e+18 is not exact beyond 2^53", NULL },
		{ "\"12345678901234567.0\"", "\"12345678901234567.0\" is not exact beyond 2^53", NULL },
		{ "9.2233720368547758e18", "9.223372036854776e+18 is out of range for int64", NULL },
		{ "\"1.5\"", "\"1.5\" is not an integer", NULL },
		{ "false", "expected a number, got false", NULL },
	};
	static const int_case u64[] = {
		{ "\"18446744073709551615\"", NULL, "\"18446744073709551615\"" },
		{ "\"9223372036854775808\"", NULL, "\"9223372036854775808\"" },
		{ "9223372036854775807", NULL, "\"9223372036854775807\"" },
		{ "\"18446744073709551616\"", "\"18446744073709551616\" is out of range for uint64", NULL },
		{ "\"-1\"", "\"-1\" is out of range for uint64", NULL },
		{ "-1", "-1 is out of range for uint64", NULL },
	};
	static const int_case s64[] = {
		{ "\"-9223372036854775808\"", NULL, "\"-9223372036854775808\"" },
		{ "\"9223372036854775808\"", "\"9223372036854775808\" is out of range for sint64", NULL },
	};
	static const int_case f64[] = {
		{ "\"18446744073709551615\"", NULL, "\"18446744073709551615\"" },
		{ "\"18446744073709551616\"", "\"18446744073709551616\" is out of range for fixed64", NULL },
		{ "-1", "-1 is out of range for fixed64", NULL },
	};
	static const int_case sf64[] = {
		{ "\"-9223372036854775808\"", NULL, "\"-9223372036854775808\"" },
		{ "\"-9223372036854775809\"", "\"-9223372036854775809\" is out of range for sfixed64", NULL },
	};
	(void)state;

	RUN("fInt64", i64);
	RUN("fUint64", u64);
	RUN("fSint64", s64);
	RUN("fFixed64", f64);
	RUN("fSfixed64", sf64);

	/* JSON numbers beyond jansson's long long: a syntax error that tells
	 * the client to send a string. */
	expect_error(ALL, "{\"fUint64\": 18446744073709551615}", TC_ERR_SYNTAX,
		     "as strings");
	expect_error(ALL, "{\"fUint64\": 18446744073709551615}", TC_ERR_SYNTAX,
		     "line 1, column");
	expect_error(ALL, "{\"fInt64\": -9223372036854775809}", TC_ERR_SYNTAX,
		     "outside the signed 64-bit range");
	expect_error(ALL, "{\"fInt32\": 123456789012345678901234567890}",
		     TC_ERR_SYNTAX, "outside the signed 64-bit range");
	expect_error(ALL, "{\"fDouble\": 1e400}", TC_ERR_SYNTAX,
		     "real number overflow");
}

static void test_floats(void **state)
{
	static const int_case f[] = {
		{ "1.5", NULL, "1.5" },
		{ "\"1.5\"", NULL, "1.5" },
		{ "0.1", NULL, "0.1" },
		{ "-3", NULL, "-3" },
		{ "\"NaN\"", NULL, "\"NaN\"" },
		{ "\"Infinity\"", NULL, "\"Infinity\"" },
		{ "\"-Infinity\"", NULL, "\"-Infinity\"" },
		{ "3.4028234663852886e38", NULL, "3.4028235e+38" },
		{ "1e-50", NULL, "0" },
		{ "3.5e38", "3.5e+38 is out of range for float", NULL },
		{ "-1e39", "-1e+39 is out of range for float", NULL },
		{ "\"1e39\"", "\"1e39\" is out of range for float", NULL },
		{ "\"nan\"", "\"nan\" is not a number", NULL },
		{ "\"inf\"", "\"inf\" is not a number", NULL },
		{ "\"Infinity \"", "\"Infinity \" is not a number", NULL },
		{ "\"1.\"", "\"1.\" is not a number", NULL },
		{ "\".5\"", "\".5\" is not a number", NULL },
		{ "true", "expected a number, got true", NULL },
	};
	static const int_case d[] = {
		{ "0.1", NULL, "0.1" },
		{ "\"0.1\"", NULL, "0.1" },
		{ "1e308", NULL, "1e+308" },
		{ "0.30000000000000004", NULL, "0.30000000000000004" },
		{ "123456789012", NULL, "123456789012" },
		{ "\"18446744073709551616\"", NULL, "1.8446744073709552e+19" },
		{ "-0.0", NULL, "-0" },
		{ "\"NaN\"", NULL, "\"NaN\"" },
		{ "\"-Infinity\"", NULL, "\"-Infinity\"" },
		{ "\"1e999\"", "\"1e999\" is out of range for double", NULL },
		{ "\"-1e999\"", "\"-1e999\" is out of range for double", NULL },
		{ "null", NULL, "0" },
		{ "{}", "expected a number, got an object", NULL },
	};
	(void)state;

	RUN("fFloat", f);
	RUN("fDouble", d);
}

static void test_bool_string_bytes(void **state)
{
	static const int_case b[] = {
		{ "true", NULL, "true" },
		{ "false", NULL, "false" },
		{ "\"true\"", "expected true or false, got a string", NULL },
		{ "1", "expected true or false, got a number", NULL },
	};
	static const int_case s[] = {
		{ "\"plain\"", NULL, "\"plain\"" },
		{ "\"\\ud83d\\ude00 \\u00e9\"", NULL, "\"\xf0\x9f\x98\x80 \xc3\xa9\"" },
		{ "\"q\\\"b\\\\n\\n\\u0001\\t\"", NULL, "\"q\\\"b\\\\n\\n\\u0001\\t\"" },
		{ "\"\"", NULL, "\"\"" },
		{ "\"a\\u0000b\"", "strings cannot contain U+0000", NULL },
		{ "5", "expected a string, got a number", NULL },
		{ "[]", "expected a string, got an array", NULL },
	};
	static const int_case y[] = {
		{ "\"aGVsbG8=\"", NULL, "\"aGVsbG8=\"" },
		{ "\"aGVsbG8\"", NULL, "\"aGVsbG8=\"" },
		{ "\"aGVsbA==\"", NULL, "\"aGVsbA==\"" },
		{ "\"aGVsbA\"", NULL, "\"aGVsbA==\"" },
		/* URL-safe alphabet, in and standard out. */
		{ "\"-_-_\"", NULL, "\"+/+/\"" },
		{ "\"+/+/\"", NULL, "\"+/+/\"" },
		{ "\"\"", NULL, "\"\"" },
		{ "\"a\"", "invalid base64 \"a\"", NULL },
		{ "\"aGVsbG8==\"", "invalid base64", NULL },
		{ "\"aGVsbA=\"", "invalid base64", NULL },
		{ "\"aGV=sbG8\"", "invalid base64", NULL },
		{ "\"a$bc\"", "invalid base64", NULL },
		{ "\"aGVs bG8=\"", "invalid base64", NULL },
		{ "\"===\"", "invalid base64", NULL },
		{ "7", "expected a base64 string, got a number", NULL },
	};
	(void)state;

	RUN("fBool", b);
	RUN("fString", s);
	RUN("fBytes", y);
}

static void test_enums(void **state)
{
	static const int_case e[] = {
		{ "\"HUE_RED\"", NULL, "\"HUE_RED\"" },
		{ "2", NULL, "\"HUE_GREEN\"" },
		{ "-1", NULL, "\"HUE_INFRARED\"" },
		{ "\"HUE_INFRARED\"", NULL, "\"HUE_INFRARED\"" },
		/* Open enums: an unknown number is kept, and printed as one. */
		{ "99", NULL, "99" },
		{ "\"HUE_PURPLE\"", "unknown enum value \"HUE_PURPLE\"", NULL },
		{ "\"hue_red\"", "unknown enum value \"hue_red\"", NULL },
		{ "\"2\"", "unknown enum value \"2\"", NULL },
		{ "1.5", "1.5 is not an integer", NULL },
		{ "2147483648", "2147483648 is out of range for enum", NULL },
		{ "true", "expected an enum name or number, got true", NULL },
	};
	(void)state;

	RUN("fEnum", e);
	expect_error(ALL, "{\"rEnum\": [\"HUE_RED\", 1, \"root\"]}",
		     TC_ERR_INVALID, "rEnum[2]: unknown enum value \"root\"");
}

static void test_messages(void **state)
{
	AllTypes *m = PARSE_ALL("{\"fMessage\": {\"name\": \"a\", \"count\": 2,"
				" \"child\": {\"child\": {\"count\": 3}},"
				" \"children\": [{}, {\"name\": \"c\"}]}}");
	(void)state;

	assert_string_equal(m->f_message->name, "a");
	assert_int_equal(m->f_message->count, 2);
	assert_int_equal(m->f_message->child->child->count, 3);
	assert_null(m->f_message->child->child->child);
	assert_int_equal(m->f_message->n_children, 2);
	assert_string_equal(m->f_message->children[0]->name, "");
	assert_string_equal(m->f_message->children[1]->name, "c");
	drop(m);

	m = PARSE_ALL("{\"fMessage\": null, \"fString\": null, \"rInt32\": null,"
		      " \"mStringInt32\": null, \"timestamp\": null}");
	assert_null(m->f_message);
	assert_null(m->timestamp);
	assert_int_equal(m->n_r_int32, 0);
	drop(m);

	expect_error(ALL, "{\"fMessage\": \"x\"}", TC_ERR_INVALID,
		     "fMessage: expected an object, got a string");
	expect_error(ALL, "{\"fMessage\": []}", TC_ERR_INVALID,
		     "fMessage: expected an object, got an array");
	expect_error(ALL, "{\"fMessage\": {\"child\": {\"count\": \"x\"}}}",
		     TC_ERR_INVALID, "fMessage.child.count: \"x\" is not a number");
	expect_error(ALL, "{\"f_message\": {\"children\": [{}, {\"name\": 1}]}}",
		     TC_ERR_INVALID,
		     "f_message.children[1].name: expected a string, got a number");
}

static void test_repeated(void **state)
{
	AllTypes *m = PARSE_ALL(
		"{\"rInt32\": [1, \"-2\"], \"rInt64\": [\"5\", 6],"
		" \"rUint64\": [\"18446744073709551615\"],"
		" \"rFloat\": [0.5, \"NaN\"], \"rBool\": [true, false, true],"
		" \"rString\": [\"a\", \"\", \"c\"], \"rBytes\": [\"AA==\", \"\"],"
		" \"rEnum\": [\"HUE_RED\", 0], \"rMessage\": [{\"count\": 1}, {}],"
		" \"rTimestamp\": [\"1970-01-01T00:00:01Z\"],"
		" \"rDuration\": [\"2s\", \"-1s\"], \"rWInt64\": [\"7\", 8],"
		" \"rDouble\": []}");
	(void)state;

	assert_int_equal(m->n_r_int32, 2);
	assert_int_equal(m->r_int32[1], -2);
	assert_int_equal(m->n_r_int64, 2);
	assert_true(m->r_int64[1] == 6);
	assert_true(m->r_uint64[0] == UINT64_MAX);
	assert_true(isnan(m->r_float[1]));
	assert_int_equal(m->n_r_bool, 3);
	assert_false(m->r_bool[1]);
	assert_int_equal(m->n_r_string, 3);
	assert_string_equal(m->r_string[1], "");
	assert_string_equal(m->r_string[2], "c");
	assert_int_equal(m->r_bytes[0].len, 1);
	assert_int_equal(m->r_bytes[1].len, 0);
	assert_int_equal(m->r_enum[0], ESTORE__TESTING__V1__HUE__HUE_RED);
	assert_int_equal(m->r_message[0]->count, 1);
	assert_true(m->r_timestamp[0]->seconds == 1);
	assert_true(m->r_duration[1]->seconds == -1);
	assert_true(m->r_w_int64[1]->value == 8);
	assert_int_equal(m->n_r_double, 0);
	assert_null(m->r_double);
	drop(m);

	expect_error(ALL, "{\"rInt32\": [1, null]}", TC_ERR_INVALID,
		     "rInt32[1]: null is not allowed in an array");
	expect_error(ALL, "{\"rMessage\": [null]}", TC_ERR_INVALID,
		     "rMessage[0]: null is not allowed in an array");
	expect_error(ALL, "{\"rString\": \"a\"}", TC_ERR_INVALID,
		     "rString: expected an array, got a string");
	expect_error(ALL, "{\"rInt32\": {}}", TC_ERR_INVALID,
		     "rInt32: expected an array, got an object");
	expect_error(ALL, "{\"rInt32\": [1, 2, 4294967296]}", TC_ERR_INVALID,
		     "rInt32[2]: 4294967296 is out of range for int32");
	expect_error(ALL, "{\"rMessage\": [{}, {\"child\": {\"name\": 5}}]}",
		     TC_ERR_INVALID,
		     "rMessage[1].child.name: expected a string, got a number");
	expect_error(ALL, "{\"rString\": [\"a\", \"b\", 3]}", TC_ERR_INVALID,
		     "rString[2]: expected a string, got a number");
	expect_error(ALL, "{\"rTimestamp\": [\"1970-01-01T00:00:00Z\", \"x\"]}",
		     TC_ERR_INVALID,
		     "rTimestamp[1]: invalid RFC 3339 timestamp \"x\"");
	expect_error(ALL, "{\"rWInt64\": [null]}", TC_ERR_INVALID,
		     "rWInt64[0]: null is not allowed");
}

static void test_maps(void **state)
{
	AllTypes *m = PARSE_ALL(
		"{\"mStringInt32\": {\"a\": 1, \"b\": \"2\", \"\": 3},"
		" \"mInt64String\": {\"-9223372036854775808\": \"min\", \"7\": \"\"},"
		" \"mBoolInner\": {\"true\": {\"name\": \"t\"}, \"false\": {}},"
		" \"mUint32Hue\": {\"4294967295\": \"HUE_RED\", \"0\": 2},"
		" \"mSint64Bytes\": {\"-1\": \"AQI=\"},"
		" \"mStringTimestamp\": {\"epoch\": \"1970-01-01T00:00:00Z\"}}");
	(void)state;

	assert_int_equal(m->n_m_string_int32, 3);
	assert_string_equal(m->m_string_int32[0]->key, "a");
	assert_int_equal(m->m_string_int32[1]->value, 2);
	assert_string_equal(m->m_string_int32[2]->key, "");
	assert_true(m->m_int64_string[0]->key == INT64_MIN);
	assert_string_equal(m->m_int64_string[0]->value, "min");
	assert_true(m->m_bool_inner[0]->key);
	assert_string_equal(m->m_bool_inner[0]->value->name, "t");
	assert_false(m->m_bool_inner[1]->key);
	assert_non_null(m->m_bool_inner[1]->value);
	assert_true(m->m_uint32_hue[0]->key == UINT32_MAX);
	assert_int_equal(m->m_uint32_hue[1]->value, 2);
	assert_true(m->m_sint64_bytes[0]->key == -1);
	assert_int_equal(m->m_sint64_bytes[0]->value.len, 2);
	assert_true(m->m_string_timestamp[0]->value->seconds == 0);
	drop(m);

	expect_error(ALL, "{\"mInt64String\": {\"x\": \"a\"}}", TC_ERR_INVALID,
		     "mInt64String[\"x\"]: \"x\" is not a number");
	expect_error(ALL, "{\"mUint32Hue\": {\"-1\": \"HUE_RED\"}}",
		     TC_ERR_INVALID,
		     "mUint32Hue[\"-1\"]: \"-1\" is out of range for uint32");
	expect_error(ALL, "{\"mBoolInner\": {\"yes\": {}}}", TC_ERR_INVALID,
		     "mBoolInner[\"yes\"]: expected true or false");
	expect_error(ALL, "{\"mStringInt32\": {\"a\": null}}", TC_ERR_INVALID,
		     "mStringInt32[\"a\"]: null is not allowed as a map value");
	expect_error(ALL, "{\"mStringInt32\": {\"a\": 1, \"b\": 1.5}}",
		     TC_ERR_INVALID, "mStringInt32[\"b\"]: 1.5 is not an integer");
	expect_error(ALL, "{\"mStringInt32\": [1]}", TC_ERR_INVALID,
		     "mStringInt32: expected an object, got an array");
	expect_error(ALL, "{\"mBoolInner\": {\"true\": {\"count\": []}}}",
		     TC_ERR_INVALID, "mBoolInner[\"true\"].count: expected a number");
	expect_error(ALL, "{\"mUint32Hue\": {\"1\": \"HUE_NONE\"}}",
		     TC_ERR_INVALID,
		     "mUint32Hue[\"1\"]: unknown enum value \"HUE_NONE\"");
	expect_error(ALL, "{\"mStringTimestamp\": {\"t\": \"yesterday\"}}",
		     TC_ERR_INVALID,
		     "mStringTimestamp[\"t\"]: invalid RFC 3339 timestamp");
	/* jansson refuses NUL in keys whatever the flags. */
	expect_error(ALL, "{\"mStringInt32\": {\"a\\u0000b\": 1}}",
		     TC_ERR_SYNTAX, "NUL byte in object key");
}

static void test_oneof(void **state)
{
	AllTypes *m;
	(void)state;

	m = PARSE_ALL("{\"oString\": \"s\"}");
	assert_int_equal(m->choice_case, ESTORE__TESTING__V1__ALL_TYPES__CHOICE_O_STRING);
	assert_string_equal(m->o_string, "s");
	drop(m);
	m = PARSE_ALL("{\"oInner\": {\"count\": 4}}");
	assert_int_equal(m->choice_case, ESTORE__TESTING__V1__ALL_TYPES__CHOICE_O_INNER);
	assert_int_equal(m->o_inner->count, 4);
	drop(m);
	/* null is "not set": it does not take the oneof. */
	m = PARSE_ALL("{\"oString\": null, \"o_int32\": 0}");
	assert_int_equal(m->choice_case, ESTORE__TESTING__V1__ALL_TYPES__CHOICE_O_INT32);
	assert_int_equal(m->o_int32, 0);
	drop(m);
	m = PARSE_ALL("{\"oString\": null}");
	assert_int_equal(m->choice_case, 0);
	drop(m);

	expect_error(ALL, "{\"oString\": \"s\", \"oInt32\": 1}", TC_ERR_INVALID,
		     "oInt32: only one field of a oneof may be set, and oString "
		     "is set too");
	expect_error(ALL, "{\"oInner\": {\"name\": \"x\"}, \"o_string\": \"\"}",
		     TC_ERR_INVALID, "o_string: only one field of a oneof");
	/* A failing member is freed with the message. */
	expect_error(ALL, "{\"oInner\": {\"name\": \"x\", \"count\": \"y\"}}",
		     TC_ERR_INVALID, "oInner.count: \"y\" is not a number");
}

static void test_timestamps(void **state)
{
	static const struct {
		const char *text;
		int64_t seconds;
		int32_t nanos;
		const char *printed;
	} ok[] = {
		{ "1970-01-01T00:00:00Z", 0, 0, "1970-01-01T00:00:00Z" },
		{ "1972-01-01T10:00:20.021Z", 63108020, 21000000, "1972-01-01T10:00:20.021Z" },
		{ "2024-02-29T23:59:59.5+01:00", 1709247599, 500000000, "2024-02-29T22:59:59.500Z" },
		{ "2024-03-01t00:30:00-01:30", 0, 0, NULL },
		{ "1970-01-01t00:00:00z", 0, 0, "1970-01-01T00:00:00Z" },
		{ "1969-12-31T23:59:59.000001Z", -1, 1000, "1969-12-31T23:59:59.000001Z" },
		{ "2000-01-01T00:00:00.123456789Z", 946684800, 123456789, "2000-01-01T00:00:00.123456789Z" },
		{ "2000-01-01T00:00:00.000000000Z", 946684800, 0, "2000-01-01T00:00:00Z" },
		{ "0001-01-01T00:00:00Z", INT64_C(-62135596800), 0, "0001-01-01T00:00:00Z" },
		{ "9999-12-31T23:59:59.999999999Z", INT64_C(253402300799), 999999999, "9999-12-31T23:59:59.999999999Z" },
		{ "1900-03-01T00:00:00Z", INT64_C(-2203891200), 0, "1900-03-01T00:00:00Z" },
		{ "0001-01-01T01:00:00+01:00", INT64_C(-62135596800), 0, "0001-01-01T00:00:00Z" },
	};
	static const struct {
		const char *text, *error;
	} bad[] = {
		{ "2020-13-01T00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "2020-02-30T00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "2021-02-29T00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "1900-02-29T00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T24:00:00Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:60Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:00", "invalid RFC 3339 timestamp" },
		{ "2020-01-01 00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:00.Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:00.1234567891Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:00+0100", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:00+24:00", "invalid RFC 3339 timestamp" },
		{ "2020-1-01T00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "20200-01-01T00:00:00Z", "invalid RFC 3339 timestamp" },
		{ "2020-01-01T00:00:00ZZ", "invalid RFC 3339 timestamp" },
		{ "", "invalid RFC 3339 timestamp" },
		{ "0000-12-31T23:59:59Z", "timestamp \"0000-12-31T23:59:59Z\" is outside 0001-01-01 to 9999-12-31" },
		{ "0001-01-01T00:00:00+00:01", "timestamp \"0001-01-01T00:00:00+00:01\" is outside" },
		{ "9999-12-31T23:59:59-00:01", "timestamp \"9999-12-31T23:59:59-00:01\" is outside" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		char json[128];
		AllTypes *m;

		snprintf(json, sizeof json, "{\"timestamp\": \"%s\"}", ok[i].text);
		m = PARSE_ALL(json);
		if (ok[i].printed) {
			char want[64];

			if (m->timestamp->seconds != ok[i].seconds ||
			    m->timestamp->nanos != ok[i].nanos)
				fail_msg("%s: %lld s %d ns", ok[i].text,
					 (long long)m->timestamp->seconds,
					 m->timestamp->nanos);
			snprintf(want, sizeof want, "\"%s\"", ok[i].printed);
			drop(m);
			expect_field_prints(json, "timestamp", want);
		} else {
			/* 2024-03-01T02:00:00Z */
			assert_true(m->timestamp->seconds == 1709258400);
			drop(m);
		}
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char json[128], want[128];

		snprintf(json, sizeof json, "{\"timestamp\": \"%s\"}", bad[i].text);
		snprintf(want, sizeof want, "timestamp: %s", bad[i].error);
		expect_error(ALL, json, TC_ERR_INVALID, want);
	}
	expect_error(ALL, "{\"timestamp\": 0}", TC_ERR_INVALID,
		     "timestamp: expected a timestamp string, got a number");
	expect_error(ALL, "{\"timestamp\": {\"seconds\": 1}}", TC_ERR_INVALID,
		     "timestamp: expected a timestamp string, got an object");
}

static void test_durations(void **state)
{
	static const int_case d[] = {
		{ "\"1.5s\"", NULL, "\"1.500s\"" },
		{ "\"0s\"", NULL, "\"0s\"" },
		{ "\"-0.5s\"", NULL, "\"-0.500s\"" },
		{ "\"-1.000001s\"", NULL, "\"-1.000001s\"" },
		{ "\"0.000000001s\"", NULL, "\"0.000000001s\"" },
		{ "\"315576000000s\"", NULL, "\"315576000000s\"" },
		{ "\"-315576000000.999999999s\"", NULL, "\"-315576000000.999999999s\"" },
		{ "\"315576000001s\"", "duration \"315576000001s\" is beyond 10000 years", NULL },
		{ "\"99999999999999999999999s\"", "duration \"99999999999999999999999s\" is beyond 10000 years", NULL },
		{ "\"1.5\"", "invalid duration \"1.5\"", NULL },
		{ "\"1.0000000001s\"", "invalid duration", NULL },
		{ "\"+1s\"", "invalid duration", NULL },
		{ "\"s\"", "invalid duration", NULL },
		{ "\"1.s\"", "invalid duration", NULL },
		{ "\"1 s\"", "invalid duration", NULL },
		{ "\"1m\"", "invalid duration", NULL },
		{ "1.5", "expected a duration string, got a number", NULL },
	};
	(void)state;

	RUN("duration", d);
}

static void test_field_masks(void **state)
{
	AllTypes *m = PARSE_ALL("{\"fieldMask\": \"displayName,preferences.locale,a\"}");
	(void)state;

	assert_int_equal(m->field_mask->n_paths, 3);
	assert_string_equal(m->field_mask->paths[0], "display_name");
	assert_string_equal(m->field_mask->paths[1], "preferences.locale");
	assert_string_equal(m->field_mask->paths[2], "a");
	drop(m);
	m = PARSE_ALL("{\"field_mask\": \"\"}");
	assert_non_null(m->field_mask);
	assert_int_equal(m->field_mask->n_paths, 0);
	drop(m);

	expect_field_prints("{\"fieldMask\": \"fooBar.bazQux,x\"}", "fieldMask",
			    "\"fooBar.bazQux,x\"");
	expect_field_prints("{\"fieldMask\": \"\"}", "fieldMask", "\"\"");
	expect_error(ALL, "{\"fieldMask\": \"a,,b\"}", TC_ERR_INVALID,
		     "fieldMask: empty path in field mask \"a,,b\"");
	expect_error(ALL, "{\"fieldMask\": \"a,\"}", TC_ERR_INVALID,
		     "fieldMask: empty path");
	expect_error(ALL, "{\"fieldMask\": \"display_name\"}", TC_ERR_INVALID,
		     "fieldMask: field mask path \"display_name\" is not lowerCamelCase");
	expect_error(ALL, "{\"fieldMask\": [\"a\"]}", TC_ERR_INVALID,
		     "fieldMask: expected a field mask string, got an array");
}

static void test_wrappers(void **state)
{
	AllTypes *m = PARSE_ALL(
		"{\"wDouble\": \"NaN\", \"wFloat\": 0.5, \"wInt64\": \"-5\","
		" \"wUint64\": \"18446744073709551615\", \"wInt32\": 0,"
		" \"wUint32\": \"4\", \"wBool\": false, \"wString\": \"\","
		" \"wBytes\": \"AA==\"}");
	char *out;
	(void)state;

	assert_true(isnan(m->w_double->value));
	assert_true(m->w_float->value == 0.5f);
	assert_true(m->w_int64->value == -5);
	assert_true(m->w_uint64->value == UINT64_MAX);
	assert_int_equal(m->w_int32->value, 0);
	assert_int_equal(m->w_uint32->value, 4);
	assert_false(m->w_bool->value);
	assert_string_equal(m->w_string->value, "");
	assert_int_equal(m->w_bytes->value.len, 1);
	out = print(m);
	/* Present wrappers print their value, defaults included. */
	assert_non_null(strstr(out,
		"\"wDouble\":\"NaN\",\"wFloat\":0.5,\"wInt64\":\"-5\","
		"\"wUint64\":\"18446744073709551615\",\"wInt32\":0,\"wUint32\":4,"
		"\"wBool\":false,\"wString\":\"\",\"wBytes\":\"AA==\""));
	free(out);
	drop(m);

	m = PARSE_ALL("{\"wInt32\": null, \"wString\": null}");
	assert_null(m->w_int32);
	assert_null(m->w_string);
	drop(m);

	expect_error(ALL, "{\"wInt32\": {\"value\": 1}}", TC_ERR_INVALID,
		     "wInt32: expected a number, got an object");
	expect_error(ALL, "{\"wBool\": \"true\"}", TC_ERR_INVALID,
		     "wBool: expected true or false, got a string");
	expect_error(ALL, "{\"wUint32\": -1}", TC_ERR_INVALID,
		     "wUint32: -1 is out of range for uint32");
	expect_error(ALL, "{\"wBytes\": \"!\"}", TC_ERR_INVALID,
		     "wBytes: invalid base64");
}

static void test_empty(void **state)
{
	AllTypes *m = PARSE_ALL("{\"empty\": {}}");
	(void)state;

	assert_non_null(m->empty);
	drop(m);
	expect_field_prints("{\"empty\": {\"ignored\": 1}}", "empty", "{}");
	expect_error(ALL, "{\"empty\": 1}", TC_ERR_INVALID,
		     "empty: expected an object, got a number");
}

static void test_presence(void **state)
{
	Presence *p = (Presence *)parse(PRESENCE, "{\"count\": 0, \"label\": \"\","
					" \"kind\": \"PRESENCE_KIND_UNSPECIFIED\","
					" \"flag\": false, \"blob\": \"\"}");
	(void)state;

	assert_true(p->has_count);
	assert_int_equal(p->count, 0);
	assert_string_equal(p->label, "");
	assert_true(p->has_kind);
	assert_true(p->has_flag);
	assert_true(p->has_blob);
	assert_false(p->has_total);
	assert_false(p->has_ratio);
	assert_null(p->child);
	/* Not set: the declared default, which is not printed. */
	assert_string_equal(p->greeting, "hello");
	expect_print(p, "{\"count\":0,\"label\":\"\",\"blob\":\"\","
			"\"kind\":\"PRESENCE_KIND_UNSPECIFIED\",\"flag\":false,"
			"\"values\":[]}");
	drop(p);

	p = (Presence *)parse(PRESENCE, "{\"greeting\": \"hi\", \"ratio\": 0.5,"
			      " \"child\": {}, \"count\": null}");
	assert_false(p->has_count);
	expect_print(p, "{\"ratio\":0.5,\"child\":{\"values\":[]},"
			"\"greeting\":\"hi\",\"values\":[]}");
	drop(p);
}

static void test_top_level_and_syntax(void **state)
{
	static const struct {
		const char *json;
		int code;
		const char *want;
	} cases[] = {
		{ "[]", TC_ERR_INVALID, "expected a JSON object at the top level, got an array" },
		{ "5", TC_ERR_INVALID, "got a number" },
		{ "\"x\"", TC_ERR_INVALID, "got a string" },
		{ "null", TC_ERR_INVALID, "got null" },
		{ "true", TC_ERR_INVALID, "got true" },
		{ "", TC_ERR_SYNTAX, "line 1, column 0" },
		{ "   ", TC_ERR_SYNTAX, "line 1" },
		{ "{", TC_ERR_SYNTAX, "line 1, column 1" },
		{ "{\"fInt32\": 1", TC_ERR_SYNTAX, "line 1, column 12" },
		{ "{\"fString\": \"abc", TC_ERR_SYNTAX, "premature end of input" },
		{ "{\"fInt32\": }", TC_ERR_SYNTAX, "line 1, column 12" },
		{ "{\"fInt32\": 1,}", TC_ERR_SYNTAX, "line 1" },
		{ "{\n\"fInt32\": 1\n\"fBool\": true}", TC_ERR_SYNTAX, "line 3, column 7" },
		{ "{} {}", TC_ERR_SYNTAX, "end of file expected" },
		{ "{'a': 1}", TC_ERR_SYNTAX, "line 1" },
		{ "{\"fInt32\": 01}", TC_ERR_SYNTAX, "line 1" },
		{ "{\"fInt32\": NaN}", TC_ERR_SYNTAX, "line 1" },
		{ "{\"fString\": \"a\nb\"}", TC_ERR_SYNTAX, "line 1, column 14: unexpected newline" },
		{ "{\"a\": 1, \"a\": 1}", TC_ERR_SYNTAX, "duplicate object key" },
		{ "{\"fMessage\": {\"name\": \"a\", \"name\": \"b\"}}", TC_ERR_SYNTAX, "duplicate object key" },
		/* Invalid UTF-8, raw and escaped. */
		{ "{\"fString\": \"\xff\"}", TC_ERR_SYNTAX, "invalid UTF-8" },
		{ "{\"fString\": \"\xc0\xaf\"}", TC_ERR_SYNTAX, "invalid UTF-8" },
		{ "{\"fString\": \"\xed\xa0\x80\"}", TC_ERR_SYNTAX, "invalid UTF-8" },
		{ "{\"fString\": \"\xe2\x82\"}", TC_ERR_SYNTAX, "invalid UTF-8" },
		{ "{\"\xff\": 1}", TC_ERR_SYNTAX, "invalid UTF-8" },
		{ "{\"fString\": \"\\ud800\"}", TC_ERR_SYNTAX, "invalid Unicode" },
		{ "{\"fString\": \"\\udc00x\"}", TC_ERR_SYNTAX, "invalid Unicode" },
		{ "{\"fString\": \"\\ud800\\u0041\"}", TC_ERR_SYNTAX, "invalid Unicode" },
		{ "{\"fString\": \"\\x41\"}", TC_ERR_SYNTAX, "invalid escape" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		expect_error(ALL, cases[i].json, cases[i].code, cases[i].want);
	/* A NUL byte in the text, and a text that is not NUL-terminated. */
	expect_error_len(ALL, "{\"fInt32\": 1}\0", 14, NULL, TC_ERR_SYNTAX,
			 "line 1");
	{
		ProtobufCMessage *m = NULL;
		const char buf[] = "{\"fInt32\": 12}garbage";

		assert_int_equal(tc_from_json(ALL, buf, 14, NULL, NULL, &m,
					      NULL), 0);
		assert_int_equal(((AllTypes *)m)->f_int32, 12);
		protobuf_c_message_free_unpacked(m, NULL);
	}
}

/* {"child": ... n levels ... {}}: n + 1 nested objects. */
static char *nested_children(size_t n, const char *open, const char *close)
{
	size_t lo = strlen(open), lc = strlen(close);
	char *s = malloc(2 + n * (lo + lc) + 1), *p = s;

	*p++ = '{';
	for (size_t i = 0; i < n; i++, p += lo)
		memcpy(p, open, lo);
	for (size_t i = 0; i < n; i++, p += lc)
		memcpy(p, close, lc);
	*p++ = '}';
	*p = '\0';
	return s;
}

static void test_depth(void **state)
{
	tc_limits four = { .max_depth = 4 }, deep = { .max_depth = 60000 };
	char *s;
	ProtobufCMessage *m;
	(void)state;

	/* 32 messages deep is the default limit: accepted, and printable. */
	s = nested_children(31, "\"child\":{", "}");
	m = parse(INNER, s);
	free(print(m));
	drop(m);
	free(s);
	s = nested_children(32, "\"child\":{", "}");
	expect_error(INNER, s, TC_ERR_LIMIT,
		     "child.child.child.child.child.child.child.child.child."
		     "child.child.child.child.child.child.child.child.child."
		     "child.child.child.child.child.child.child.child.child."
		     "child.child.child.child.child: messages nested deeper "
		     "than 32 levels");
	free(s);

	/* Arrays and maps are not levels of their own; their messages are. */
	s = nested_children(3, "\"children\":[{", "}]");
	drop(parse_with(INNER, s, &four));
	free(s);
	/* One level more through arrays is 2 x 4 + 1 JSON levels: refused
	 * on the text already. */
	s = nested_children(4, "\"children\":[{", "}]");
	expect_error_len(INNER, s, strlen(s), &four, TC_ERR_LIMIT,
			 "line 1, column 53: JSON nested deeper than 8 levels");
	free(s);
	s = "{\"mBoolInner\":{\"true\":{\"child\":{\"child\":{}}}}}";
	drop(parse_with(ALL, s, &four));
	s = "{\"mBoolInner\":{\"true\":{\"child\":{\"child\":{\"child\":{}}}}}}";
	expect_error_len(ALL, s, strlen(s), &four, TC_ERR_LIMIT,
			 "mBoolInner[\"true\"].child.child.child: messages nested "
			 "deeper than 4 levels");

	/* The raw text may nest twice the limit, unknown fields included;
	 * brackets in strings do not count. */
	s = "{\"x\":[[[[[[[1]]]]]]]}";
	drop(parse_with(INNER, s, &four));
	s = "{\"x\":[[[[[[[[1]]]]]]]]}";
	expect_error_len(INNER, s, strlen(s), &four, TC_ERR_LIMIT,
			 "line 1, column 13: JSON nested deeper than 8 levels");
	drop(parse_with(INNER, "{\"name\":\"[[[[{{{{[[[[\",\"x\":[[\"\\\"[[[[[[[[\"]]}",
			&four));
	s = "{\n\"x\": {\n\"y\":[[[[[[[[1]]]]]]]]}}";
	expect_error_len(INNER, s, strlen(s), &four, TC_ERR_LIMIT,
			 "line 3, column 11: JSON nested deeper than 8 levels");

	/* Very deep text is refused before jansson parses it. */
	s = malloc(200000);
	memset(s, '[', 100000);
	memset(s + 100000, ']', 100000);
	s[0] = '{';
	memcpy(s + 1, "\"x\":", 4);
	s[200000 - 1] = '}';
	expect_error_len(INNER, s, 200000, NULL, TC_ERR_LIMIT,
			 "JSON nested deeper than 64 levels");
	/* A limit above jansson's own (2048) meets jansson's. */
	expect_error_len(INNER, s, 200000, &deep, TC_ERR_LIMIT,
			 "maximum parsing depth");
	free(s);
}

static void test_unsupported(void **state);

/* ---- protobuf -> JSON ---- */

static void test_print_defaults(void **state)
{
	AllTypes m = ESTORE__TESTING__V1__ALL_TYPES__INIT;
	(void)state;

	/* Every field without presence, at its default; no message fields,
	 * no oneof. */
	expect_print(&m,
		"{\"fInt32\":0,\"fInt64\":\"0\",\"fUint32\":0,\"fUint64\":\"0\","
		"\"fSint32\":0,\"fSint64\":\"0\",\"fFixed32\":0,\"fFixed64\":\"0\","
		"\"fSfixed32\":0,\"fSfixed64\":\"0\",\"fFloat\":0,\"fDouble\":0,"
		"\"fBool\":false,\"fString\":\"\",\"fBytes\":\"\","
		"\"fEnum\":\"HUE_UNSPECIFIED\","
		"\"rInt32\":[],\"rInt64\":[],\"rUint32\":[],\"rUint64\":[],"
		"\"rSint32\":[],\"rSint64\":[],\"rFixed32\":[],\"rFixed64\":[],"
		"\"rSfixed32\":[],\"rSfixed64\":[],\"rFloat\":[],\"rDouble\":[],"
		"\"rBool\":[],\"rString\":[],\"rBytes\":[],\"rEnum\":[],"
		"\"rMessage\":[],"
		"\"mStringInt32\":{},\"mInt64String\":{},\"mBoolInner\":{},"
		"\"mUint32Hue\":{},\"mSint64Bytes\":{},\"mStringTimestamp\":{},"
		"\"rTimestamp\":[],\"rDuration\":[],\"rWInt64\":[]}");

	/* A NULL string prints as "" (it packs as one too). */
	m.f_string = NULL;
	m.choice_case = ESTORE__TESTING__V1__ALL_TYPES__CHOICE_O_INT32;
	{
		char *out = print(&m);

		assert_non_null(strstr(out, "\"fString\":\"\","));
		assert_non_null(strstr(out, "\"oInt32\":0,"));
		free(out);
	}
}

static void test_print_values(void **state)
{
	AllTypes m = ESTORE__TESTING__V1__ALL_TYPES__INIT;
	Inner inner = ESTORE__TESTING__V1__INNER__INIT;
	uint8_t bytes[] = { 0xfb, 0xff, 0x00, 0x41 };
	char *out;
	(void)state;

	m.f_int64 = INT64_MIN;
	m.f_uint64 = UINT64_MAX;
	m.f_float = 0.1f;
	m.f_double = 1.0 / 3;
	m.f_string = "tab\there \"q\" \\ \x01 \xc3\xa9 </script>";
	m.f_bytes.data = bytes;
	m.f_bytes.len = sizeof bytes;
	m.f_enum = 42;
	inner.name = "n";
	m.f_message = &inner;
	m.choice_case = ESTORE__TESTING__V1__ALL_TYPES__CHOICE_O_STRING;
	m.o_string = (char *)protobuf_c_empty_string;
	out = print(&m);
	assert_non_null(strstr(out, "\"fInt64\":\"-9223372036854775808\","));
	assert_non_null(strstr(out, "\"fUint64\":\"18446744073709551615\","));
	assert_non_null(strstr(out, "\"fFloat\":0.1,\"fDouble\":0.3333333333333333,"));
	assert_non_null(strstr(out, "\"fString\":\"tab\\there \\\"q\\\" \\\\ \\u0001 \xc3\xa9 </script>\","));
	assert_non_null(strstr(out, "\"fBytes\":\"+/8AQQ==\","));
	assert_non_null(strstr(out, "\"fEnum\":42,"));
	assert_non_null(strstr(out, "\"fMessage\":{\"name\":\"n\",\"count\":0,\"children\":[]},"));
	/* protobuf-c's shared empty string is a oneof string's default: pack
	 * would not send it, so it is not printed; any other "" is. */
	assert_null(strstr(out, "oString"));
	free(out);
	m.o_string = (char[]){ "" };
	out = print(&m);
	assert_non_null(strstr(out, "\"oString\":\"\""));
	free(out);

	m.f_double = NAN;
	m.f_float = -INFINITY;
	out = print(&m);
	assert_non_null(strstr(out, "\"fFloat\":\"-Infinity\",\"fDouble\":\"NaN\","));
	free(out);
	m.f_double = 1e21;
	m.f_float = 16777216.0f;
	out = print(&m);
	assert_non_null(strstr(out, "\"fFloat\":16777216,\"fDouble\":1e+21,"));
	free(out);

	/* Strings from the wire are not checked by protobuf-c. */
	m.f_string = "bad \xff";
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "fString: string is not valid UTF-8");
	m.f_string = "";
	m.n_r_string = 2;
	m.r_string = (char *[]){ "ok", "\xed\xa0\x80" };
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "rString[1]: string is not valid UTF-8");
	m.n_r_string = 0;
	inner.name = "\xc3";
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "fMessage.name: string is not valid UTF-8");
}

static void test_print_well_known(void **state)
{
	AllTypes m = ESTORE__TESTING__V1__ALL_TYPES__INIT;
	Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
	Google__Protobuf__Duration du = GOOGLE__PROTOBUF__DURATION__INIT;
	Google__Protobuf__FieldMask fm = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
	static const struct {
		int64_t s;
		int32_t ns;
		const char *ts, *du;
	} cases[] = {
		{ 0, 0, "\"1970-01-01T00:00:00Z\"", "\"0s\"" },
		{ 1, 500000000, "\"1970-01-01T00:00:01.500Z\"", "\"1.500s\"" },
		{ 1, 1000, "\"1970-01-01T00:00:01.000001Z\"", "\"1.000001s\"" },
		{ 1, 1, "\"1970-01-01T00:00:01.000000001Z\"", "\"1.000000001s\"" },
		{ -1, 0, "\"1969-12-31T23:59:59Z\"", "\"-1s\"" },
		{ 951782400, 0, "\"2000-02-29T00:00:00Z\"", "\"951782400s\"" },
		{ INT64_C(-62135596800), 0, "\"0001-01-01T00:00:00Z\"", NULL },
		{ INT64_C(253402300799), 999999999, "\"9999-12-31T23:59:59.999999999Z\"", NULL },
		{ INT64_C(315576000000), 999999999, NULL, "\"315576000000.999999999s\"" },
	};
	char *out;
	(void)state;

	m.timestamp = &ts;
	m.duration = &du;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		char want[96];

		ts.seconds = cases[i].ts ? cases[i].s : 0;
		ts.nanos = cases[i].ts ? cases[i].ns : 0;
		du.seconds = cases[i].du ? cases[i].s : 0;
		du.nanos = cases[i].du ? cases[i].ns : 0;
		out = print(&m);
		snprintf(want, sizeof want, "\"timestamp\":%s,\"duration\":%s",
			 cases[i].ts ? cases[i].ts : "\"1970-01-01T00:00:00Z\"",
			 cases[i].du ? cases[i].du : "\"0s\"");
		if (!strstr(out, want))
			fail_msg("want %s in %s", want, out);
		free(out);
	}
	du.seconds = 0;
	du.nanos = -1000000;
	out = print(&m);
	assert_non_null(strstr(out, "\"duration\":\"-0.001s\""));
	free(out);

	du.seconds = 1;
	du.nanos = -1;
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "duration: Duration of 1 s and -1 ns is out of range");
	du.seconds = INT64_C(315576000001);
	du.nanos = 0;
	expect_print_error(&m, NULL, TC_ERR_INVALID, "duration: Duration of");
	du.seconds = 0;
	du.nanos = 1000000000;
	expect_print_error(&m, NULL, TC_ERR_INVALID, "duration: Duration of");
	du.nanos = 0;
	ts.seconds = INT64_C(253402300800);
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "timestamp: Timestamp of 253402300800 s and 0 ns is "
			   "outside 0001-01-01 to 9999-12-31");
	ts.seconds = 0;
	ts.nanos = -1;
	expect_print_error(&m, NULL, TC_ERR_INVALID, "timestamp: Timestamp of");
	ts.nanos = 0;

	m.field_mask = &fm;
	fm.n_paths = 3;
	fm.paths = (char *[]){ "display_name", "preferences.marketing_opt_in", "x" };
	out = print(&m);
	assert_non_null(strstr(out, "\"fieldMask\":\"displayName,preferences.marketingOptIn,x\""));
	free(out);
	fm.paths = (char *[]){ "ok", "fooBar", "x" };
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "fieldMask: field mask path \"fooBar\" has no lowerCamelCase form");
	fm.paths = (char *[]){ "a_1", "b", "c" };
	expect_print_error(&m, NULL, TC_ERR_INVALID, "path \"a_1\" has no");
	fm.paths = (char *[]){ "a__b", "b", "c" };
	expect_print_error(&m, NULL, TC_ERR_INVALID, "path \"a__b\" has no");
	fm.paths = (char *[]){ "a_", "b", "c" };
	expect_print_error(&m, NULL, TC_ERR_INVALID, "path \"a_\" has no");
}

static void test_print_maps(void **state)
{
	AllTypes m = ESTORE__TESTING__V1__ALL_TYPES__INIT;
	Estore__Testing__V1__AllTypes__MStringInt32Entry e[3] = {
		ESTORE__TESTING__V1__ALL_TYPES__MSTRING_INT32_ENTRY__INIT,
		ESTORE__TESTING__V1__ALL_TYPES__MSTRING_INT32_ENTRY__INIT,
		ESTORE__TESTING__V1__ALL_TYPES__MSTRING_INT32_ENTRY__INIT,
	};
	Estore__Testing__V1__AllTypes__MStringInt32Entry *ep[3] = {
		&e[0], &e[1], &e[2],
	};
	Estore__Testing__V1__AllTypes__MBoolInnerEntry b =
		ESTORE__TESTING__V1__ALL_TYPES__MBOOL_INNER_ENTRY__INIT;
	Estore__Testing__V1__AllTypes__MBoolInnerEntry *bp = &b;
	Estore__Testing__V1__AllTypes__MStringTimestampEntry t =
		ESTORE__TESTING__V1__ALL_TYPES__MSTRING_TIMESTAMP_ENTRY__INIT;
	Estore__Testing__V1__AllTypes__MStringTimestampEntry *tp = &t;
	Estore__Testing__V1__AllTypes__MInt64StringEntry i =
		ESTORE__TESTING__V1__ALL_TYPES__MINT64_STRING_ENTRY__INIT;
	Estore__Testing__V1__AllTypes__MInt64StringEntry *ip = &i;
	char *out;
	(void)state;

	e[0].key = "a";
	e[0].value = 1;
	e[1].key = "b\"";
	e[1].value = 2;
	e[2].key = "a";
	e[2].value = 3;
	m.n_m_string_int32 = 3;
	m.m_string_int32 = ep;
	b.key = 1;
	m.n_m_bool_inner = 1;
	m.m_bool_inner = &bp;
	m.n_m_string_timestamp = 1;
	m.m_string_timestamp = &tp;
	i.key = -42;
	i.value = "v";
	m.n_m_int64_string = 1;
	m.m_int64_string = &ip;
	out = print(&m);
	/* The wire may repeat a key; readers keep the last value, and so
	 * does the JSON. Unset message values print as their default. */
	assert_non_null(strstr(out, "\"mStringInt32\":{\"b\\\"\":2,\"a\":3},"));
	assert_non_null(strstr(out, "\"mInt64String\":{\"-42\":\"v\"},"));
	assert_non_null(strstr(out, "\"mBoolInner\":{\"true\":{\"name\":\"\",\"count\":0,\"children\":[]}},"));
	assert_non_null(strstr(out, "\"mStringTimestamp\":{\"\":\"1970-01-01T00:00:00Z\"},"));
	free(out);

	/* Many entries, many repeats: each key once, with its last value. */
	{
		enum { N = 2000 };
		Estore__Testing__V1__AllTypes__MStringInt32Entry *big[N];
		Estore__Testing__V1__AllTypes__MStringInt32Entry *store = calloc(N, sizeof *store);
		char (*keys)[8] = calloc(N, 8);
		AllTypes *back;

		for (int k = 0; k < N; k++) {
			Estore__Testing__V1__AllTypes__MStringInt32Entry init =
				ESTORE__TESTING__V1__ALL_TYPES__MSTRING_INT32_ENTRY__INIT;

			store[k] = init;
			snprintf(keys[k], 8, "k%d", k % 500);
			store[k].key = keys[k];
			store[k].value = k;
			big[k] = &store[k];
		}
		m.n_m_string_int32 = N;
		m.m_string_int32 = big;
		out = print(&m);
		back = PARSE_ALL(out);
		assert_int_equal(back->n_m_string_int32, 500);
		for (size_t k = 0; k < 500; k++)
			assert_int_equal(back->m_string_int32[k]->value,
					 N - 500 + (int)k);
		drop(back);
		free(out);
		free(store);
		free(keys);
	}

	m.n_m_string_int32 = 1;
	e[0].key = "\xff";
	m.m_string_int32 = ep;
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "mStringInt32[\"\xff\"]: string is not valid UTF-8");
	ep[0] = NULL;
	expect_print_error(&m, NULL, TC_ERR_INVALID,
			   "mStringInt32: map entry 0 is NULL");
}

static void test_print_depth(void **state)
{
	enum { N = 40 };
	Inner chain[N];
	AllTypes m = ESTORE__TESTING__V1__ALL_TYPES__INIT;
	tc_limits lim = { .max_depth = 64 };
	char *out;
	(void)state;

	for (int i = 0; i < N; i++) {
		Inner init = ESTORE__TESTING__V1__INNER__INIT;

		chain[i] = init;
		if (i + 1 < N)
			chain[i].child = &chain[i + 1];
	}
	m.f_message = &chain[0];
	/* AllTypes is level 1, chain[0] level 2: chain[31] is at 33. */
	expect_print_error(&m, NULL, TC_ERR_LIMIT,
			   "fMessage.child.child.child.child.child.child.child."
			   "child.child.child.child.child.child.child.child.child."
			   "child.child.child.child.child.child.child.child.child."
			   "child.child.child.child.child.child: messages nested "
			   "deeper than 32 levels");
	assert_int_equal(tc_to_json(&m.base, &lim, &out, NULL, NULL), 0);
	free(out);
	/* At the limit, its empty arrays print. */
	chain[30].child = NULL;
	out = print(&m);
	assert_non_null(strstr(out, "{\"name\":\"\",\"count\":0,\"children\":[]}"));
	free(out);
}

/* ---- round trips ---- */

static const char everything[] =
	"{\"fInt32\":-1,\"fInt64\":\"-2\",\"fUint32\":3,\"fUint64\":\"18446744073709551615\","
	"\"fSint32\":-5,\"fSint64\":\"-6\",\"fFixed32\":7,\"fFixed64\":\"8\","
	"\"fSfixed32\":-9,\"fSfixed64\":\"-10\",\"fFloat\":1.25,\"fDouble\":-2.5e-300,"
	"\"fBool\":true,\"fString\":\"\xe2\x82\xac \\\"x\\\"\\n\",\"fBytes\":\"AAEC/w==\","
	"\"fEnum\":\"HUE_INFRARED\","
	"\"fMessage\":{\"name\":\"m\",\"count\":1,\"child\":{\"name\":\"c\",\"count\":0,\"children\":[]},"
	"\"children\":[{\"name\":\"\",\"count\":2,\"children\":[]}]},"
	"\"rInt32\":[1,-1],\"rInt64\":[\"9223372036854775807\"],\"rUint32\":[4294967295],"
	"\"rUint64\":[\"0\"],\"rSint32\":[-2147483648],\"rSint64\":[\"-9223372036854775808\"],"
	"\"rFixed32\":[0],\"rFixed64\":[\"1\"],\"rSfixed32\":[2],\"rSfixed64\":[\"3\"],"
	"\"rFloat\":[\"NaN\",\"Infinity\",0.1],\"rDouble\":[\"-Infinity\",1e+300],"
	"\"rBool\":[false],\"rString\":[\"a\",\"\"],\"rBytes\":[\"\",\"AA==\"],"
	"\"rEnum\":[\"HUE_RED\",7],\"rMessage\":[{\"name\":\"r\",\"count\":0,\"children\":[]}],"
	"\"mStringInt32\":{\"k\":1,\"\":0},\"mInt64String\":{\"-1\":\"neg\"},"
	"\"mBoolInner\":{\"false\":{\"name\":\"\",\"count\":0,\"children\":[]}},"
	"\"mUint32Hue\":{\"3\":\"HUE_GREEN\",\"4\":5},\"mSint64Bytes\":{\"0\":\"/w==\"},"
	"\"mStringTimestamp\":{\"t\":\"2024-05-06T07:08:09.010Z\"},"
	"\"oInner\":{\"name\":\"o\",\"count\":0,\"children\":[]},"
	"\"timestamp\":\"1999-12-31T23:59:59.999999Z\",\"duration\":\"-3.000000003s\","
	"\"fieldMask\":\"a.bC,d\",\"empty\":{},"
	"\"rTimestamp\":[\"0001-01-01T00:00:00Z\"],\"rDuration\":[\"0s\"],"
	"\"wDouble\":0,\"wFloat\":\"NaN\",\"wInt64\":\"0\",\"wUint64\":\"5\",\"wInt32\":-1,"
	"\"wUint32\":0,\"wBool\":true,\"wString\":\"w\",\"wBytes\":\"\","
	"\"rWInt64\":[\"-1\",\"0\"]}";

static void test_round_trip(void **state)
{
	ProtobufCMessage *a, *b;
	char *out, *again;
	(void)state;

	/* JSON -> message -> JSON gives the canonical text back... */
	a = parse(ALL, everything);
	out = print(a);
	assert_string_equal(out, everything);
	/* ...and message -> JSON -> message gives the message back. */
	b = parse(ALL, out);
	assert_same_message(a, b);
	again = print(b);
	assert_string_equal(again, out);
	free(again);
	free(out);
	drop(b);

	/* Through the wire format too: what a service would send. */
	{
		size_t len = protobuf_c_message_get_packed_size(a);
		uint8_t *buf = malloc(len);
		ProtobufCMessage *c;

		protobuf_c_message_pack(a, buf);
		c = protobuf_c_message_unpack(ALL, NULL, len, buf);
		assert_non_null(c);
		out = print(c);
		assert_string_equal(out, everything);
		free(out);
		protobuf_c_message_free_unpacked(c, NULL);
		free(buf);
	}
	drop(a);

	/* Proto names and non-canonical forms come back canonical. */
	a = parse(ALL, "{\"f_int64\": 5, \"f_float\": \"1e1\", \"f_bytes\": \"-_8\","
		       " \"timestamp\": \"2000-01-01T01:00:00+01:00\", \"duration\": \"1.5s\"}");
	out = print(a);
	assert_non_null(strstr(out, "\"fInt64\":\"5\""));
	assert_non_null(strstr(out, "\"fFloat\":10,"));
	assert_non_null(strstr(out, "\"fBytes\":\"+/8=\""));
	assert_non_null(strstr(out, "\"timestamp\":\"2000-01-01T00:00:00Z\",\"duration\":\"1.500s\""));
	b = parse(ALL, out);
	assert_same_message(a, b);
	free(out);
	drop(a);
	drop(b);

	/* Presence survives the round trip. */
	a = parse(PRESENCE, "{\"count\":0,\"child\":{\"label\":\"x\"},\"values\":[1]}");
	out = print(a);
	assert_string_equal(out, "{\"count\":0,\"child\":{\"label\":\"x\",\"values\":[]},\"values\":[1]}");
	b = parse(PRESENCE, out);
	assert_same_message(a, b);
	free(out);
	drop(a);
	drop(b);
}

/* ---- the contracts the edge will serve ---- */

static void test_account_messages(void **state)
{
	Estore__Account__V1__UpdateAccountRequest *u;
	char *out;
	(void)state;

	u = (Estore__Account__V1__UpdateAccountRequest *)parse(
		&estore__account__v1__update_account_request__descriptor,
		"{\"account\": {\"id\": \"me\", \"displayName\": \"Ann\","
		" \"roles\": [\"ROLE_VENDOR\"], \"preferences\": {\"locale\": \"en-GB\","
		" \"marketing_opt_in\": true}, \"createTime\": \"2024-01-01T00:00:00Z\"},"
		" \"updateMask\": \"displayName,preferences.marketingOptIn\"}");
	assert_string_equal(u->account->display_name, "Ann");
	assert_int_equal(u->account->roles[0], ESTORE__ACCOUNT__V1__ROLE__ROLE_VENDOR);
	assert_true(u->account->preferences->marketing_opt_in);
	assert_string_equal(u->update_mask->paths[1], "preferences.marketing_opt_in");
	out = print(u);
	assert_string_equal(out,
		"{\"account\":{\"id\":\"me\",\"email\":\"\",\"displayName\":\"Ann\","
		"\"roles\":[\"ROLE_VENDOR\"],\"preferences\":{\"locale\":\"en-GB\","
		"\"currency\":\"\",\"marketingOptIn\":true},"
		"\"createTime\":\"2024-01-01T00:00:00Z\"},"
		"\"updateMask\":\"displayName,preferences.marketingOptIn\"}");
	free(out);
	drop(u);

	expect_error(&estore__account__v1__update_account_request__descriptor,
		     "{\"account\": {\"preferences\": {\"locale\": 5}}}",
		     TC_ERR_INVALID,
		     "account.preferences.locale: expected a string, got a number");
	expect_error(&estore__account__v1__create_account_request__descriptor,
		     "{\"roles\": [\"ROLE_CUSTOMER\", \"ROLE_ADMIN\", \"root\"]}",
		     TC_ERR_INVALID, "roles[2]: unknown enum value \"root\"");
	expect_error(&estore__account__v1__update_account_request__descriptor,
		     "{\"account\": {\"createTime\": \"yesterday\"}}",
		     TC_ERR_INVALID,
		     "account.createTime: invalid RFC 3339 timestamp");
	expect_error(&estore__account__v1__list_accounts_request__descriptor,
		     "{\"page_size\": 99999999999}", TC_ERR_INVALID,
		     "page_size: 99999999999 is out of range for int32");
	expect_error(&estore__account__v1__list_accounts_request__descriptor,
		     "{\"pageSize\": \"ten\"}", TC_ERR_INVALID,
		     "pageSize: \"ten\" is not a number");
}

/* ---- path and query parameters ---- */

static int merge(void *msg, const char *path, const char *value)
{
	return tc_merge_field_from_string(msg, path, value, strlen(value),
					  &counted, NULL, NULL);
}

static void expect_merge_error(void *msg, const char *path, const char *value,
			       const tc_limits *lim, int code, const char *want)
{
	tc_error err;
	int rc = tc_merge_field_from_string(msg, path, value, strlen(value),
					    &counted, lim, &err);

	if (rc != code || err.code != code || !strstr(err.message, want))
		fail_msg("%s=%s: got %d \"%s\", want %d with \"%s\"", path,
			 value, rc, err.message, code, want);
}

static void test_merge(void **state)
{
	AllTypes *m = PARSE_ALL("{\"fString\": \"old\", \"rString\": [\"x\"]}");
	char *out;
	(void)state;

	assert_int_equal(merge(m, "fInt32", "10"), 0);
	assert_int_equal(merge(m, "f_int64", "-9223372036854775808"), 0);
	assert_int_equal(merge(m, "fUint64", "18446744073709551615"), 0);
	assert_int_equal(merge(m, "fDouble", "NaN"), 0);
	assert_int_equal(merge(m, "fFloat", "1e1"), 0);
	assert_int_equal(merge(m, "fBool", "true"), 0);
	/* Replaced: the old string is freed (the leak check would tell). */
	assert_int_equal(merge(m, "fString", "new value, not JSON: \"q\""), 0);
	assert_int_equal(merge(m, "fString", "caf\xc3\xa9"), 0);
	assert_int_equal(merge(m, "fBytes", "-_8"), 0);
	assert_int_equal(merge(m, "fBytes", "aGk"), 0);
	assert_int_equal(merge(m, "fEnum", "HUE_RED"), 0);
	assert_int_equal(merge(m, "fMessage.name", "deep"), 0);
	assert_int_equal(merge(m, "f_message.child.count", "3"), 0);
	assert_int_equal(merge(m, "fMessage.child.name", "c"), 0);
	assert_int_equal(merge(m, "rString", "y"), 0);
	assert_int_equal(merge(m, "r_string", ""), 0);
	assert_int_equal(merge(m, "rEnum", "HUE_GREEN"), 0);
	assert_int_equal(merge(m, "rEnum", "-1"), 0);
	assert_int_equal(merge(m, "rEnum", "12"), 0);
	assert_int_equal(merge(m, "rInt64", "1"), 0);
	assert_int_equal(merge(m, "rBytes", "AA=="), 0);
	assert_int_equal(merge(m, "timestamp", "2024-01-01T00:00:00+02:00"), 0);
	assert_int_equal(merge(m, "timestamp", "2024-01-01T00:00:00Z"), 0);
	assert_int_equal(merge(m, "duration", "-0.25s"), 0);
	assert_int_equal(merge(m, "fieldMask", "a.bC,d"), 0);
	assert_int_equal(merge(m, "rTimestamp", "1970-01-01T00:00:00Z"), 0);
	assert_int_equal(merge(m, "wInt64", "-5"), 0);
	assert_int_equal(merge(m, "wBool", "false"), 0);
	assert_int_equal(merge(m, "wString", "w"), 0);
	assert_int_equal(merge(m, "wString", "w2"), 0);
	assert_int_equal(merge(m, "rWInt64", "6"), 0);
	assert_int_equal(merge(m, "oInner.name", "o"), 0);
	assert_int_equal(merge(m, "oInner.count", "2"), 0);

	assert_int_equal(m->f_int32, 10);
	assert_true(m->f_int64 == INT64_MIN);
	assert_true(m->f_uint64 == UINT64_MAX);
	assert_true(isnan(m->f_double));
	assert_true(m->f_float == 10.0f);
	assert_true(m->f_bool);
	assert_string_equal(m->f_string, "caf\xc3\xa9");
	assert_int_equal(m->f_bytes.len, 2);
	assert_int_equal(m->f_enum, ESTORE__TESTING__V1__HUE__HUE_RED);
	assert_string_equal(m->f_message->name, "deep");
	assert_int_equal(m->f_message->child->count, 3);
	assert_string_equal(m->f_message->child->name, "c");
	assert_int_equal(m->n_r_string, 3);
	assert_string_equal(m->r_string[0], "x");
	assert_string_equal(m->r_string[1], "y");
	assert_string_equal(m->r_string[2], "");
	assert_int_equal(m->n_r_enum, 3);
	assert_int_equal(m->r_enum[1], -1);
	assert_int_equal(m->r_enum[2], 12);
	assert_true(m->timestamp->seconds == 1704067200);
	assert_true(m->duration->nanos == -250000000);
	assert_int_equal(m->field_mask->n_paths, 2);
	assert_string_equal(m->field_mask->paths[0], "a.b_c");
	assert_int_equal(m->n_r_timestamp, 1);
	assert_true(m->w_int64->value == -5);
	assert_non_null(m->w_bool);
	assert_string_equal(m->w_string->value, "w2");
	assert_int_equal(m->n_r_w_int64, 1);
	assert_int_equal(m->choice_case, ESTORE__TESTING__V1__ALL_TYPES__CHOICE_O_INNER);
	assert_string_equal(m->o_inner->name, "o");
	assert_int_equal(m->o_inner->count, 2);
	out = print(m);
	assert_non_null(strstr(out, "\"fString\":\"caf\xc3\xa9\",\"fBytes\":\"aGk=\","));
	assert_non_null(strstr(out, "\"rString\":[\"x\",\"y\",\"\"],"));
	assert_non_null(strstr(out, "\"wInt64\":\"-5\",\"wBool\":false,\"wString\":\"w2\","));
	free(out);
	drop(m);

	/* The value need not be NUL-terminated. */
	m = PARSE_ALL("{}");
	assert_int_equal(tc_merge_field_from_string(&m->base, "fInt32", "123456",
						    3, &counted, NULL, NULL), 0);
	assert_int_equal(m->f_int32, 123);
	assert_int_equal(tc_merge_field_from_string(&m->base, "fString", "abc",
						    0, &counted, NULL, NULL), 0);
	assert_string_equal(m->f_string, "");
	/* A oneof member replaces itself. */
	assert_int_equal(merge(m, "oString", "a"), 0);
	assert_int_equal(merge(m, "oString", "b"), 0);
	assert_string_equal(m->o_string, "b");
	drop(m);

	/* Proto2 presence: setting marks the field present. */
	{
		Presence *p = (Presence *)parse(PRESENCE, "{}");

		assert_int_equal(merge(p, "count", "0"), 0);
		assert_int_equal(merge(p, "greeting", "hey"), 0);
		assert_int_equal(merge(p, "child.kind", "PRESENCE_KIND_LARGE"), 0);
		assert_int_equal(merge(p, "blob", ""), 0);
		assert_true(p->has_count);
		assert_true(p->has_blob);
		assert_true(p->child->has_kind);
		expect_print(p, "{\"count\":0,\"blob\":\"\",\"child\":{\"kind\":"
				"\"PRESENCE_KIND_LARGE\",\"values\":[]},"
				"\"greeting\":\"hey\",\"values\":[]}");
		drop(p);
	}
}

static void test_merge_errors(void **state)
{
	AllTypes *m = PARSE_ALL("{\"oString\": \"set\"}");
	tc_limits three = { .max_depth = 3 };
	char *before, *after;
	(void)state;

	before = print(m);
	expect_merge_error(m, "nope", "1", NULL, TC_ERR_INVALID,
			   "nope: no such field in estore.testing.v1.AllTypes");
	expect_merge_error(m, "fMessage.nope", "1", NULL, TC_ERR_INVALID,
			   "fMessage.nope: no such field in estore.testing.v1.Inner");
	expect_merge_error(m, "", "1", NULL, TC_ERR_INVALID, "empty field name");
	expect_merge_error(m, "fMessage..name", "1", NULL, TC_ERR_INVALID,
			   "fMessage.: empty field name");
	expect_merge_error(m, "fMessage.", "1", NULL, TC_ERR_INVALID,
			   "empty field name");
	expect_merge_error(m, "fInt32.x", "1", NULL, TC_ERR_INVALID,
			   "fInt32: not a singular message");
	expect_merge_error(m, "rMessage.name", "1", NULL, TC_ERR_INVALID,
			   "rMessage: not a singular message");
	expect_merge_error(m, "timestamp.seconds", "1", NULL, TC_ERR_INVALID,
			   "timestamp: not a singular message");
	expect_merge_error(m, "mStringInt32", "1", NULL, TC_ERR_INVALID,
			   "mStringInt32: a map cannot be set from a parameter");
	expect_merge_error(m, "fMessage", "x", NULL, TC_ERR_INVALID,
			   "fMessage: a message: name one of its fields");
	expect_merge_error(m, "empty", "", NULL, TC_ERR_INVALID,
			   "empty: a message");
	expect_merge_error(m, "fInt32", "abc", NULL, TC_ERR_INVALID,
			   "fInt32: \"abc\" is not a number");
	expect_merge_error(m, "fInt32", "", NULL, TC_ERR_INVALID,
			   "fInt32: \"\" is not a number");
	expect_merge_error(m, "fInt32", "4294967296", NULL, TC_ERR_INVALID,
			   "fInt32: \"4294967296\" is out of range for int32");
	expect_merge_error(m, "fUint32", "-1", NULL, TC_ERR_INVALID,
			   "fUint32: \"-1\" is out of range for uint32");
	expect_merge_error(m, "fBool", "1", NULL, TC_ERR_INVALID,
			   "fBool: expected true or false, got \"1\"");
	expect_merge_error(m, "fEnum", "HUE_PURPLE", NULL, TC_ERR_INVALID,
			   "fEnum: unknown enum value \"HUE_PURPLE\"");
	expect_merge_error(m, "fString", "\xff", NULL, TC_ERR_INVALID,
			   "fString: not valid UTF-8");
	expect_merge_error(m, "fBytes", "a", NULL, TC_ERR_INVALID,
			   "fBytes: invalid base64 \"a\"");
	expect_merge_error(m, "timestamp", "now", NULL, TC_ERR_INVALID,
			   "timestamp: invalid RFC 3339 timestamp \"now\"");
	expect_merge_error(m, "duration", "1h", NULL, TC_ERR_INVALID,
			   "duration: invalid duration \"1h\"");
	expect_merge_error(m, "wInt32", "1.5", NULL, TC_ERR_INVALID,
			   "wInt32: \"1.5\" is not an integer");
	expect_merge_error(m, "rTimestamp", "x", NULL, TC_ERR_INVALID,
			   "rTimestamp: invalid RFC 3339 timestamp");
	/* Nothing is created for a path whose value fails. */
	expect_merge_error(m, "fMessage.child.count", "x", NULL, TC_ERR_INVALID,
			   "fMessage.child.count: \"x\" is not a number");
	expect_merge_error(m, "oInt32", "1", NULL, TC_ERR_INVALID,
			   "oInt32: only one field of a oneof may be set, and "
			   "oString is set");
	expect_merge_error(m, "oInner.name", "x", NULL, TC_ERR_INVALID,
			   "oInner: only one field of a oneof");
	expect_merge_error(m, "fMessage.child.child.count", "1", &three,
			   TC_ERR_LIMIT,
			   "fMessage.child.child: messages nested deeper than 3 levels");
	after = print(m);
	assert_string_equal(before, after);
	assert_null(m->f_message);
	free(before);
	free(after);
	/* At the limit is fine. */
	assert_int_equal(tc_merge_field_from_string(&m->base, "fMessage.child.count",
						    "1", 1, &counted, &three,
						    NULL), 0);
	drop(m);
}

/* ---- memory: arenas, and every allocation failing in turn ---- */

static void test_arena(void **state)
{
	rpc_arena *a = rpc_arena_new(0);
	ProtobufCAllocator pa;
	ProtobufCMessage *m = NULL;
	char *out;
	(void)state;

	rpc_arena_pb_allocator(a, &pa);
	assert_int_equal(tc_from_json(ALL, everything, strlen(everything), &pa,
				      NULL, &m, NULL), 0);
	assert_int_equal(tc_merge_field_from_string(m, "fMessage.child.name",
						    "x", 1, &pa, NULL, NULL), 0);
	assert_int_equal(tc_merge_field_from_string(m, "rInt32", "5", 1, &pa,
						    NULL, NULL), 0);
	out = print(m);
	assert_non_null(strstr(out, "\"rInt32\":[1,-1,5]"));
	free(out);
	/* Dropping the arena frees it all; free_unpacked is a no-op there. */
	protobuf_c_message_free_unpacked(m, &pa);
	rpc_arena_free(a);
}

static void test_allocation_failures(void **state)
{
	long needed;
	(void)state;

	/* Learn how many allocations a full parse makes, then fail each in
	 * turn: every failure must be TC_ERR_NOMEM and leave nothing. */
	drop(parse(ALL, everything));
	needed = ct.total;
	assert_true(needed > 50);
	for (long k = 0; k < needed; k++) {
		ProtobufCMessage *m = (ProtobufCMessage *)1;
		tc_error err;
		int rc;

		ct.fail_after = k;
		rc = tc_from_json(ALL, everything, strlen(everything), &counted,
				  NULL, &m, &err);
		if (rc != TC_ERR_NOMEM || err.code != TC_ERR_NOMEM)
			fail_msg("allocation %ld failing: %d %s", k, rc,
				 err.message);
		assert_null(m);
		if (ct.live != 0)
			fail_msg("allocation %ld failing: %ld leaked", k,
				 ct.live);
	}
	ct.fail_after = -1;

	/* Merging: failures leave a message that still frees cleanly. */
	for (long k = 0; k < 4; k++) {
		static const char *const paths[] = {
			"fMessage.child.name", "rString", "timestamp", "fieldMask",
		};
		for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
			ProtobufCMessage *m = parse(ALL, "{\"rString\": [\"a\"]}");
			int rc;

			ct.fail_after = k;
			rc = tc_merge_field_from_string(m, paths[p], "a,b", 3,
							&counted, NULL, NULL);
			ct.fail_after = -1;
			if (strcmp(paths[p], "timestamp") == 0)
				assert_true(rc == TC_ERR_NOMEM || rc == TC_ERR_INVALID);
			else
				assert_true(rc == TC_ERR_NOMEM || rc == 0);
			drop(m);
			assert_int_equal(ct.live, 0);
		}
	}
}

/* ---- unsupported well-known types ---- */

/* Stand-ins for google.protobuf.Any and a message holding one: what
 * protoc-c would generate, reduced to what the transcoder reads. */
typedef struct fake_any {
	ProtobufCMessage base;
} fake_any;

typedef struct fake_holder {
	ProtobufCMessage base;
	fake_any *any;
} fake_holder;

static const ProtobufCMessageDescriptor fake_any_descriptor;
static const ProtobufCMessageDescriptor fake_holder_descriptor;

static void fake_any_init(ProtobufCMessage *m)
{
	static const fake_any init = { PROTOBUF_C_MESSAGE_INIT(&fake_any_descriptor) };

	*(fake_any *)m = init;
}

static void fake_holder_init(ProtobufCMessage *m)
{
	static const fake_holder init = {
		PROTOBUF_C_MESSAGE_INIT(&fake_holder_descriptor), NULL,
	};

	*(fake_holder *)m = init;
}

static const ProtobufCIntRange no_ranges[1] = { { 0, 0 } };
static const ProtobufCIntRange holder_ranges[2] = { { 1, 0 }, { 0, 1 } };
static const unsigned holder_by_name[1] = { 0 };
static const ProtobufCFieldDescriptor holder_fields[1] = {
	{ "any", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_MESSAGE, 0,
	  offsetof(fake_holder, any), &fake_any_descriptor, NULL, 0, 0, NULL,
	  NULL },
};

static const ProtobufCMessageDescriptor fake_any_descriptor = {
	PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "google.protobuf.Any", "Any",
	"Google__Protobuf__Any", "google.protobuf", sizeof(fake_any), 0, NULL,
	NULL, 0, no_ranges, fake_any_init, NULL, NULL, NULL,
};

static const ProtobufCMessageDescriptor fake_holder_descriptor = {
	PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC, "test.Holder", "Holder",
	"Test__Holder", "test", sizeof(fake_holder), 1, holder_fields,
	holder_by_name, 1, holder_ranges, fake_holder_init, NULL, NULL, NULL,
};

static void test_unsupported(void **state)
{
	fake_holder h;
	fake_any a;
	(void)state;

	expect_error(&fake_holder_descriptor, "{\"any\": {}}",
		     TC_ERR_UNSUPPORTED, "any: google.protobuf.Any is not supported");
	expect_error(&fake_any_descriptor, "{}", TC_ERR_UNSUPPORTED,
		     "google.protobuf.Any is not supported");
	fake_holder_init(&h.base);
	fake_any_init(&a.base);
	expect_print(&h, "{}");
	h.any = &a;
	expect_print_error(&h, NULL, TC_ERR_UNSUPPORTED,
			   "any: google.protobuf.Any is not supported");
	expect_print_error(&a, NULL, TC_ERR_UNSUPPORTED,
			   "google.protobuf.Any is not supported");
	expect_merge_error(&h, "any", "x", NULL, TC_ERR_UNSUPPORTED,
			   "any: google.protobuf.Any is not supported");
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(tc_strerror(0), "success");
	assert_string_equal(tc_strerror(TC_ERR_SYNTAX), "malformed JSON");
	assert_string_equal(tc_strerror(TC_ERR_INVALID), "invalid value");
	assert_string_equal(tc_strerror(TC_ERR_LIMIT), "nesting limit exceeded");
	assert_string_equal(tc_strerror(TC_ERR_UNSUPPORTED), "unsupported type");
	assert_string_equal(tc_strerror(TC_ERR_NOMEM), "out of memory");
	assert_string_equal(tc_strerror(-99), "unknown error");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, reset_counter, check_counter)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_scalars),
		T(test_names),
		T(test_int32_widths),
		T(test_int64_widths),
		T(test_floats),
		T(test_bool_string_bytes),
		T(test_enums),
		T(test_messages),
		T(test_repeated),
		T(test_maps),
		T(test_oneof),
		T(test_timestamps),
		T(test_durations),
		T(test_field_masks),
		T(test_wrappers),
		T(test_empty),
		T(test_presence),
		T(test_top_level_and_syntax),
		T(test_depth),
		T(test_unsupported),
		T(test_print_defaults),
		T(test_print_values),
		T(test_print_well_known),
		T(test_print_maps),
		T(test_print_depth),
		T(test_round_trip),
		T(test_account_messages),
		T(test_merge),
		T(test_merge_errors),
		T(test_arena),
		T(test_allocation_failures),
		T(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
