/*
 * clientaddr.c - trusted networks and X-Forwarded-For (clientaddr.h).
 */
#include "services/common/clientaddr.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cidr {
	int family;          /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	int bits;
};

struct trusted_nets {
	size_t n;
	struct cidr net[];
};

/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 one. */
static int parse_addr(const char *s, uint8_t out[16])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (inet_pton(AF_INET, s, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, s, out) == 1) {
		if (memcmp(out, mapped, 12) == 0) {
			memmove(out, out + 12, 4);
			return AF_INET;
		}
		return AF_INET6;
	}
	return 0;
}

static bool in_net(const struct cidr *c, int family, const uint8_t a[16])
{
	int full = c->bits / 8, rest = c->bits % 8;

	if (family != c->family || memcmp(a, c->addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));

	return (a[full] & mask) == (c->addr[full] & mask);
}

trusted_nets *trusted_nets_parse(const char *list, char *err, size_t errlen)
{
	size_t cap = 1, len = list ? strlen(list) : 0;
	trusted_nets *c;
	char *copy, *save = NULL, *tok;

	for (size_t i = 0; i < len; i++)
		cap += list[i] == ',';
	c = calloc(1, sizeof(*c) + cap * sizeof(c->net[0]));
	copy = strdup(list ? list : "");
	if (c == NULL || copy == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end, *slash;
		struct cidr *n = &c->net[c->n];
		long bits;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*tok == '\0')
			continue;
		slash = strchr(tok, '/');
		if (slash)
			*slash = '\0';
		n->family = parse_addr(tok, n->addr);
		if (n->family == 0) {
			snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", tok);
			goto fail;
		}
		bits = n->family == AF_INET ? 32 : 128;
		if (slash) {
			char *e;

			bits = strtol(slash + 1, &e, 10);
			if (slash[1] == '\0' || *e != '\0' || bits < 0 ||
			    bits > (n->family == AF_INET ? 32 : 128)) {
				snprintf(err, errlen, "'%s/%s': bad prefix length", tok, slash + 1);
				goto fail;
			}
		}
		n->bits = (int)bits;
		c->n++;
	}
	free(copy);
	return c;
fail:
	free(copy);
	free(c);
	return NULL;
}

void trusted_nets_free(trusted_nets *c)
{
	free(c);
}

bool trusted_nets_contain(const trusted_nets *c, const char *addr)
{
	uint8_t a[16];
	int family;

	if (c == NULL || c->n == 0 || (family = parse_addr(addr, a)) == 0)
		return false;
	for (size_t i = 0; i < c->n; i++)
		if (in_net(&c->net[i], family, a))
			return true;
	return false;
}

/* The last comma-separated entry of s[0..*len), trimmed; *len shrinks to
 * what is left before it. */
static void last_entry(const char *s, size_t *len, char *out, size_t cap)
{
	size_t end = *len, start;

	start = end;
	while (start > 0 && s[start - 1] != ',')
		start--;
	*len = start > 0 ? start - 1 : 0;
	while (start < end && (s[start] == ' ' || s[start] == '\t'))
		start++;
	while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
		end--;
	snprintf(out, cap, "%.*s", (int)(end - start), s + start);
}

void client_address(const trusted_nets *trusted, const char *peer_addr,
			 const char *xff, char *out, size_t cap)
{
	char hop[64];
	uint8_t scratch[16];
	size_t len;

	snprintf(out, cap, "%s", peer_addr);
	if (xff == NULL || !trusted_nets_contain(trusted, peer_addr))
		return;
	len = strlen(xff);
	while (len > 0) {
		last_entry(xff, &len, hop, sizeof(hop));
		if (parse_addr(hop, scratch) == 0)
			return;   /* garbage: keep the last good hop */
		snprintf(out, cap, "%s", hop);
		if (!trusted_nets_contain(trusted, hop))
			return;
	}
}
