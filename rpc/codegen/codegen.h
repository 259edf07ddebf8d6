/*
 * codegen.h - internals of protoc-gen-estore, the protoc plugin that emits
 * the rpc/ glue (*.rpc.h/.c) and embedded descriptors (*.desc.h/.c).
 *
 * The plugin is a short-lived build tool: allocation failure ends the
 * process (cg_oom), and every string it builds comes from one pool that
 * main() frees at exit, so the generators never track ownership.
 */
#ifndef ESTORE_RPC_CODEGEN_H
#define ESTORE_RPC_CODEGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/protobuf/compiler/plugin.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"

/* Bumped together with RPC_CODEGEN_VERSION in rpc/service.h whenever the
 * shape of generated code changes. */
#define CG_VERSION 3

typedef Google__Protobuf__FileDescriptorProto cg_fdp;
typedef Google__Protobuf__DescriptorProto cg_msgp;
typedef Google__Protobuf__EnumDescriptorProto cg_enump;
typedef Google__Protobuf__ServiceDescriptorProto cg_svcp;
typedef Google__Protobuf__MethodDescriptorProto cg_methodp;

/* ---- output text ------------------------------------------------------ */

typedef struct cg_buf {
	char *data;
	size_t len;
	size_t cap;
} cg_buf;

void cg_printf(cg_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void cg_puts(cg_buf *b, const char *s);
void cg_buf_dispose(cg_buf *b);

/* ---- string pool (freed by cg_pool_free) ----------------------------- */

_Noreturn void cg_oom(void);
char *cg_strdup(const char *s);
char *cg_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cg_pool_free(void);

/* ---- names, exactly as protoc-c derives them ---------------------------- */

/* "estore/testing/v1/echo.proto" → "estore_testing_v1_echo_proto". */
char *cg_ident(const char *s);
/* Upper-cased cg_ident, for include guards. */
char *cg_guard(const char *s);
/* "estore/testing/v1/echo.proto" → "estore/testing/v1/echo". */
char *cg_strip_proto(const char *path);
/* ".estore.testing.v1.EchoRequest" → "Estore__Testing__V1__EchoRequest"
 * (protoc-c's FullNameToC: each dotted piece CamelCased from '_'). */
char *cg_c_type(const char *full_name);
/* ".estore.testing.v1.EchoRequest" → "estore__testing__v1__echo_request"
 * (protoc-c's FullNameToLower); append "__descriptor" for the descriptor. */
char *cg_c_lower(const char *full_name);
/* "UnaryEcho" → "unary_echo" (protoc-c's CamelToLower, also what it uses
 * for service members, so the two stay recognisable side by side). */
char *cg_camel_to_lower(const char *name);

/* ---- generators --------------------------------------------------------- */

/* Everything protoc handed us, indexed for dependency lookups. */
typedef struct cg_request {
	cg_fdp **files;    /* topological order, as protoc sends them */
	bool *generate;    /* files[i] is in file_to_generate */
	size_t n_files;
} cg_request;

const cg_fdp *cg_request_find(const cg_request *req, const char *name,
			      bool *generated);

/* One REST binding from a method's google.api.http option (or one of its
 * additional_bindings). */
typedef struct cg_http_binding {
	const char *verb;          /* "GET", ... or a custom kind */
	const char *pattern;       /* "/v1/accounts/{id}" */
	const char *body;          /* "", "*" or a field of the request */
	const char *response_body; /* "" or a field of the reply */
} cg_http_binding;

/* The method's bindings, checked against its request and reply messages;
 * *out is malloc'd (free it; NULL when none). Returns NULL or an error. */
const char *cg_method_http(const cg_request *req, const cg_methodp *m,
			   cg_http_binding **out, size_t *n_out);

/* The message named ".pkg.Msg" (or nested ".pkg.Msg.Inner") in any file
 * of the request, or NULL. */
const cg_msgp *cg_find_message(const cg_request *req, const char *full_name);

/* The field a dotted path ("account.id") names from `msg`, or NULL. */
const Google__Protobuf__FieldDescriptorProto *
cg_find_field(const cg_request *req, const cg_msgp *msg, const char *path);

/* The proto comment attached to the element at a SourceCodeInfo path, or
 * NULL. */
const char *cg_leading_comment(const cg_fdp *fd, const int32_t *path,
			       size_t n);

/* Emits openapi.json: an OpenAPI 3 document of every REST binding of the
 * files to generate. Returns NULL or an error message. */
const char *cg_gen_openapi(const cg_request *req, cg_buf *out);

/* Emits <base>.rpc.h / <base>.rpc.c for a file to generate. Returns NULL
 * or an error message for CodeGeneratorResponse.error. */
const char *cg_gen_rpc(const cg_request *req, const cg_fdp *fd,
		       cg_buf *header, cg_buf *source);

/* Emits <base>.desc.h / <base>.desc.c (descriptor only) for an imported
 * file that is not generated in this run. */
const char *cg_gen_desc(const cg_request *req, const cg_fdp *fd,
			cg_buf *header, cg_buf *source);

#endif
