/*
 * test_router.c - edge-proxy/router.c against hand-made route tables and
 * against the generated tables of the account, auth and token contracts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "estore/account/v1/account.rpc.h"
#include "estore/auth/v1/auth.rpc.h"
#include "estore/token/v1/token.rpc.h"
#include "router.h"

static const rpc_method_desc methods[] = {
	{ .name = "A", .path = "/t.S/A" }, { .name = "B", .path = "/t.S/B" },
	{ .name = "C", .path = "/t.S/C" }, { .name = "D", .path = "/t.S/D" },
	{ .name = "E", .path = "/t.S/E" }, { .name = "F", .path = "/t.S/F" },
	{ .name = "G", .path = "/t.S/G" },
};

static const rpc_http_route routes[] = {
	{ &methods[0], "GET", "/v1/shelves/{shelf}/books/{book.id}", "", "" },
	{ &methods[1], "GET", "/v1/shelves/special/books/{book.id}", "", "" },
	{ &methods[2], "POST", "/v1/shelves/{shelf}/books/{book.id}", "*", "" },
	{ &methods[3], "GET", "/v1/{name=files/**}", "", "" },
	{ &methods[4], "POST", "/v1/shelves/{shelf}:archive", "*", "" },
	{ &methods[5], "GET", "/v1/{name=users/*/items/*}/detail", "", "" },
	{ &methods[6], "GET", "/", "", "" },
};

static const rpc_service_desc svc = {
	.name = "t.S", .methods = methods, .n_methods = 7,
	.http_routes = routes, .n_http_routes = 7,
};

static edge_router *make(void)
{
	const rpc_service_desc *list[] = { &svc };
	char err[256] = "";
	edge_router *r = edge_router_new(list, 1, err, sizeof(err));

	if (r == NULL)
		fail_msg("edge_router_new: %s", err);
	return r;
}

static edge_route_result match(edge_router *r, const char *method,
			       const char *path, edge_match *m, char *allow)
{
	return edge_router_match(r, method, path, strlen(path), m, allow, 64);
}

static void variables_are_bound_and_decoded(void **state)
{
	edge_router *r = make();
	edge_match m;
	char allow[64];

	(void)state;
	assert_int_equal(match(r, "GET", "/v1/shelves/s%201/books/42", &m, allow),
			 EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[0]);
	assert_int_equal(m.n_vars, 2);
	assert_string_equal(m.vars[0].field, "shelf");
	assert_string_equal(m.vars[0].value, "s 1");
	assert_string_equal(m.vars[1].field, "book.id");
	assert_string_equal(m.vars[1].value, "42");
	edge_match_dispose(&m);
	edge_router_free(r);
}

static void literal_beats_variable(void **state)
{
	edge_router *r = make();
	edge_match m;
	char allow[64];

	(void)state;
	assert_int_equal(match(r, "GET", "/v1/shelves/special/books/7", &m, allow),
			 EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[1]);
	assert_int_equal(m.n_vars, 1);
	assert_string_equal(m.vars[0].value, "7");
	edge_match_dispose(&m);
	edge_router_free(r);
}

static void method_decides_and_405_lists_allowed(void **state)
{
	edge_router *r = make();
	edge_match m;
	char allow[64];

	(void)state;
	assert_int_equal(match(r, "POST", "/v1/shelves/a/books/b", &m, allow),
			 EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[2]);
	edge_match_dispose(&m);
	assert_int_equal(match(r, "DELETE", "/v1/shelves/a/books/b", &m, allow),
			 EDGE_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(allow, "GET, POST");
	assert_int_equal(match(r, "HEAD", "/v1/shelves/a/books/b", &m, allow),
			 EDGE_ROUTE_METHOD_NOT_ALLOWED);
	edge_router_free(r);
}

static void multi_segment_variables_and_custom_verbs(void **state)
{
	edge_router *r = make();
	edge_match m;
	char allow[64];

	(void)state;
	assert_int_equal(match(r, "GET", "/v1/files/a/b/c.txt", &m, allow),
			 EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[3]);
	assert_string_equal(m.vars[0].field, "name");
	assert_string_equal(m.vars[0].value, "files/a/b/c.txt");
	edge_match_dispose(&m);

	assert_int_equal(match(r, "GET", "/v1/users/u1/items/i2/detail", &m, allow),
			 EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[5]);
	assert_string_equal(m.vars[0].value, "users/u1/items/i2");
	edge_match_dispose(&m);

	assert_int_equal(match(r, "POST", "/v1/shelves/s9:archive", &m, allow),
			 EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[4]);
	assert_string_equal(m.vars[0].value, "s9");
	edge_match_dispose(&m);
	assert_int_equal(match(r, "POST", "/v1/shelves/s9:other", &m, allow),
			 EDGE_ROUTE_NOT_FOUND);

	assert_int_equal(match(r, "GET", "/", &m, allow), EDGE_ROUTE_OK);
	assert_ptr_equal(m.route, &routes[6]);
	edge_match_dispose(&m);
	edge_router_free(r);
}

static void what_does_not_match(void **state)
{
	static const char *const paths[] = {
		"", "v1/shelves/a/books/b", "/v1/shelves/a/books", "/v1/shelves/a/books/b/c",
		"/v1/shelves//books/b", "/v1/shelves/a/books/b/", "/v2/shelves/a/books/b",
		"/v1/users/u1/items/detail", "/x",
	};
	edge_router *r = make();
	edge_match m;
	char allow[64];

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++)
		if (match(r, "GET", paths[i], &m, allow) != EDGE_ROUTE_NOT_FOUND)
			fail_msg("matched: \"%s\"", paths[i]);
	edge_router_free(r);
}

static void bad_escapes_are_refused(void **state)
{
	static const char *const paths[] = {
		"/v1/shelves/a%zz/books/b", "/v1/shelves/a%2/books/b",
		"/v1/shelves/a%00b/books/b", "/v1/shelves/a/books/b%",
	};
	edge_router *r = make();
	edge_match m;
	char allow[64];

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++)
		if (match(r, "GET", paths[i], &m, allow) != EDGE_ROUTE_BAD_PATH)
			fail_msg("not refused: \"%s\"", paths[i]);
	edge_router_free(r);
}

static void bad_tables_are_refused(void **state)
{
	static const struct {
		const char *pattern;
		const char *why;
	} bad[] = {
		{ "v1/x", "does not start with '/'" },
		{ "/v1//x", "empty segment" },
		{ "/v1/{a", "bad variable" },
		{ "/v1/{a=b/{c}}", "nested variable" },
		{ "/v1/**/x", "\"**\" must be the last segment" },
		{ "/v1/a*b", "'*' or '{' inside a literal" },
		{ "/v1/x:", "empty custom verb" },
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		rpc_http_route one = { &methods[0], "GET", bad[i].pattern, "", "" };
		rpc_service_desc s = { .name = "t.S", .http_routes = &one,
				       .n_http_routes = 1 };
		const rpc_service_desc *list[] = { &s };
		edge_router *r = edge_router_new(list, 1, err, sizeof(err));

		if (r != NULL)
			fail_msg("accepted: %s", bad[i].pattern);
		if (strstr(err, bad[i].why) == NULL)
			fail_msg("%s: got \"%s\"", bad[i].pattern, err);
	}
}

static void duplicate_routes_are_refused(void **state)
{
	rpc_http_route two[] = {
		{ &methods[0], "GET", "/v1/a/{x}", "", "" },
		{ &methods[1], "GET", "/v1/a/{y}", "", "" },
	};
	rpc_service_desc s = { .name = "t.S", .http_routes = two, .n_http_routes = 2 };
	const rpc_service_desc *list[] = { &s };
	char err[256];

	(void)state;
	assert_null(edge_router_new(list, 1, err, sizeof(err)));
	assert_non_null(strstr(err, "are the same route"));
	two[1].verb = "POST";
	edge_router_free(edge_router_new(list, 1, err, sizeof(err)));
}

static void url_decoding(void **state)
{
	char out[32];

	(void)state;
	assert_int_equal(edge_url_decode("a%20b+c", 7, out, false), 5);
	assert_string_equal(out, "a b+c");
	assert_int_equal(edge_url_decode("a%20b+c", 7, out, true), 5);
	assert_string_equal(out, "a b c");
	assert_int_equal(edge_url_decode("%C3%a9", 6, out, true), 2);
	assert_string_equal(out, "\xc3\xa9");
	assert_int_equal(edge_url_decode("", 0, out, true), 0);
	assert_int_equal(edge_url_decode("%zz", 3, out, true), -1);
	assert_int_equal(edge_url_decode("ab%4", 4, out, true), -1);
	assert_int_equal(edge_url_decode("a%00b", 5, out, true), -1);
}

static void the_contracts_route(void **state)
{
	const rpc_service_desc *list[] = {
		&estore_account_v1_AccountService_service,
		&estore_auth_v1_AuthService_service,
		&estore_token_v1_TokenService_service,
	};
	char err[256] = "", allow[64];
	edge_router *r = edge_router_new(list, 3, err, sizeof(err));
	edge_match m;

	(void)state;
	if (r == NULL)
		fail_msg("%s", err);
	assert_int_equal(edge_router_count(r), 10);
	assert_int_equal(match(r, "GET", "/v1/accounts/me", &m, allow), EDGE_ROUTE_OK);
	assert_string_equal(m.route->method->path, "/estore.account.v1.AccountService/GetAccount");
	assert_string_equal(m.vars[0].field, "id");
	assert_string_equal(m.vars[0].value, "me");
	edge_match_dispose(&m);
	assert_int_equal(match(r, "PATCH", "/v1/accounts/me", &m, allow), EDGE_ROUTE_OK);
	assert_string_equal(m.route->method->path, "/estore.account.v1.AccountService/UpdateAccount");
	assert_string_equal(m.vars[0].field, "account.id");
	assert_string_equal(m.route->body, "account");
	edge_match_dispose(&m);
	assert_int_equal(match(r, "POST", "/v1/auth/login", &m, allow), EDGE_ROUTE_OK);
	assert_string_equal(m.route->method->path, "/estore.auth.v1.AuthService/Login");
	edge_match_dispose(&m);
	assert_int_equal(match(r, "GET", "/.well-known/jwks.json", &m, allow), EDGE_ROUTE_OK);
	assert_string_equal(m.route->method->path, "/estore.token.v1.TokenService/GetJwks");
	edge_match_dispose(&m);
	/* Internal RPCs have no route. */
	assert_int_equal(match(r, "POST", "/v1/accounts", &m, allow),
			 EDGE_ROUTE_METHOD_NOT_ALLOWED);
	assert_string_equal(allow, "GET");
	edge_router_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(variables_are_bound_and_decoded),
		cmocka_unit_test(literal_beats_variable),
		cmocka_unit_test(method_decides_and_405_lists_allowed),
		cmocka_unit_test(multi_segment_variables_and_custom_verbs),
		cmocka_unit_test(what_does_not_match),
		cmocka_unit_test(bad_escapes_are_refused),
		cmocka_unit_test(bad_tables_are_refused),
		cmocka_unit_test(duplicate_routes_are_refused),
		cmocka_unit_test(url_decoding),
		cmocka_unit_test(the_contracts_route),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
