/*
 * service.h - static descriptions of services, methods and proto files.
 *
 * The protoc plugin (rpc/codegen) emits one rpc_file_desc per .proto file
 * and one rpc_service_desc per service; the server registers methods from
 * them, the channel calls through them, and reflection serves the files.
 * All of it is read-only and lives for the whole program.
 */
#ifndef ESTORE_RPC_SERVICE_H
#define ESTORE_RPC_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

#include "rpc/status.h"

/* The generated-code contract below; *.rpc.h / *.desc.h refuse to compile
 * against another version (regenerate with the `generate` target). */
#define RPC_CODEGEN_VERSION 3

typedef struct rpc_ctx rpc_ctx;
typedef struct rpc_stream rpc_stream;

typedef enum rpc_method_kind {
	RPC_UNARY = 0,
	RPC_SERVER_STREAMING = 1, /* one request, many replies */
	RPC_CLIENT_STREAMING = 2, /* many requests, one reply */
	RPC_BIDI_STREAMING = 3,
} rpc_method_kind;

/* A serialized google.protobuf.FileDescriptorProto and what it defines. */
typedef struct rpc_file_desc {
	const char *name;                          /* "estore/testing/v1/echo.proto" */
	const uint8_t *data;                       /* FileDescriptorProto bytes */
	size_t len;
	const struct rpc_file_desc *const *deps;   /* direct imports */
	size_t n_deps;
	const char *const *symbols;                /* fully-qualified: messages
						      (nested too), enums, services,
						      methods ("pkg.Svc.Method") */
	size_t n_symbols;
} rpc_file_desc;

/*
 * The generated endpoint: casts the untyped arguments back to the method's
 * types and calls the implementation `impl`. Which arguments are set
 * depends on the kind:
 *   unary            in, out
 *   server streaming in, stream (send replies)
 *   client streaming stream (receive requests), out
 *   bidi             stream
 */
typedef rpc_code (*rpc_invoke_fn)(void (*impl)(void), rpc_ctx *ctx,
				  const ProtobufCMessage *in,
				  ProtobufCMessage *out, rpc_stream *stream);

/* Who may call a method: (estore.api.v1.access) in the .proto. The server
 * checks it before the handler runs (see rpc_server_set_authenticator). */
typedef enum rpc_access {
	RPC_ACCESS_UNSPECIFIED = 0, /* no rule (grpc.* services) */
	RPC_ACCESS_PUBLIC = 1,      /* anyone; a presented token must be valid */
	RPC_ACCESS_ACCOUNT = 2,     /* any signed-in account, or a service */
	RPC_ACCESS_VENDOR = 3,      /* role vendor or admin */
	RPC_ACCESS_ADMIN = 4,       /* role admin */
	RPC_ACCESS_INTERNAL = 5,    /* service tokens only */
} rpc_access;

typedef struct rpc_method_desc {
	const char *name;                         /* "UnaryEcho" */
	const char *path;                         /* "/estore.testing.v1.Echo/UnaryEcho" */
	rpc_method_kind kind;
	const ProtobufCMessageDescriptor *input;
	const ProtobufCMessageDescriptor *output;
	/* idempotency_level is NO_SIDE_EFFECTS or IDEMPOTENT: the client may
	 * retry it after UNAVAILABLE. */
	bool idempotent;
	rpc_access access;
	rpc_invoke_fn invoke;
} rpc_method_desc;

/*
 * One REST binding of a unary method, from its google.api.http option
 * (each additional_bindings entry is one more). The edge proxy routes
 * JSON/HTTP requests by these; the codegen has checked that every
 * {variable} of the pattern and the body field exist in the request.
 */
typedef struct rpc_http_route {
	const rpc_method_desc *method;
	const char *verb;          /* "GET", "POST", "PUT", "PATCH", "DELETE" or a custom kind */
	const char *pattern;       /* "/v1/accounts/{id}" or with a sub-pattern, {name=shelves/...} */
	const char *body;          /* "" (none), "*" (the whole request) or a request field */
	const char *response_body; /* "" (the whole reply) or a reply field */
} rpc_http_route;

typedef struct rpc_service_desc {
	const char *name;                         /* "estore.testing.v1.Echo" */
	const rpc_method_desc *methods;
	size_t n_methods;
	const rpc_file_desc *file;
	const rpc_http_route *http_routes;        /* NULL when none */
	size_t n_http_routes;
} rpc_service_desc;

#endif
