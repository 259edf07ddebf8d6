/*
 * authn.h - how services other than the token service verify access
 * tokens: they ask the token service (TokenService.ValidateToken), which
 * checks signature, algorithm, issuer, audience, times and revocation, so
 * a revoked token is refused everywhere at once. A token service that
 * cannot be reached means UNAVAILABLE, never "valid".
 */
#ifndef ESTORE_SVC_AUTHN_H
#define ESTORE_SVC_AUTHN_H

#include "rpc/channel.h"
#include "rpc/server.h"

/* Installs an authenticator on srv that validates through `token_ch`
 * (owned by the caller, must outlive the server). */
void authn_install_remote(rpc_server *srv, rpc_channel *token_ch);

/* Maps role names ("customer", "vendor", "admin") to RPC_ROLE_* bits;
 * unknown names are ignored. */
unsigned authn_roles_from_names(char *const *names, size_t n);

#endif
