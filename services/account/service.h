/*
 * service.h - estore.account.v1.AccountService: business rules over the
 * protobuf-c messages (validation, ownership, field masks, paging), with
 * every query in store_pg.h.
 *
 * Who may do what (the server has already enforced the contract's access
 * rule, so ACCESS_ACCOUNT methods see any valid token, ACCESS_ADMIN ones an
 * admin, ACCESS_INTERNAL ones a service):
 *   GetAccount     own account ("me" or own id), admin any, service any
 *   UpdateAccount  own account or admin; roles only by an admin; services
 *                  never (they have SetPasswordHash for what they need)
 *   DeleteAccount  own account or admin; services never
 * Another account's id from a non-admin is PERMISSION_DENIED, not
 * NOT_FOUND: ids are random UUIDs, so answering honestly tells an attacker
 * nothing guessable, and clients get a clear reason.
 *
 * While `ready` is false (migrations not applied yet, e.g. PostgreSQL was
 * down at start) every call that needs the database answers UNAVAILABLE.
 */
#ifndef ESTORE_ACCOUNT_SERVICE_H
#define ESTORE_ACCOUNT_SERVICE_H

#include <stdatomic.h>

#include "rpc/server.h"
#include "services/common/pg.h"

typedef struct acct_service {
	pg_pool *pool;       /* borrowed; outlives the server */
	atomic_bool ready;   /* schema migrated; set once, never cleared */
} acct_service;

/* Registers every AccountService method on srv with `svc` as the user
 * pointer. Returns 0 or an RPC_ERR_* of rpc_server_add_method. */
int acct_service_register(rpc_server *srv, acct_service *svc);

#endif
