/*
 * reflection.c - grpc.reflection.v1 and v1alpha ServerReflectionInfo.
 *
 * The two protos are one schema published under two packages: same
 * messages, same field numbers, different C types. Rather than write the
 * handler twice (or cast one version's structs to the other's), one
 * handler serves both and touches messages only through their protobuf-c
 * descriptors, by field number. The request's own descriptor says which
 * version is talking; the response is built from the matching descriptor.
 * rpc_reflection_register checks once that both schemas have the fields
 * and types assumed here, so the handler can write through field offsets.
 *
 * Answers come from the rpc_file_desc the protoc plugin embeds for each
 * registered service (and, through deps, for everything they import).
 * Nothing is copied: descriptor bytes point at the static arrays.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/arena.h"
#include "rpc/reflection.h"
#include "rpc/server.h"
#include "rpc/service.h"
#include "grpc/reflection/v1/reflection.rpc.h"
#include "grpc/reflection/v1alpha/reflection.rpc.h"

/* Field numbers, identical in both versions. */
enum {
	/* ServerReflectionRequest (fields 3-7 form the message_request oneof) */
	REQ_HOST = 1,
	REQ_FILE_BY_FILENAME = 3,
	REQ_FILE_CONTAINING_SYMBOL = 4,
	REQ_FILE_CONTAINING_EXTENSION = 5,
	REQ_ALL_EXTENSION_NUMBERS_OF_TYPE = 6,
	REQ_LIST_SERVICES = 7,
	/* ServerReflectionResponse (fields 4-7 form the message_response oneof) */
	RESP_VALID_HOST = 1,
	RESP_ORIGINAL_REQUEST = 2,
	RESP_FILE_DESCRIPTOR = 4,
	RESP_ALL_EXTENSION_NUMBERS = 5,
	RESP_LIST_SERVICES = 6,
	RESP_ERROR = 7,
	/* FileDescriptorResponse */
	FDR_FILE_DESCRIPTOR_PROTO = 1,
	/* ExtensionNumberResponse */
	ENR_BASE_TYPE_NAME = 1,
	ENR_EXTENSION_NUMBER = 2,
	/* ListServiceResponse / ServiceResponse */
	LSR_SERVICE = 1,
	SR_NAME = 1,
	/* ErrorResponse */
	ER_ERROR_CODE = 1,
	ER_ERROR_MESSAGE = 2,
};

typedef struct refl_version {
	const ProtobufCMessageDescriptor *request;
	const ProtobufCMessageDescriptor *response;
} refl_version;

static const refl_version versions[] = {
	{ &grpc__reflection__v1__server_reflection_request__descriptor,
	  &grpc__reflection__v1__server_reflection_response__descriptor },
	{ &grpc__reflection__v1alpha__server_reflection_request__descriptor,
	  &grpc__reflection__v1alpha__server_reflection_response__descriptor },
};

/* ---- field access by number ------------------------------------------- */

/*
 * Fields are reached at the offsets their descriptor gives, the way
 * protobuf-c's own pack/unpack code does. A oneof's members share one slot,
 * so a member is read only when the case says it is the one set.
 */

static const ProtobufCFieldDescriptor *field(const ProtobufCMessageDescriptor *d,
					     unsigned num)
{
	return protobuf_c_message_descriptor_get_field(d, num);
}

static void *slot(const void *msg, const ProtobufCFieldDescriptor *f)
{
	return (char *)msg + f->offset;
}

/* The element count of a repeated field, or the case of a oneof member. */
static void *quantifier(const void *msg, const ProtobufCFieldDescriptor *f)
{
	return (char *)msg + f->quantifier_offset;
}

static bool in_oneof(const ProtobufCFieldDescriptor *f)
{
	return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

/* A cleared message of type d from the arena, or NULL. */
static ProtobufCMessage *new_message(rpc_arena *a,
				     const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = rpc_arena_alloc(a, d->sizeof_message);

	if (m)
		protobuf_c_message_init(d, m);
	return m;
}

/* Sets a singular pointer field (string or message); for a oneof member
 * also selects it (the case value is the field number). */
static void set_ptr(ProtobufCMessage *m, unsigned num, const void *value)
{
	const ProtobufCFieldDescriptor *f = field(m->descriptor, num);

	*(const void **)slot(m, f) = value;
	if (in_oneof(f))
		*(uint32_t *)quantifier(m, f) = num;
}

static void set_repeated(ProtobufCMessage *m, unsigned num, size_t n,
			 void *values)
{
	const ProtobufCFieldDescriptor *f = field(m->descriptor, num);

	*(size_t *)quantifier(m, f) = n;
	*(void **)slot(m, f) = values;
}

/* A new sub-message for field `num` of m, of that field's type. */
static ProtobufCMessage *new_child(rpc_arena *a, const ProtobufCMessage *m,
				   unsigned num)
{
	return new_message(a, field(m->descriptor, num)->descriptor);
}

/* ---- schema check ------------------------------------------------------- */

typedef struct expect {
	unsigned num;
	ProtobufCType type;
	ProtobufCLabel label; /* PROTOBUF_C_LABEL_NONE: proto3 singular */
	bool oneof;
} expect;

static bool fields_match(const ProtobufCMessageDescriptor *d,
			 const expect *e, size_t n)
{
	if (d == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		const ProtobufCFieldDescriptor *f = field(d, e[i].num);

		if (f == NULL || f->type != e[i].type ||
		    in_oneof(f) != e[i].oneof ||
		    (!e[i].oneof && f->label != e[i].label))
			return false;
	}
	return true;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define S PROTOBUF_C_LABEL_NONE
#define R PROTOBUF_C_LABEL_REPEATED

/* Everything the handler reads or writes through offsets. */
static bool version_ok(const refl_version *v)
{
	static const expect req[] = {
		{ REQ_HOST, PROTOBUF_C_TYPE_STRING, S, false },
		{ REQ_FILE_BY_FILENAME, PROTOBUF_C_TYPE_STRING, S, true },
		{ REQ_FILE_CONTAINING_SYMBOL, PROTOBUF_C_TYPE_STRING, S, true },
		{ REQ_FILE_CONTAINING_EXTENSION, PROTOBUF_C_TYPE_MESSAGE, S, true },
		{ REQ_ALL_EXTENSION_NUMBERS_OF_TYPE, PROTOBUF_C_TYPE_STRING, S, true },
		{ REQ_LIST_SERVICES, PROTOBUF_C_TYPE_STRING, S, true },
	};
	static const expect resp[] = {
		{ RESP_VALID_HOST, PROTOBUF_C_TYPE_STRING, S, false },
		{ RESP_ORIGINAL_REQUEST, PROTOBUF_C_TYPE_MESSAGE, S, false },
		{ RESP_FILE_DESCRIPTOR, PROTOBUF_C_TYPE_MESSAGE, S, true },
		{ RESP_ALL_EXTENSION_NUMBERS, PROTOBUF_C_TYPE_MESSAGE, S, true },
		{ RESP_LIST_SERVICES, PROTOBUF_C_TYPE_MESSAGE, S, true },
		{ RESP_ERROR, PROTOBUF_C_TYPE_MESSAGE, S, true },
	};
	static const expect fdr[] = {
		{ FDR_FILE_DESCRIPTOR_PROTO, PROTOBUF_C_TYPE_BYTES, R, false },
	};
	static const expect enr[] = {
		{ ENR_BASE_TYPE_NAME, PROTOBUF_C_TYPE_STRING, S, false },
		{ ENR_EXTENSION_NUMBER, PROTOBUF_C_TYPE_INT32, R, false },
	};
	static const expect lsr[] = {
		{ LSR_SERVICE, PROTOBUF_C_TYPE_MESSAGE, R, false },
	};
	static const expect sr[] = {
		{ SR_NAME, PROTOBUF_C_TYPE_STRING, S, false },
	};
	static const expect er[] = {
		{ ER_ERROR_CODE, PROTOBUF_C_TYPE_INT32, S, false },
		{ ER_ERROR_MESSAGE, PROTOBUF_C_TYPE_STRING, S, false },
	};
	const ProtobufCMessageDescriptor *r = v->response;

	if (!fields_match(v->request, req, N(req)) ||
	    !fields_match(r, resp, N(resp)) ||
	    field(r, RESP_ORIGINAL_REQUEST)->descriptor != v->request)
		return false;
	return fields_match(field(r, RESP_FILE_DESCRIPTOR)->descriptor, fdr, N(fdr)) &&
	       fields_match(field(r, RESP_ALL_EXTENSION_NUMBERS)->descriptor, enr, N(enr)) &&
	       fields_match(field(r, RESP_LIST_SERVICES)->descriptor, lsr, N(lsr)) &&
	       fields_match(field(field(r, RESP_LIST_SERVICES)->descriptor,
				  LSR_SERVICE)->descriptor, sr, N(sr)) &&
	       fields_match(field(r, RESP_ERROR)->descriptor, er, N(er));
}

#undef S
#undef R

/* ---- the files a server knows ------------------------------------------ */

typedef struct file_set {
	const rpc_file_desc **v;
	size_t n;
	size_t cap;
} file_set;

static bool set_has(const file_set *s, const rpc_file_desc *f)
{
	/* By name too: two descriptors of one file must not both be sent,
	 * clients reject duplicate file names. */
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] == f || strcmp(s->v[i]->name, f->name) == 0)
			return true;
	return false;
}

/* Adds f and its imports, depth first, each once. Returns 0 or
 * RPC_ERR_NOMEM. Import graphs are acyclic (protoc rejects cycles). */
static int set_add_closure(file_set *s, rpc_arena *a, const rpc_file_desc *f)
{
	if (f == NULL || set_has(s, f))
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		const rpc_file_desc **v = rpc_arena_alloc(a, cap * sizeof(*v));

		if (v == NULL)
			return RPC_ERR_NOMEM;
		if (s->n)
			memcpy(v, s->v, s->n * sizeof(*v));
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = f;
	for (size_t i = 0; i < f->n_deps; i++) {
		int rc = set_add_closure(s, a, f->deps[i]);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The registered services; *n set. NULL with *n = 0 on no memory or none. */
static const rpc_service_desc **services(rpc_server *srv, rpc_arena *a,
					 size_t *n)
{
	const rpc_service_desc *none[1];
	size_t total = rpc_server_services(srv, none, 0);
	const rpc_service_desc **v;

	*n = 0;
	if (total == 0)
		return NULL;
	v = rpc_arena_alloc(a, total * sizeof(*v));
	if (v == NULL)
		return NULL;
	*n = rpc_server_services(srv, v, total);
	if (*n > total)
		*n = total;
	return v;
}

/* Every file reachable from the registered services. */
static int all_files(rpc_server *srv, rpc_arena *a, file_set *out)
{
	size_t n;
	const rpc_service_desc **svc = services(srv, a, &n);

	for (size_t i = 0; i < n; i++) {
		int rc = set_add_closure(out, a, svc[i]->file);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static const rpc_file_desc *find_file(const file_set *all, const char *name)
{
	for (size_t i = 0; i < all->n; i++)
		if (strcmp(all->v[i]->name, name) == 0)
			return all->v[i];
	return NULL;
}

static const rpc_file_desc *find_symbol(const file_set *all, const char *sym)
{
	/* Clients sometimes send the protobuf-internal ".pkg.Name" form. */
	if (sym[0] == '.')
		sym++;
	for (size_t i = 0; i < all->n; i++)
		for (size_t j = 0; j < all->v[i]->n_symbols; j++)
			if (strcmp(all->v[i]->symbols[j], sym) == 0)
				return all->v[i];
	return NULL;
}

/* ---- answers ------------------------------------------------------------- */

/* Turns resp into an ErrorResponse. Returns 0 or RPC_ERR_NOMEM. */
static int answer_error(rpc_arena *a, ProtobufCMessage *resp, rpc_code code,
			const char *what, const char *name)
{
	ProtobufCMessage *er = new_child(a, resp, RESP_ERROR);
	const ProtobufCFieldDescriptor *f;
	char *msg = rpc_arena_sprintf(a, "%s%s%s", what, name ? ": " : "",
				      name ? name : "");

	if (er == NULL || msg == NULL)
		return RPC_ERR_NOMEM;
	f = field(er->descriptor, ER_ERROR_CODE);
	*(int32_t *)slot(er, f) = (int32_t)code;
	set_ptr(er, ER_ERROR_MESSAGE, msg);
	set_ptr(resp, RESP_ERROR, er);
	return 0;
}

/* A FileDescriptorResponse with f first, then its imports, each once. */
static int answer_file(rpc_arena *a, ProtobufCMessage *resp,
		       const rpc_file_desc *f)
{
	ProtobufCMessage *fdr = new_child(a, resp, RESP_FILE_DESCRIPTOR);
	file_set closure = { 0 };
	ProtobufCBinaryData *bytes;
	int rc;

	if (fdr == NULL)
		return RPC_ERR_NOMEM;
	if ((rc = set_add_closure(&closure, a, f)) < 0)
		return rc;
	bytes = rpc_arena_alloc(a, closure.n * sizeof(*bytes));
	if (bytes == NULL)
		return RPC_ERR_NOMEM;
	for (size_t i = 0; i < closure.n; i++) {
		bytes[i].data = (uint8_t *)closure.v[i]->data;
		bytes[i].len = closure.v[i]->len;
	}
	set_repeated(fdr, FDR_FILE_DESCRIPTOR_PROTO, closure.n, bytes);
	set_ptr(resp, RESP_FILE_DESCRIPTOR, fdr);
	return 0;
}

static int answer_services(rpc_server *srv, rpc_arena *a,
			   ProtobufCMessage *resp)
{
	ProtobufCMessage *lsr = new_child(a, resp, RESP_LIST_SERVICES);
	ProtobufCMessage **items;
	const rpc_service_desc **svc;
	size_t n;

	if (lsr == NULL)
		return RPC_ERR_NOMEM;
	svc = services(srv, a, &n);
	items = rpc_arena_alloc(a, (n ? n : 1) * sizeof(*items));
	if (items == NULL || (n > 0 && svc == NULL))
		return RPC_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		items[i] = new_child(a, lsr, LSR_SERVICE);
		if (items[i] == NULL)
			return RPC_ERR_NOMEM;
		set_ptr(items[i], SR_NAME, svc[i]->name);
	}
	set_repeated(lsr, LSR_SERVICE, n, items);
	set_ptr(resp, RESP_LIST_SERVICES, lsr);
	return 0;
}

/* Fills resp (already initialised, valid_host and original_request set)
 * for request req. Returns 0 or RPC_ERR_NOMEM. */
static int answer(rpc_server *srv, rpc_arena *a, const ProtobufCMessage *req,
		  ProtobufCMessage *resp)
{
	/* Any member's quantifier offset is the oneof's case. */
	uint32_t which = *(const uint32_t *)quantifier(
		req, field(req->descriptor, REQ_LIST_SERVICES));
	const char *arg = NULL;
	file_set all = { 0 };
	const rpc_file_desc *f;
	int rc;

	if (which >= REQ_FILE_BY_FILENAME && which <= REQ_LIST_SERVICES &&
	    which != REQ_FILE_CONTAINING_EXTENSION)
		arg = *(const char *const *)slot(req, field(req->descriptor, which));
	if (arg == NULL)
		arg = "";

	switch (which) {
	case REQ_LIST_SERVICES:
		return answer_services(srv, a, resp);
	case REQ_FILE_BY_FILENAME:
		if ((rc = all_files(srv, a, &all)) < 0)
			return rc;
		f = find_file(&all, arg);
		if (f == NULL)
			return answer_error(a, resp, RPC_NOT_FOUND, "file not found", arg);
		return answer_file(a, resp, f);
	case REQ_FILE_CONTAINING_SYMBOL:
		if ((rc = all_files(srv, a, &all)) < 0)
			return rc;
		f = find_symbol(&all, arg);
		if (f == NULL)
			return answer_error(a, resp, RPC_NOT_FOUND, "symbol not found", arg);
		return answer_file(a, resp, f);
	case REQ_ALL_EXTENSION_NUMBERS_OF_TYPE: {
		ProtobufCMessage *enr;

		if ((rc = all_files(srv, a, &all)) < 0)
			return rc;
		if (find_symbol(&all, arg) == NULL)
			return answer_error(a, resp, RPC_NOT_FOUND,
					    "type not found", arg);
		/* The embedded descriptors index no extensions, and no estore
		 * message is extended, so the honest list is empty. */
		enr = new_child(a, resp, RESP_ALL_EXTENSION_NUMBERS);
		if (enr == NULL)
			return RPC_ERR_NOMEM;
		set_ptr(enr, ENR_BASE_TYPE_NAME, arg[0] == '.' ? arg + 1 : arg);
		set_ptr(resp, RESP_ALL_EXTENSION_NUMBERS, enr);
		return 0;
	}
	case REQ_FILE_CONTAINING_EXTENSION:
		/* Extension lookup needs an (extendee, number) index that the
		 * plugin does not emit. */
		return answer_error(a, resp, RPC_UNIMPLEMENTED,
				    "file_containing_extension is not supported", NULL);
	default:
		return answer_error(a, resp, RPC_UNIMPLEMENTED,
				    "unsupported reflection request", NULL);
	}
}

static const refl_version *version_of(const ProtobufCMessage *req)
{
	for (size_t i = 0; i < N(versions); i++)
		if (req->descriptor == versions[i].request)
			return &versions[i];
	return NULL;
}

/* ServerReflectionInfo for both versions: one response per request, in
 * order, until the client half-closes. */
static rpc_code reflection_info(rpc_ctx *ctx, rpc_stream *stream)
{
	rpc_server *srv = rpc_ctx_user(ctx);
	/* Our own arena, reset after each answer: a long-lived reflection
	 * stream must not grow the call arena without bound. */
	rpc_arena *a = rpc_arena_new(0);
	rpc_code code = RPC_OK;

	if (a == NULL)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	for (;;) {
		ProtobufCMessage *req = NULL, *resp;
		const refl_version *v;
		int rc = rpc_stream_recv(stream, &req);

		if (rc == 0)
			break;
		if (rc == RPC_ERR_PROTO) {
			code = rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
					     "malformed ServerReflectionRequest");
			break;
		}
		if (rc < 0) {
			code = RPC_CANCELLED;
			break;
		}
		v = version_of(req);
		resp = v ? new_message(a, v->response) : NULL;
		if (v == NULL) {
			code = rpc_ctx_error(ctx, RPC_INTERNAL,
					     "unexpected request type %s",
					     req->descriptor->name);
		} else if (resp == NULL) {
			code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
		} else {
			/* As gRPC's own servers do: echo the host and the
			 * request, so clients can match answers. */
			set_ptr(resp, RESP_VALID_HOST,
				*(char *const *)slot(req, field(req->descriptor, REQ_HOST)));
			set_ptr(resp, RESP_ORIGINAL_REQUEST, req);
			if (answer(srv, a, req, resp) < 0)
				code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
						     "out of memory");
			else if ((rc = rpc_stream_send(stream, resp)) < 0)
				code = rc == RPC_ERR_CANCELLED ? RPC_CANCELLED :
					rpc_ctx_error(ctx, RPC_INTERNAL,
						      "sending reflection response: %s",
						      rpc_strerror(rc));
		}
		/* resp points into req (original_request, strings): send
		 * has encoded it, so both can go now. */
		protobuf_c_message_free_unpacked(req, NULL);
		rpc_arena_reset(a);
		if (code != RPC_OK)
			break;
	}
	rpc_arena_free(a);
	return code;
}

static bool registered(rpc_server *srv, const rpc_service_desc *svc)
{
	const rpc_service_desc *one[1];
	size_t n = rpc_server_services(srv, one, 0);
	const rpc_service_desc **all;
	bool found = false;

	if (n == 0)
		return false;
	all = calloc(n, sizeof(*all));
	if (all == NULL)
		return false; /* registering will report the shortage */
	n = rpc_server_services(srv, all, n);
	for (size_t i = 0; i < n && !found; i++)
		found = all[i] == svc;
	free(all);
	return found;
}

int rpc_reflection_register(rpc_server *srv)
{
	static const grpc_reflection_v1_ServerReflection_impl v1 = {
		.server_reflection_info = reflection_info,
	};
	static const grpc_reflection_v1alpha_ServerReflection_impl v1alpha = {
		.server_reflection_info = reflection_info,
	};
	int rc;

	for (size_t i = 0; i < N(versions); i++)
		if (!version_ok(&versions[i]))
			return RPC_ERR_INVALID;
	/* The server registers reflection at start; a program that did it
	 * already must not make start fail. */
	if (registered(srv, &grpc_reflection_v1_ServerReflection_service))
		return 0;
	rc = grpc_reflection_v1_ServerReflection_register(srv, &v1, srv);
	if (rc < 0)
		return rc;
	return grpc_reflection_v1alpha_ServerReflection_register(srv, &v1alpha, srv);
}
