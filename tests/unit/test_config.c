/*
 * test_config.c - services/common/config.c: the configuration table and
 * .env files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rpc/log.h"
#include "services/common/config.h"

struct conf {
	char *host;
	long long port;
	bool debug;
	char *password;
	char *required;
	long long unbounded;
};

static const cfg_var vars[] = {
	{ "TCFG_HOST", CFG_STRING, offsetof(struct conf, host), "127.0.0.1",
	  0, 0, false, "where to listen" },
	{ "TCFG_PORT", CFG_INT, offsetof(struct conf, port), "5432", 1, 65535,
	  false, "TCP port" },
	{ "TCFG_DEBUG", CFG_BOOL, offsetof(struct conf, debug), "false", 0, 0,
	  false, "debug mode" },
	{ "TCFG_PASSWORD", CFG_STRING, offsetof(struct conf, password), "", 0,
	  0, true, "database password" },
	{ "TCFG_REQUIRED", CFG_STRING, offsetof(struct conf, required), NULL,
	  0, 0, true, "the service secret" },
	{ "TCFG_UNBOUNDED", CFG_INT, offsetof(struct conf, unbounded), "-7", 0,
	  0, false, "no limits" },
};
#define NVARS (sizeof(vars) / sizeof(vars[0]))

static char tmpdir[64];
static char envfile[128];

static void unset_all(void)
{
	static const char *const names[] = {
		"TCFG_HOST", "TCFG_PORT", "TCFG_DEBUG", "TCFG_PASSWORD",
		"TCFG_REQUIRED", "TCFG_UNBOUNDED", "TCFG_A", "TCFG_B", "TCFG_C",
		"TCFG_D", "TCFG_E", "TCFG_F", "TCFG_G", "TCFG_H", "TCFG_I",
		"TCFG_J", "TCFG_K",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		unsetenv(names[i]);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	unset_all();
	/* An empty .env of our own, so no file in the test's working
	 * directory can leak in. */
	write_file(envfile, "");
	setenv("ESTORE_ENV_FILE", envfile, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unset_all();
	unsetenv("ESTORE_ENV_FILE");
	unlink(envfile);
	return 0;
}

static void test_defaults(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	setenv("TCFG_REQUIRED", "s3cret", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	assert_string_equal(c.host, "127.0.0.1");
	assert_int_equal(c.port, 5432);
	assert_false(c.debug);
	assert_string_equal(c.password, "");
	assert_string_equal(c.required, "s3cret");
	assert_int_equal(c.unbounded, -7);
	cfg_free(vars, NVARS, &c);
	assert_null(c.host);
	assert_null(c.required);
}

static void test_env_values(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	setenv("TCFG_REQUIRED", "x", 1);
	setenv("TCFG_HOST", "db.internal", 1);
	setenv("TCFG_PORT", " 65535 ", 1);
	setenv("TCFG_DEBUG", "YES", 1);
	setenv("TCFG_UNBOUNDED", "-9223372036854775808", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	assert_string_equal(c.host, "db.internal");
	assert_int_equal(c.port, 65535);
	assert_true(c.debug);
	assert_true(c.unbounded < -9000000000000000000LL);
	cfg_free(vars, NVARS, &c);
}

static void expect_int_error(const char *value, const char *fragment)
{
	struct conf c;
	char err[256] = "";

	setenv("TCFG_REQUIRED", "x", 1);
	setenv("TCFG_PORT", value, 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TCFG_PORT"));
	assert_non_null(strstr(err, fragment));
	/* Nothing is left allocated after a failure. */
	assert_null(c.host);
	cfg_free(vars, NVARS, &c);
}

static void test_int_out_of_range(void **state)
{
	(void)state;
	expect_int_error("0", "between 1 and 65535");
	expect_int_error("65536", "'65536'");
	expect_int_error("-1", "between 1 and 65535");
	expect_int_error("99999999999999999999", "is not a number");
	expect_int_error("abc", "'abc' is not a number between 1 and 65535");
	expect_int_error("12abc", "'12abc'");
	expect_int_error("1.5", "'1.5'");
	expect_int_error("0x10", "'0x10'");
}

static void test_empty_number_means_default(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	/* "VAR=" in a compose file means "not set" for numbers and flags. */
	setenv("TCFG_REQUIRED", "x", 1);
	setenv("TCFG_PORT", "", 1);
	setenv("TCFG_DEBUG", "", 1);
	setenv("TCFG_HOST", "", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	assert_int_equal(c.port, 5432);
	assert_false(c.debug);
	/* An empty string is a value for an optional string. */
	assert_string_equal(c.host, "");
	cfg_free(vars, NVARS, &c);
}

static void test_bools(void **state)
{
	static const struct { const char *text; bool value; } ok[] = {
		{ "1", true }, { "true", true }, { "TRUE", true },
		{ "yes", true }, { "on", true }, { "On", true },
		{ "0", false }, { "false", false }, { "no", false },
		{ "off", false }, { "OFF", false },
	};
	static const char *const bad[] = { "2", "y", "enabled", "truee", " " };
	struct conf c;
	char err[256];

	(void)state;
	setenv("TCFG_REQUIRED", "x", 1);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		setenv("TCFG_DEBUG", ok[i].text, 1);
		assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
		assert_int_equal(c.debug, ok[i].value);
		cfg_free(vars, NVARS, &c);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("TCFG_DEBUG", bad[i], 1);
		err[0] = '\0';
		assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "TCFG_DEBUG"));
		assert_non_null(strstr(err, "not a boolean"));
		cfg_free(vars, NVARS, &c);
	}
}

static void test_required_missing(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), -1);
	assert_string_equal(err, "TCFG_REQUIRED is required: the service secret");
	cfg_free(vars, NVARS, &c);

	/* Set but empty is as good as missing for a required value. */
	setenv("TCFG_REQUIRED", "", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TCFG_REQUIRED is required"));
	cfg_free(vars, NVARS, &c);
}

static void test_secret_value_not_in_error(void **state)
{
	static const cfg_var secret_int[] = {
		{ "TCFG_A", CFG_INT, 0, "1", 1, 10, true, "a secret number" },
	};
	long long v;
	char err[256] = "";

	(void)state;
	setenv("TCFG_A", "hunter2", 1);
	assert_int_equal(cfg_load(secret_int, 1, &v, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TCFG_A"));
	assert_null(strstr(err, "hunter2"));
}

static void test_env_file_parsing(void **state)
{
	char err[256] = "";

	(void)state;
	write_file(envfile,
		   "# a comment\n"
		   "\n"
		   "   # an indented comment\n"
		   "TCFG_A=plain\n"
		   "TCFG_B = spaced value   \n"
		   "export TCFG_C=exported\n"
		   "TCFG_D=\"double # not a comment\" # a comment\n"
		   "TCFG_E='single \\n literal'\n"
		   "TCFG_F=\"esc\\\"aped\\n\\\\\"\n"
		   "TCFG_G=value # trailing comment\n"
		   "TCFG_H=pass#word\n"
		   "TCFG_I=\r\n"
		   "TCFG_J=a=b=c\r\n"
		   "\texport\tTCFG_K=\"\"\n");
	assert_int_equal(cfg_load_env_file(envfile, err, sizeof(err)), 0);
	assert_string_equal(getenv("TCFG_A"), "plain");
	assert_string_equal(getenv("TCFG_B"), "spaced value");
	assert_string_equal(getenv("TCFG_C"), "exported");
	assert_string_equal(getenv("TCFG_D"), "double # not a comment");
	assert_string_equal(getenv("TCFG_E"), "single \\n literal");
	assert_string_equal(getenv("TCFG_F"), "esc\"aped\n\\");
	assert_string_equal(getenv("TCFG_G"), "value");
	assert_string_equal(getenv("TCFG_H"), "pass#word");
	assert_string_equal(getenv("TCFG_I"), "");
	assert_string_equal(getenv("TCFG_J"), "a=b=c");
	assert_string_equal(getenv("TCFG_K"), "");
}

static void expect_bad_file(const char *text, const char *fragment,
			    const char *not_there)
{
	char err[256] = "";

	write_file(envfile, text);
	assert_int_equal(cfg_load_env_file(envfile, err, sizeof(err)), -1);
	assert_non_null(strstr(err, fragment));
	if (not_there)
		assert_null(strstr(err, not_there));
}

static void test_env_file_errors(void **state)
{
	char err[256] = "";

	(void)state;
	expect_bad_file("TCFG_A=1\njust words\n", ":2: expected KEY=VALUE", NULL);
	expect_bad_file("=value\n", ":1: expected KEY=VALUE", NULL);
	expect_bad_file("1ABC=x\n", ":1:", NULL);
	expect_bad_file("TCFG_A\n", ":1: expected KEY=VALUE", NULL);
	/* The value (maybe a password) never appears in the message. */
	expect_bad_file("\nTCFG_A=\"s3cr3t\n", ":2: TCFG_A: unterminated",
			"s3cr3t");
	expect_bad_file("TCFG_A='s3cr3t' junk\n", "TCFG_A", "s3cr3t");
	expect_bad_file("TCFG_A=\"s3cr3t\"junk\n", "TCFG_A", "s3cr3t");

	assert_int_equal(cfg_load_env_file("/nonexistent/estore/.env", err,
					   sizeof(err)), 1);
}

static void test_env_wins_over_file(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	write_file(envfile, "TCFG_HOST=from-file\nTCFG_PORT=1234\n"
			    "TCFG_REQUIRED=file-secret\nTCFG_DEBUG=on\n");
	setenv("TCFG_HOST", "from-env", 1);
	setenv("TCFG_PORT", "4321", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	assert_string_equal(c.host, "from-env");
	assert_int_equal(c.port, 4321);
	assert_string_equal(c.required, "file-secret");
	assert_true(c.debug);
	cfg_free(vars, NVARS, &c);
}

static void test_env_file_bad_value_fails_load(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	write_file(envfile, "TCFG_REQUIRED=x\nTCFG_PORT=http\n");
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "TCFG_PORT: 'http' is not a number"));
	cfg_free(vars, NVARS, &c);
}

static void test_named_env_file_must_exist(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	setenv("TCFG_REQUIRED", "x", 1);
	setenv("ESTORE_ENV_FILE", "/nonexistent/estore.env", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ESTORE_ENV_FILE"));
	cfg_free(vars, NVARS, &c);
}

static void test_dot_env_in_cwd(void **state)
{
	struct conf c;
	char err[256] = "", old[512], path[128];

	(void)state;
	/* Without ESTORE_ENV_FILE, ./.env is read when present... */
	unsetenv("ESTORE_ENV_FILE");
	assert_non_null(getcwd(old, sizeof(old)));
	assert_int_equal(chdir(tmpdir), 0);
	snprintf(path, sizeof(path), "%s/.env", tmpdir);
	write_file(path, "TCFG_REQUIRED=from-dot-env\n");
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	assert_string_equal(c.required, "from-dot-env");
	cfg_free(vars, NVARS, &c);
	/* ...and its absence is fine. */
	unlink(path);
	unsetenv("TCFG_REQUIRED");
	setenv("TCFG_REQUIRED", "y", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	cfg_free(vars, NVARS, &c);
	assert_int_equal(chdir(old), 0);
}

/* cfg_log: every value once, secrets masked. */
static char logged[4096];

static void capture(void *user, rpc_log_level level, const char *component,
		    const char *request_id, const rpc_log_field *fields,
		    size_t n_fields, const char *message)
{
	(void)user;
	(void)level;
	(void)request_id;
	(void)fields;
	(void)n_fields;
	strncat(logged, component, sizeof(logged) - strlen(logged) - 1);
	strncat(logged, " ", sizeof(logged) - strlen(logged) - 1);
	strncat(logged, message, sizeof(logged) - strlen(logged) - 1);
	strncat(logged, "\n", sizeof(logged) - strlen(logged) - 1);
}

static void test_log_masks_secrets(void **state)
{
	struct conf c;
	char err[256] = "";

	(void)state;
	setenv("TCFG_REQUIRED", "topsecret", 1);
	setenv("TCFG_DEBUG", "on", 1);
	assert_int_equal(cfg_load(vars, NVARS, &c, err, sizeof(err)), 0);
	logged[0] = '\0';
	rpc_log_set_sink(capture, NULL, RPC_LOG_INFO);
	cfg_log(vars, NVARS, &c);
	rpc_log_set_sink(NULL, NULL, RPC_LOG_INFO);
	assert_non_null(strstr(logged, "config TCFG_HOST=127.0.0.1\n"));
	assert_non_null(strstr(logged, "config TCFG_PORT=5432\n"));
	assert_non_null(strstr(logged, "config TCFG_DEBUG=true\n"));
	assert_non_null(strstr(logged, "config TCFG_PASSWORD=(empty)\n"));
	assert_non_null(strstr(logged, "config TCFG_REQUIRED=(set)\n"));
	assert_null(strstr(logged, "topsecret"));
	cfg_free(vars, NVARS, &c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_values, setup, teardown),
		cmocka_unit_test_setup_teardown(test_int_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_number_means_default, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bools, setup, teardown),
		cmocka_unit_test_setup_teardown(test_required_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secret_value_not_in_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_parsing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_wins_over_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_file_bad_value_fails_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_named_env_file_must_exist, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dot_env_in_cwd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_masks_secrets, setup, teardown),
	};
	int rc;

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(envfile, sizeof(envfile), "%s/test.env", tmpdir);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(tmpdir);
	return rc;
}
