/*
 * svctoken.h - this service's own identity towards others: a service
 * access token obtained from the token service with the service's secret
 * (TokenService.IssueServiceToken), cached and renewed before it expires.
 * Thread-safe.
 */
#ifndef ESTORE_SVC_SVCTOKEN_H
#define ESTORE_SVC_SVCTOKEN_H

#include "rpc/channel.h"
#include "rpc/metadata.h"
#include "rpc/status.h"

typedef struct svctoken svctoken;

/* The secret is copied; never logged. */
svctoken *svctoken_new(rpc_channel *token_ch, const char *service,
		       const char *secret);
void svctoken_free(svctoken *t);

/* Adds "authorization: Bearer <service token>" to md, fetching or renewing
 * the token when needed. Returns RPC_OK, or the token service's failure
 * (UNAVAILABLE, UNAUTHENTICATED for a wrong secret) with a message. */
rpc_code svctoken_authorize(svctoken *t, rpc_metadata *md, rpc_status *st);

#endif
