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

/* Emits <base>.rpc.h / <base>.rpc.c for a file to generate. Returns NULL
 * or an error message for CodeGeneratorResponse.error. */
const char *cg_gen_rpc(const cg_request *req, const cg_fdp *fd,
		       cg_buf *header, cg_buf *source);

/* Emits <base>.desc.h / <base>.desc.c (descriptor only) for an imported
 * file that is not generated in this run. */
const char *cg_gen_desc(const cg_request *req, const cg_fdp *fd,
			cg_buf *header, cg_buf *source);

#endif
