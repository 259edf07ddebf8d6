/*
 * test_httpstatus.c - edge-proxy/httpstatus.c: every gRPC code's HTTP
 * status, and the JSON error body (escaping, invalid UTF-8 replaced).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "httpstatus.h"

static void every_code_maps(void **state)
{
	static const int want[17] = {
		[RPC_OK] = 200, [RPC_CANCELLED] = 499, [RPC_UNKNOWN] = 500,
		[RPC_INVALID_ARGUMENT] = 400, [RPC_DEADLINE_EXCEEDED] = 504,
		[RPC_NOT_FOUND] = 404, [RPC_ALREADY_EXISTS] = 409,
		[RPC_PERMISSION_DENIED] = 403, [RPC_RESOURCE_EXHAUSTED] = 429,
		[RPC_FAILED_PRECONDITION] = 400, [RPC_ABORTED] = 409,
		[RPC_OUT_OF_RANGE] = 400, [RPC_UNIMPLEMENTED] = 501,
		[RPC_INTERNAL] = 500, [RPC_UNAVAILABLE] = 503,
		[RPC_DATA_LOSS] = 500, [RPC_UNAUTHENTICATED] = 401,
	};

	(void)state;
	for (int code = 0; code < 17; code++) {
		if (edge_http_status(code) != want[code])
			fail_msg("code %d: %d, want %d", code,
				 edge_http_status(code), want[code]);
		assert_true(edge_http_reason(edge_http_status(code))[0] != '\0');
	}
	assert_int_equal(edge_http_status(99), 500);
	assert_int_equal(edge_http_status(-1), 500);
	assert_string_equal(edge_http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(edge_http_reason(299), "");
}

static void error_body(void **state)
{
	size_t len = 0;
	char *body;

	(void)state;
	body = edge_error_body(RPC_NOT_FOUND, "account \"x\" not found", &len);
	assert_string_equal(body, "{\"code\":5,\"message\":\"account \\\"x\\\" not found\",\"details\":[]}");
	assert_int_equal(len, strlen(body));
	free(body);

	body = edge_error_body(RPC_INTERNAL, NULL, NULL);
	assert_string_equal(body, "{\"code\":13,\"message\":\"\",\"details\":[]}");
	free(body);

	/* A stray byte, an overlong form and a surrogate become U+FFFD;
	 * good multi-byte text stays. */
	body = edge_error_body(RPC_INVALID_ARGUMENT, "caf\xc3\xa9 \xff \xc0\xaf \xed\xa0\x80 \xe2\x9c\x93", NULL);
	assert_string_equal(body, "{\"code\":3,\"message\":\"caf\xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xe2\x9c\x93\",\"details\":[]}");
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_code_maps),
		cmocka_unit_test(error_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
