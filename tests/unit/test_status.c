/*
 * test_status.c - status code names, HTTP fallback mapping, error strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/status.h"

static void test_code_names_round_trip(void **state)
{
	(void)state;
	for (int c = 0; c <= RPC_CODE_MAX; c++) {
		rpc_code back = RPC_OK;
		const char *name = rpc_code_name(c);
		assert_non_null(name);
		assert_int_equal(rpc_code_from_name(name, &back), 0);
		assert_int_equal(back, c);
	}
	assert_string_equal(rpc_code_name(RPC_OK), "OK");
	assert_string_equal(rpc_code_name(RPC_NOT_FOUND), "NOT_FOUND");
	assert_string_equal(rpc_code_name(RPC_UNAUTHENTICATED),
			    "UNAUTHENTICATED");
	assert_string_equal(rpc_code_name(RPC_DEADLINE_EXCEEDED),
			    "DEADLINE_EXCEEDED");
}

static void test_code_name_out_of_range(void **state)
{
	(void)state;
	assert_string_equal(rpc_code_name(-1), "UNKNOWN");
	assert_string_equal(rpc_code_name(17), "UNKNOWN");
	assert_string_equal(rpc_code_name(1000), "UNKNOWN");
}

static void test_code_from_name_rejects(void **state)
{
	rpc_code c = RPC_ABORTED;
	(void)state;
	assert_int_equal(rpc_code_from_name("not_found", &c), RPC_ERR_INVALID);
	assert_int_equal(rpc_code_from_name("", &c), RPC_ERR_INVALID);
	assert_int_equal(rpc_code_from_name("NOT_FOUND ", &c), RPC_ERR_INVALID);
	assert_int_equal(rpc_code_from_name("5", &c), RPC_ERR_INVALID);
	assert_int_equal(rpc_code_from_name(NULL, &c), RPC_ERR_INVALID);
	/* A failed parse leaves the output alone. */
	assert_int_equal(c, RPC_ABORTED);
}

static void test_http_mapping(void **state)
{
	(void)state;
	assert_int_equal(rpc_code_from_http_status(400), RPC_INTERNAL);
	assert_int_equal(rpc_code_from_http_status(401), RPC_UNAUTHENTICATED);
	assert_int_equal(rpc_code_from_http_status(403), RPC_PERMISSION_DENIED);
	assert_int_equal(rpc_code_from_http_status(404), RPC_UNIMPLEMENTED);
	assert_int_equal(rpc_code_from_http_status(429), RPC_UNAVAILABLE);
	assert_int_equal(rpc_code_from_http_status(502), RPC_UNAVAILABLE);
	assert_int_equal(rpc_code_from_http_status(503), RPC_UNAVAILABLE);
	assert_int_equal(rpc_code_from_http_status(504), RPC_UNAVAILABLE);
	assert_int_equal(rpc_code_from_http_status(200), RPC_UNKNOWN);
	assert_int_equal(rpc_code_from_http_status(500), RPC_UNKNOWN);
	assert_int_equal(rpc_code_from_http_status(405), RPC_UNKNOWN);
	assert_int_equal(rpc_code_from_http_status(0), RPC_UNKNOWN);
	assert_int_equal(rpc_code_from_http_status(-1), RPC_UNKNOWN);
}

static void test_status_dispose(void **state)
{
	rpc_status st = { 0 };
	(void)state;

	rpc_status_dispose(&st); /* zeroed struct */
	rpc_status_dispose(NULL);

	st.code = RPC_NOT_FOUND;
	st.message = strdup("no such product");
	assert_non_null(st.message);
	rpc_status_dispose(&st);
	assert_int_equal(st.code, RPC_OK);
	assert_null(st.message);
	rpc_status_dispose(&st); /* twice is fine */
}

static void test_strerror(void **state)
{
	const int errs[] = {
		RPC_ERR_NOMEM, RPC_ERR_INVALID, RPC_ERR_IO, RPC_ERR_PROTO,
		RPC_ERR_TOO_LARGE, RPC_ERR_CLOSED, RPC_ERR_CANCELLED,
		RPC_ERR_TIMEOUT, RPC_ERR_RESOLVE, RPC_ERR_EXISTS,
	};
	(void)state;
	const char *unknown = rpc_strerror(-9999);
	assert_non_null(unknown);
	assert_non_null(rpc_strerror(0));
	/* Every real error has its own text, distinct from the fallback and
	 * from each other. */
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *s = rpc_strerror(errs[i]);
		assert_non_null(s);
		assert_true(strlen(s) > 0);
		assert_string_not_equal(s, unknown);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(s, rpc_strerror(errs[j]));
	}
	assert_non_null(rpc_strerror(42));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_code_names_round_trip),
		cmocka_unit_test(test_code_name_out_of_range),
		cmocka_unit_test(test_code_from_name_rejects),
		cmocka_unit_test(test_http_mapping),
		cmocka_unit_test(test_status_dispose),
		cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
