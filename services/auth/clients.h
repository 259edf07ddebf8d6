/*
 * clients.h - estore-auth's calls to the account and token services.
 *
 * One channel per service and this service's own identity (a service
 * token from svctoken.h, sent on every internal call). Each call runs
 * within the deadline of the incoming call `ctx` (deadline propagation),
 * or within the configured timeout when the caller set none.
 *
 * Every call returns the downstream rpc_code with its message in *st
 * (dispose it with rpc_status_dispose), and on RPC_OK the decoded reply in
 * *out, to free with protobuf_c_message_free_unpacked(&(*out)->base, NULL).
 * A failure to obtain our service token is reported as RPC_UNAVAILABLE when
 * the token service is unreachable and RPC_INTERNAL otherwise (a wrong
 * secret is our fault, not the caller's): callers can then pass downstream
 * codes such as UNAUTHENTICATED through without misattributing them.
 */
#ifndef ESTORE_AUTH_CLIENTS_H
#define ESTORE_AUTH_CLIENTS_H

#include <stdbool.h>

#include "estore/account/v1/account.pb-c.h"
#include "estore/token/v1/token.pb-c.h"
#include "rpc/channel.h"
#include "rpc/server.h"

typedef struct clients clients;

typedef struct clients_config {
	const char *account_target;   /* "host:port" */
	const char *token_target;     /* "host:port" */
	const char *service_name;     /* "auth" */
	const char *service_secret;   /* copied, never logged */
	long long timeout_ms;         /* when the incoming call has no deadline */
	long long probe_timeout_ms;   /* health probes */
} clients_config;

/* NULL on a bad target or no memory. */
clients *clients_new(const clients_config *cfg);

/* clients_free(NULL) is a no-op. */
void clients_free(clients *c);

/* The channel to the token service (for authn_install_remote); owned by
 * `c`. */
rpc_channel *clients_token_channel(clients *c);

/* AccountService.CreateAccount (internal). */
rpc_code clients_create_account(clients *c, rpc_ctx *ctx,
				const Estore__Account__V1__CreateAccountRequest *req,
				Estore__Account__V1__Account **out,
				rpc_status *st);

/* AccountService.GetAccountByEmail (internal). */
rpc_code clients_get_account_by_email(clients *c, rpc_ctx *ctx,
				      const char *email,
				      Estore__Account__V1__AccountCredentials **out,
				      rpc_status *st);

/* AccountService.GetAccount("me") as the caller of ctx: their own bearer
 * token is forwarded, so the account service applies its ownership rule to
 * them, not to us. */
rpc_code clients_get_own_account(clients *c, rpc_ctx *ctx,
				 Estore__Account__V1__Account **out,
				 rpc_status *st);

/* AccountService.SetPasswordHash (internal). */
rpc_code clients_set_password_hash(clients *c, rpc_ctx *ctx, const char *id,
				   const char *hash, rpc_status *st);

/* TokenService.IssueTokenPair (internal). */
rpc_code clients_issue_token_pair(clients *c, rpc_ctx *ctx,
				  const char *account_id, char **roles,
				  size_t n_roles,
				  Estore__Token__V1__TokenPair **out,
				  rpc_status *st);

/* TokenService.RefreshTokenPair (internal), with no roles: the token
 * service keeps the roles it stored with the refresh family. */
rpc_code clients_refresh_token_pair(clients *c, rpc_ctx *ctx,
				    const char *refresh_token,
				    Estore__Token__V1__TokenPair **out,
				    rpc_status *st);

/* TokenService.ValidateToken (public; sent without our identity). */
rpc_code clients_validate_token(clients *c, rpc_ctx *ctx,
				const char *access_token,
				Estore__Token__V1__TokenClaims **out,
				rpc_status *st);

/* TokenService.RevokeTokens (internal). */
rpc_code clients_revoke_tokens(clients *c, rpc_ctx *ctx,
			       const Estore__Token__V1__RevokeTokensRequest *req,
			       rpc_status *st);

/* grpc.health.v1.Health/Check("") of each service within
 * probe_timeout_ms: true when SERVING (for deps.h probes, so they take
 * `void *` = the clients). */
bool clients_probe_account(void *c);
bool clients_probe_token(void *c);

#endif
