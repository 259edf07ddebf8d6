#include "test_tokens.h"

#include <stdio.h>
#include <string.h>

static bool take_role(const char *name, size_t len, unsigned *roles)
{
	static const struct { const char *name; unsigned bit; } known[] = {
		{ "customer", RPC_ROLE_CUSTOMER },
		{ "vendor", RPC_ROLE_VENDOR },
		{ "admin", RPC_ROLE_ADMIN },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i].name) == len &&
		    memcmp(known[i].name, name, len) == 0) {
			*roles |= known[i].bit;
			return true;
		}
	}
	return false;
}

rpc_code test_tokens_authenticate(void *user, rpc_ctx *ctx, const char *token,
				  size_t len, rpc_identity *out)
{
	char buf[256];
	char *subject, *roles, *p;

	if (len >= sizeof(buf))
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "token too long");
	memcpy(buf, token, len);
	buf[len] = '\0';
	if (strcmp(buf, "test:unavailable") == 0)
		return rpc_ctx_error(ctx, RPC_UNAVAILABLE,
				     "token verification unavailable");
	if (strncmp(buf, "test:", 5) != 0)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "not a test token");
	subject = buf + 5;
	/* A service subject contains a colon of its own: roles follow the
	 * last one. */
	roles = strrchr(subject, ':');
	if (!roles || roles == subject)
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "malformed test token");
	*roles++ = '\0';
	if (strlen(subject) >= sizeof(out->subject))
		return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED, "subject too long");
	snprintf(out->subject, sizeof(out->subject), "%s", subject);
	out->is_service = strncmp(subject, "service:", 8) == 0;
	for (p = roles; *p;) {
		size_t n = strcspn(p, ",");

		if (!take_role(p, n, &out->roles))
			return rpc_ctx_error(ctx, RPC_UNAUTHENTICATED,
					     "unknown role in test token");
		p += n;
		if (*p == ',')
			p++;
	}
	return RPC_OK;
}
