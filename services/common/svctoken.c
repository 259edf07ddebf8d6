/*
 * svctoken.c - this service's access token for calling other services.
 */
#include "services/common/svctoken.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "estore/token/v1/token.rpc.h"
#include "rpc/log.h"
#include "rpc/loop.h"

#define NS_PER_S 1000000000LL
/* One attempt to get a token is bounded: the call that needs it has its
 * own deadline, and a token service that hangs must not eat all of it. */
#define ISSUE_TIMEOUT_MS 2000
/* An old token is still used after a failed renewal while it has at least
 * this much life left. */
#define MIN_USABLE_NS (5 * NS_PER_S)

struct svctoken {
	rpc_channel *ch;
	char *service;
	char *secret;

	pthread_mutex_t lock;     /* also serialises fetches: one request to
				     the token service when many threads
				     find the token stale at once */
	char *header;             /* "Bearer <token>", NULL when none */
	long long renew_at_ns;    /* rpc_now_ns clock */
	long long expires_at_ns;
};

svctoken *svctoken_new(rpc_channel *token_ch, const char *service,
		       const char *secret)
{
	svctoken *t;

	if (!token_ch || !service || !secret)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->ch = token_ch;
	t->service = strdup(service);
	t->secret = strdup(secret);
	if (!t->service || !t->secret) {
		free(t->service);
		free(t->secret);
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

static void wipe_free(char *s)
{
	/* Secrets and tokens do not linger in freed memory. */
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void svctoken_free(svctoken *t)
{
	if (!t)
		return;
	wipe_free(t->header);
	wipe_free(t->secret);
	free(t->service);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static void set_status(rpc_status *st, rpc_code code, const char *msg)
{
	if (!st)
		return;
	/* Overwritten, not disposed, like rpc_channel_call does: the caller
	 * passes a fresh struct and disposes what it gets. */
	st->code = code;
	st->message = strdup(msg);
}

/* Asks the token service; under t->lock. */
static rpc_code fetch(svctoken *t, rpc_status *st)
{
	Estore__Token__V1__IssueServiceTokenRequest req =
		ESTORE__TOKEN__V1__ISSUE_SERVICE_TOKEN_REQUEST__INIT;
	Estore__Token__V1__ServiceToken *resp = NULL;
	rpc_call_opts opts = { .timeout_ms = ISSUE_TIMEOUT_MS };
	rpc_status cs = { 0 };
	long long now, ttl, margin;
	char *header;
	rpc_code code;

	req.service = t->service;
	req.secret = t->secret;
	now = rpc_now_ns();
	code = estore_token_v1_TokenService_issue_service_token(t->ch, &opts,
								&req, &resp,
								&cs);
	if (code != RPC_OK) {
		/* A wrong secret (UNAUTHENTICATED) keeps its code so the
		 * operator sees a configuration error, not an outage. */
		if (code != RPC_UNAUTHENTICATED && code != RPC_PERMISSION_DENIED)
			code = RPC_UNAVAILABLE;
		rpc_log(RPC_LOG_WARN, "svctoken",
			"cannot get a service token for %s: %s%s%s", t->service,
			rpc_code_name(code), cs.message ? ": " : "",
			cs.message ? cs.message : "");
		set_status(st, code, code == RPC_UNAVAILABLE
			   ? "token service unavailable"
			   : "this service's credentials were refused");
		rpc_status_dispose(&cs);
		return code;
	}
	rpc_status_dispose(&cs);
	if (!resp->access_token || !*resp->access_token ||
	    resp->expires_in <= 0) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		set_status(st, RPC_UNAVAILABLE, "token service gave no token");
		return RPC_UNAVAILABLE;
	}
	if (asprintf(&header, "Bearer %s", resp->access_token) < 0) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		set_status(st, RPC_RESOURCE_EXHAUSTED, "out of memory");
		return RPC_RESOURCE_EXHAUSTED;
	}
	ttl = (long long)resp->expires_in * NS_PER_S;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	/* Renew a minute before expiry, or at three quarters of a short
	 * lifetime, so a token never expires on its way to the callee. */
	margin = 60 * NS_PER_S;
	if (margin > ttl / 4)
		margin = ttl / 4;
	wipe_free(t->header);
	t->header = header;
	t->expires_at_ns = now + ttl;
	t->renew_at_ns = now + ttl - margin;
	rpc_log(RPC_LOG_DEBUG, "svctoken", "service token for %s, valid %llds",
		t->service, ttl / NS_PER_S);
	return RPC_OK;
}

rpc_code svctoken_authorize(svctoken *t, rpc_metadata *md, rpc_status *st)
{
	rpc_code code = RPC_OK;
	long long now;
	int rc;

	if (st) {
		st->code = RPC_OK;
		st->message = NULL;
	}
	pthread_mutex_lock(&t->lock);
	now = rpc_now_ns();
	if (!t->header || now >= t->renew_at_ns) {
		code = fetch(t, st);
		/* A failed renewal is not cached (the next call asks again),
		 * but a token that is still good keeps the calls going. */
		if (code != RPC_OK && t->header &&
		    t->expires_at_ns - now >= MIN_USABLE_NS) {
			code = RPC_OK;
			rpc_status_dispose(st);
		}
	}
	if (code == RPC_OK) {
		rc = rpc_metadata_add(md, "authorization", t->header,
				      strlen(t->header));
		if (rc != 0) {
			code = rc == RPC_ERR_NOMEM ? RPC_RESOURCE_EXHAUSTED
						   : RPC_INTERNAL;
			set_status(st, code, "cannot add the service token");
		}
	}
	pthread_mutex_unlock(&t->lock);
	return code;
}
