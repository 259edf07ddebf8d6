/*
 * test_tokens.h - a stand-in authenticator for estore-echo --test-tokens,
 * so the RPC layer's access-rule enforcement can be tested without the
 * token service. Never used by a real service.
 *
 * Accepted bearer tokens: "test:<subject>:<role>[,<role>...]" with roles
 * customer, vendor, admin (may be empty); a subject "service:<name>" is a
 * service. "test:unavailable" makes verification fail with UNAVAILABLE;
 * anything else is UNAUTHENTICATED.
 */
#ifndef ESTORE_TESTS_TEST_TOKENS_H
#define ESTORE_TESTS_TEST_TOKENS_H

#include "rpc/server.h"

rpc_code test_tokens_authenticate(void *user, rpc_ctx *ctx, const char *token,
				  size_t len, rpc_identity *out);

#endif
