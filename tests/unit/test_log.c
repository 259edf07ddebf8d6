/*
 * test_log.c - the JSON-lines sink: every line one JSON object, with the
 * thread's request id and structured fields, whatever bytes the message
 * and the fields hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "rpc/log.h"

/* Runs fn with stdout sent to a temporary file; returns what it wrote. */
static char *capture_stdout(void (*fn)(void))
{
	char path[] = "/tmp/estore-test-log-XXXXXX";
	int fd = mkstemp(path);
	int saved;
	FILE *f;
	char *text;
	long n;

	assert_true(fd >= 0);
	unlink(path);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
	fn();
	fflush(stdout);
	assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);
	f = fdopen(fd, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)n + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return text;
}

static json_t *only_line(const char *text)
{
	json_error_t e;
	const char *nl = strchr(text, '\n');
	json_t *j;

	assert_non_null(nl);
	assert_int_equal(nl[1], '\0');
	j = json_loadb(text, (size_t)(nl - text), 0, &e);
	if (j == NULL)
		fail_msg("not JSON (%s): %s", e.text, text);
	return j;
}

static void log_with_fields(void)
{
	rpc_log_field f[] = {
		{ "status", NULL, 404 },
		{ "path", "/v1/\"x\"\n\xff", 0 },
		{ "bytes", NULL, -1 },
	};

	rpc_log_set_request_id("req-1");
	rpc_log_fields(RPC_LOG_INFO, "access", f, 3, "GET %s %d", "/v1/x", 404);
	rpc_log_set_request_id(NULL);
}

static void test_fields_and_request_id(void **state)
{
	(void)state;
	rpc_log_set_sink(rpc_log_json_sink, "estore-test", RPC_LOG_INFO);
	char *text = capture_stdout(log_with_fields);
	json_t *j = only_line(text);

	assert_string_equal(json_string_value(json_object_get(j, "service")), "estore-test");
	assert_string_equal(json_string_value(json_object_get(j, "component")), "access");
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), "req-1");
	assert_int_equal(json_integer_value(json_object_get(j, "status")), 404);
	assert_int_equal(json_integer_value(json_object_get(j, "bytes")), -1);
	/* Quotes and newlines escaped, the bad byte replaced. */
	assert_string_equal(json_string_value(json_object_get(j, "path")),
			    "/v1/\"x\"\n\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "GET /v1/x 404");
	json_decref(j);
	free(text);
}

static void log_plain(void)
{
	rpc_log(RPC_LOG_WARN, "main", "plain");
	rpc_log(RPC_LOG_DEBUG, "main", "filtered out");
}

static void test_no_request_id_when_cleared(void **state)
{
	(void)state;
	rpc_log_set_sink(rpc_log_json_sink, "estore-test", RPC_LOG_INFO);
	char *text = capture_stdout(log_plain);
	json_t *j = only_line(text);

	assert_null(json_object_get(j, "request_id"));
	assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(j, "msg")), "plain");
	json_decref(j);
	free(text);
}

static void log_long(void)
{
	char big[3000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	rpc_log(RPC_LOG_INFO, "main", "%s", big);
}

static void test_long_message(void **state)
{
	(void)state;
	rpc_log_set_sink(rpc_log_json_sink, NULL, RPC_LOG_INFO);
	char *text = capture_stdout(log_long);
	json_t *j = only_line(text);

	assert_int_equal(strlen(json_string_value(json_object_get(j, "msg"))), 2999);
	json_decref(j);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_and_request_id),
		cmocka_unit_test(test_no_request_id_when_cleared),
		cmocka_unit_test(test_long_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
