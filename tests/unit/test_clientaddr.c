/*
 * test_clientaddr.c - trusted proxy networks and the client address from
 * X-Forwarded-For (edge-proxy/clientaddr.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "services/common/clientaddr.h"

static trusted_nets *parse(const char *list)
{
	char err[200];
	trusted_nets *c = trusted_nets_parse(list, err, sizeof(err));

	if (c == NULL)
		fail_msg("%s: %s", list, err);
	return c;
}

static void test_parse_and_contain(void **state)
{
	trusted_nets *c = parse(" 10.0.0.0/8 , 192.168.1.7,fd00::/8, 172.16.0.0/12 ");

	(void)state;
	assert_true(trusted_nets_contain(c, "10.1.2.3"));
	assert_true(trusted_nets_contain(c, "192.168.1.7"));
	assert_false(trusted_nets_contain(c, "192.168.1.8"));
	assert_true(trusted_nets_contain(c, "172.31.255.255"));
	assert_false(trusted_nets_contain(c, "172.32.0.0"));
	assert_true(trusted_nets_contain(c, "fd12::1"));
	assert_false(trusted_nets_contain(c, "fe80::1"));
	/* IPv4-mapped IPv6 is the IPv4 address. */
	assert_true(trusted_nets_contain(c, "::ffff:10.9.9.9"));
	assert_false(trusted_nets_contain(c, "not an address"));
	assert_false(trusted_nets_contain(c, ""));
	trusted_nets_free(c);

	c = parse("");
	assert_false(trusted_nets_contain(c, "127.0.0.1"));
	trusted_nets_free(c);
	c = parse("0.0.0.0/0");
	assert_true(trusted_nets_contain(c, "8.8.8.8"));
	assert_false(trusted_nets_contain(c, "::1"));
	trusted_nets_free(c);
}

static void test_bad_lists(void **state)
{
	static const char *const bad[] = {
		"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0",
		"example.com", "10.0.0.0/8, nope", "10.0.0.0/-1",
	};
	char err[200];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (trusted_nets_parse(bad[i], err, sizeof(err)) != NULL)
			fail_msg("accepted %s", bad[i]);
		assert_true(err[0] != '\0');
	}
}

static void client(const trusted_nets *t, const char *peer, const char *xff,
		   const char *want)
{
	char out[64];

	client_address(t, peer, xff, out, sizeof(out));
	if (strcmp(out, want) != 0)
		fail_msg("peer %s, X-Forwarded-For %s: %s, want %s", peer,
			 xff ? xff : "(none)", out, want);
}

static void test_client_address(void **state)
{
	trusted_nets *t = parse("10.0.0.0/8");

	(void)state;
	/* No header, or a peer we do not trust: the peer. */
	client(t, "10.0.0.5", NULL, "10.0.0.5");
	client(t, "203.0.113.9", "198.51.100.1", "203.0.113.9");
	/* The rightmost untrusted hop: what the client put first may lie. */
	client(t, "10.0.0.5", "198.51.100.1", "198.51.100.1");
	client(t, "10.0.0.5", "1.2.3.4, 198.51.100.1, 10.0.0.9", "198.51.100.1");
	client(t, "10.0.0.5", " 2001:db8::7 ", "2001:db8::7");
	/* Every hop trusted: the leftmost. */
	client(t, "10.0.0.5", "10.0.0.7,10.0.0.8", "10.0.0.7");
	/* Garbage ends the walk at the last good hop. */
	client(t, "10.0.0.5", "bogus, 10.0.0.8", "10.0.0.8");
	client(t, "10.0.0.5", "bogus", "10.0.0.5");
	client(t, "10.0.0.5", "", "10.0.0.5");
	client(t, "10.0.0.5", ",,", "10.0.0.5");
	trusted_nets_free(t);
	/* No trusted proxies at all: the header never counts. */
	client(NULL, "10.0.0.5", "198.51.100.1", "10.0.0.5");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_contain),
		cmocka_unit_test(test_bad_lists),
		cmocka_unit_test(test_client_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
