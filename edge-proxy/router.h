/*
 * router.h - the edge proxy's REST routing: HTTP method + path → the gRPC
 * method that serves it, with the path variables to copy into the request.
 *
 * Routes come from the services' generated descriptors (rpc_http_route,
 * from each RPC's google.api.http option), so a route exists exactly when
 * a contract declares it. Path templates follow google/api/http.proto:
 *
 *   Template = "/" Segments [ ":" Verb ]
 *   Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}"
 *
 * "*" matches one path segment, "**" the rest of the path (last only);
 * "{id}" is "{id=*}". When several routes match, the one with more literal
 * segments wins, then the one with fewer "**" (so "/v1/accounts/me" would
 * beat "/v1/accounts/{id}" if both were declared).
 *
 * The router is immutable once built: any number of threads may match
 * concurrently.
 */
#ifndef ESTORE_EDGE_ROUTER_H
#define ESTORE_EDGE_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "rpc/service.h"

/* Path variables one route may bind. */
#define EDGE_ROUTE_MAX_VARS 8

typedef struct edge_router edge_router;

/*
 * Builds the router from every http_routes entry of `services`. Returns
 * NULL with a message in err when a pattern does not parse, binds more than
 * EDGE_ROUTE_MAX_VARS variables, or two routes have the same verb and the
 * same template (which would make the choice arbitrary), or on no memory.
 * The descriptors must outlive the router (they are static in generated
 * code).
 */
edge_router *edge_router_new(const rpc_service_desc *const *services,
			     size_t n_services, char *err, size_t errlen);

/* edge_router_free(NULL) is a no-op. */
void edge_router_free(edge_router *r);

/* Number of routes held. */
size_t edge_router_count(const edge_router *r);

typedef struct edge_path_var {
	const char *field;   /* request field path, "id" or "account.id" */
	char *value;         /* percent-decoded, NUL-terminated, owned by the match */
} edge_path_var;

typedef struct edge_match {
	const rpc_http_route *route;
	size_t n_vars;
	edge_path_var vars[EDGE_ROUTE_MAX_VARS];
} edge_match;

typedef enum edge_route_result {
	EDGE_ROUTE_OK = 0,
	EDGE_ROUTE_NOT_FOUND,            /* no template matches the path: 404 */
	EDGE_ROUTE_METHOD_NOT_ALLOWED,   /* the path matches, the method does not: 405 */
	EDGE_ROUTE_BAD_PATH,             /* bad percent-encoding or a NUL: 400 */
	EDGE_ROUTE_NO_MEMORY,
} edge_route_result;

/*
 * Matches `method` ("GET", ...; HEAD is not GET) and the path of a request
 * target (`path`, `len` bytes, without the query string). On EDGE_ROUTE_OK
 * *m holds the route and its variables: release it with
 * edge_match_dispose. On EDGE_ROUTE_METHOD_NOT_ALLOWED, `allow` (may be
 * NULL) receives the methods the path accepts, comma-separated, for the
 * Allow header. Nothing needs disposing on other results.
 */
edge_route_result edge_router_match(const edge_router *r, const char *method,
				    const char *path, size_t len, edge_match *m,
				    char *allow, size_t allow_cap);

/* Strict percent-decoding of [p, p+len) into out (len + 1 bytes; NUL-
 * terminated): '+' becomes a space when plus_is_space (query strings).
 * Returns the decoded length, or -1 on a bad escape ("%zz", a cut "%4")
 * or a NUL byte, which no field may hold. */
long edge_url_decode(const char *p, size_t len, char *out, bool plus_is_space);

/* Frees the variable values of a match; safe on a zeroed match. */
void edge_match_dispose(edge_match *m);

#endif
