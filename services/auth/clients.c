/*
 * clients.c - channels to the account and token services. See clients.h.
 */
#include "clients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estore/account/v1/account.rpc.h"
#include "estore/token/v1/token.rpc.h"
#include "grpc/health/v1/health.rpc.h"
#include "rpc/log.h"
#include "services/common/svctoken.h"

struct clients {
	rpc_channel *account;
	rpc_channel *token;
	svctoken *identity;
	long long timeout_ms;
	long long probe_timeout_ms;
};

clients *clients_new(const clients_config *cfg)
{
	clients *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->timeout_ms = cfg->timeout_ms;
	c->probe_timeout_ms = cfg->probe_timeout_ms;
	c->account = rpc_channel_new(cfg->account_target, NULL);
	c->token = rpc_channel_new(cfg->token_target, NULL);
	if (c->account == NULL || c->token == NULL)
		goto fail;
	c->identity = svctoken_new(c->token, cfg->service_name,
				   cfg->service_secret);
	if (c->identity == NULL)
		goto fail;
	return c;
fail:
	clients_free(c);
	return NULL;
}

void clients_free(clients *c)
{
	if (c == NULL)
		return;
	/* The identity uses the token channel: free it first. */
	svctoken_free(c->identity);
	rpc_channel_free(c->account);
	rpc_channel_free(c->token);
	free(c);
}

rpc_channel *clients_token_channel(clients *c)
{
	return c->token;
}

/* The incoming call's deadline travels on; without one, our own timeout
 * keeps a stuck dependency from holding a worker forever. */
static void call_opts(const clients *c, rpc_ctx *ctx, rpc_metadata *md,
		      rpc_call_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->metadata = md;
	if (ctx != NULL && rpc_ctx_deadline(ctx) > 0)
		opts->deadline_ns = rpc_ctx_deadline(ctx);
	else
		opts->timeout_ms = c->timeout_ms;
}

/* Adds our service token to md. The token service's verdict on our own
 * secret must not reach the caller as if it were about them. */
static rpc_code authorize(clients *c, rpc_metadata *md, rpc_status *st)
{
	rpc_status own = { 0 };
	rpc_code code = svctoken_authorize(c->identity, md, &own);

	if (code == RPC_OK)
		return RPC_OK;
	rpc_log(RPC_LOG_ERROR, "clients", "cannot obtain a service token: %s: %s",
		rpc_code_name(code), own.message != NULL ? own.message : "");
	rpc_status_dispose(&own);
	rpc_status_dispose(st);
	st->code = code == RPC_UNAVAILABLE ? RPC_UNAVAILABLE : RPC_INTERNAL;
	st->message = strdup(code == RPC_UNAVAILABLE ?
			     "token service unavailable" :
			     "service identity refused");
	return st->code;
}

rpc_code clients_create_account(clients *c, rpc_ctx *ctx,
				const Estore__Account__V1__CreateAccountRequest *req,
				Estore__Account__V1__Account **out,
				rpc_status *st)
{
	rpc_metadata md;
	rpc_call_opts opts;
	rpc_code code;

	*out = NULL;
	rpc_metadata_init(&md);
	code = authorize(c, &md, st);
	if (code == RPC_OK) {
		call_opts(c, ctx, &md, &opts);
		code = estore_account_v1_AccountService_create_account(
			c->account, &opts, req, out, st);
	}
	rpc_metadata_dispose(&md);
	return code;
}

rpc_code clients_get_account_by_email(clients *c, rpc_ctx *ctx,
				      const char *email,
				      Estore__Account__V1__AccountCredentials **out,
				      rpc_status *st)
{
	Estore__Account__V1__GetAccountByEmailRequest req =
		ESTORE__ACCOUNT__V1__GET_ACCOUNT_BY_EMAIL_REQUEST__INIT;
	rpc_metadata md;
	rpc_call_opts opts;
	rpc_code code;

	*out = NULL;
	req.email = (char *)email;
	rpc_metadata_init(&md);
	code = authorize(c, &md, st);
	if (code == RPC_OK) {
		call_opts(c, ctx, &md, &opts);
		code = estore_account_v1_AccountService_get_account_by_email(
			c->account, &opts, &req, out, st);
	}
	rpc_metadata_dispose(&md);
	return code;
}

rpc_code clients_get_own_account(clients *c, rpc_ctx *ctx,
				 Estore__Account__V1__Account **out,
				 rpc_status *st)
{
	Estore__Account__V1__GetAccountRequest req =
		ESTORE__ACCOUNT__V1__GET_ACCOUNT_REQUEST__INIT;
	rpc_metadata md;
	rpc_call_opts opts;
	const char *bearer;
	size_t len;
	char *value;
	rpc_code code;

	*out = NULL;
	bearer = rpc_ctx_bearer(ctx, &len);
	if (bearer == NULL) {
		st->code = RPC_UNAUTHENTICATED;
		st->message = strdup("missing access token");
		return RPC_UNAUTHENTICATED;
	}
	value = malloc(len + sizeof("Bearer "));
	if (value == NULL) {
		st->code = RPC_INTERNAL;
		st->message = strdup("out of memory");
		return RPC_INTERNAL;
	}
	memcpy(value, "Bearer ", 7);
	memcpy(value + 7, bearer, len);
	value[7 + len] = '\0';
	rpc_metadata_init(&md);
	if (rpc_metadata_add(&md, "authorization", value, 7 + len) < 0) {
		code = RPC_INTERNAL;
		st->code = code;
		st->message = strdup("cannot forward the access token");
	} else {
		req.id = (char *)"me";
		call_opts(c, ctx, &md, &opts);
		code = estore_account_v1_AccountService_get_account(
			c->account, &opts, &req, out, st);
	}
	rpc_metadata_dispose(&md);
	free(value);
	return code;
}

rpc_code clients_set_password_hash(clients *c, rpc_ctx *ctx, const char *id,
				   const char *hash, rpc_status *st)
{
	Estore__Account__V1__SetPasswordHashRequest req =
		ESTORE__ACCOUNT__V1__SET_PASSWORD_HASH_REQUEST__INIT;
	Google__Protobuf__Empty *resp = NULL;
	rpc_metadata md;
	rpc_call_opts opts;
	rpc_code code;

	req.id = (char *)id;
	req.password_hash = (char *)hash;
	rpc_metadata_init(&md);
	code = authorize(c, &md, st);
	if (code == RPC_OK) {
		call_opts(c, ctx, &md, &opts);
		code = estore_account_v1_AccountService_set_password_hash(
			c->account, &opts, &req, &resp, st);
	}
	if (resp != NULL)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	rpc_metadata_dispose(&md);
	return code;
}

rpc_code clients_issue_token_pair(clients *c, rpc_ctx *ctx,
				  const char *account_id, char **roles,
				  size_t n_roles,
				  Estore__Token__V1__TokenPair **out,
				  rpc_status *st)
{
	Estore__Token__V1__IssueTokenPairRequest req =
		ESTORE__TOKEN__V1__ISSUE_TOKEN_PAIR_REQUEST__INIT;
	rpc_metadata md;
	rpc_call_opts opts;
	rpc_code code;

	*out = NULL;
	req.account_id = (char *)account_id;
	req.roles = roles;
	req.n_roles = n_roles;
	rpc_metadata_init(&md);
	code = authorize(c, &md, st);
	if (code == RPC_OK) {
		call_opts(c, ctx, &md, &opts);
		code = estore_token_v1_TokenService_issue_token_pair(
			c->token, &opts, &req, out, st);
	}
	rpc_metadata_dispose(&md);
	return code;
}

rpc_code clients_refresh_token_pair(clients *c, rpc_ctx *ctx,
				    const char *refresh_token,
				    Estore__Token__V1__TokenPair **out,
				    rpc_status *st)
{
	Estore__Token__V1__RefreshTokenPairRequest req =
		ESTORE__TOKEN__V1__REFRESH_TOKEN_PAIR_REQUEST__INIT;
	rpc_metadata md;
	rpc_call_opts opts;
	rpc_code code;

	*out = NULL;
	req.refresh_token = (char *)refresh_token;
	rpc_metadata_init(&md);
	code = authorize(c, &md, st);
	if (code == RPC_OK) {
		call_opts(c, ctx, &md, &opts);
		code = estore_token_v1_TokenService_refresh_token_pair(
			c->token, &opts, &req, out, st);
	}
	rpc_metadata_dispose(&md);
	return code;
}

rpc_code clients_validate_token(clients *c, rpc_ctx *ctx,
				const char *access_token,
				Estore__Token__V1__TokenClaims **out,
				rpc_status *st)
{
	Estore__Token__V1__ValidateTokenRequest req =
		ESTORE__TOKEN__V1__VALIDATE_TOKEN_REQUEST__INIT;
	rpc_call_opts opts;

	*out = NULL;
	req.access_token = (char *)access_token;
	call_opts(c, ctx, NULL, &opts);
	return estore_token_v1_TokenService_validate_token(c->token, &opts,
							   &req, out, st);
}

rpc_code clients_revoke_tokens(clients *c, rpc_ctx *ctx,
			       const Estore__Token__V1__RevokeTokensRequest *req,
			       rpc_status *st)
{
	Google__Protobuf__Empty *resp = NULL;
	rpc_metadata md;
	rpc_call_opts opts;
	rpc_code code;

	rpc_metadata_init(&md);
	code = authorize(c, &md, st);
	if (code == RPC_OK) {
		call_opts(c, ctx, &md, &opts);
		code = estore_token_v1_TokenService_revoke_tokens(
			c->token, &opts, req, &resp, st);
	}
	if (resp != NULL)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	rpc_metadata_dispose(&md);
	return code;
}

static bool probe(rpc_channel *ch, long long timeout_ms)
{
	Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *resp = NULL;
	rpc_call_opts opts = { .timeout_ms = timeout_ms };
	bool ok;

	if (grpc_health_v1_Health_check(ch, &opts, &req, &resp, NULL) != RPC_OK)
		return false;
	ok = resp->status ==
	     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ok;
}

bool clients_probe_account(void *c)
{
	const clients *cl = c;

	return probe(cl->account, cl->probe_timeout_ms);
}

bool clients_probe_token(void *c)
{
	const clients *cl = c;

	return probe(cl->token, cl->probe_timeout_ms);
}
