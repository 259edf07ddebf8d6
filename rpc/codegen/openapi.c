/*
 * openapi.c - generated/openapi.json: the OpenAPI 3.0 document of every
 * REST binding (google.api.http) of the files protoc generates, with JSON
 * schemas by the proto3 JSON mapping. The edge proxy serves it at
 * /openapi.json.
 *
 * Deterministic like the rest of the output: files, services, methods and
 * bindings in declaration order; schemas sorted by full name.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

/* FileDescriptorProto / ServiceDescriptorProto field numbers, for
 * SourceCodeInfo paths. */
#define FDP_SERVICE 6
#define SDP_METHOD 2

typedef Google__Protobuf__FieldDescriptorProto cg_fieldp;

/* Access option values (estore/api/v1/options.proto) that need no token. */
#define ACCESS_OPTION_FIELD 50001
#define ACCESS_PUBLIC 1

/* ---- JSON text --------------------------------------------------------- */

static void json_str(cg_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	cg_puts(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			cg_printf(b, "\\%c", *p);
		else if (*p == '\n')
			cg_puts(b, "\\n");
		else if (*p < 0x20)
			cg_printf(b, "\\u00%c%c", hex[*p >> 4], hex[*p & 15]);
		else
			cg_printf(b, "%c", *p);
	}
	cg_puts(b, "\"");
}

static void indent(cg_buf *b, int depth)
{
	for (int i = 0; i < depth; i++)
		cg_puts(b, "  ");
}

/* A proto comment as a one-paragraph description: lines trimmed and
 * joined with spaces. */
static const char *flatten(const char *comment)
{
	cg_buf b = { 0 };
	const char *p = comment;
	char *r;
	bool space = false;

	cg_puts(&b, "");
	for (; p && *p; p++) {
		if (*p == '\n' || *p == ' ' || *p == '\t') {
			space = b.len > 0;
			continue;
		}
		if (space)
			cg_puts(&b, " ");
		space = false;
		cg_printf(&b, "%c", *p);
	}
	r = cg_strdup(b.data);
	cg_buf_dispose(&b);
	return r;
}

/* ---- the set of schemas to emit ------------------------------------------ */

typedef struct name_set {
	const char **v;
	size_t n, cap;
} name_set;

static bool set_has(const name_set *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], name) == 0)
			return true;
	return false;
}

static void set_add(name_set *s, const char *name)
{
	if (set_has(s, name))
		return;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 32;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			cg_oom();
	}
	s->v[s->n++] = name;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const cg_enump *find_enum_in(cg_enump **enums, size_t n_enums,
				    cg_msgp **msgs, size_t n_msgs,
				    const char *prefix, const char *name)
{
	for (size_t i = 0; i < n_enums; i++)
		if (strcmp(cg_sprintf("%s.%s", prefix, enums[i]->name), name) == 0)
			return enums[i];
	for (size_t i = 0; i < n_msgs; i++) {
		const cg_enump *e = find_enum_in(
			msgs[i]->enum_type, msgs[i]->n_enum_type,
			msgs[i]->nested_type, msgs[i]->n_nested_type,
			cg_sprintf("%s.%s", prefix, msgs[i]->name), name);

		if (e)
			return e;
	}
	return NULL;
}

static const cg_enump *find_enum(const cg_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_files; i++) {
		const cg_fdp *f = req->files[i];
		const char *prefix = f->package && f->package[0] ?
			cg_sprintf(".%s", f->package) : "";
		const cg_enump *e = find_enum_in(f->enum_type, f->n_enum_type,
						 f->message_type,
						 f->n_message_type, prefix, name);

		if (e)
			return e;
	}
	return NULL;
}

/* JSON schema of a well-known type, or NULL when `name` is not one. */
static const char *wkt_schema(const char *name)
{
	static const struct {
		const char *name, *schema;
	} wkt[] = {
		{ ".google.protobuf.Timestamp", "{\"type\": \"string\", \"format\": \"date-time\"}" },
		{ ".google.protobuf.Duration", "{\"type\": \"string\", \"example\": \"1.5s\"}" },
		{ ".google.protobuf.FieldMask", "{\"type\": \"string\", \"example\": \"displayName,preferences.locale\"}" },
		{ ".google.protobuf.Empty", "{\"type\": \"object\"}" },
		{ ".google.protobuf.Struct", "{\"type\": \"object\"}" },
		{ ".google.protobuf.Value", "{}" },
		{ ".google.protobuf.ListValue", "{\"type\": \"array\", \"items\": {}}" },
		{ ".google.protobuf.Any", "{\"type\": \"object\", \"properties\": {\"@type\": {\"type\": \"string\"}}}" },
		{ ".google.protobuf.StringValue", "{\"type\": \"string\"}" },
		{ ".google.protobuf.BytesValue", "{\"type\": \"string\", \"format\": \"byte\"}" },
		{ ".google.protobuf.BoolValue", "{\"type\": \"boolean\"}" },
		{ ".google.protobuf.Int32Value", "{\"type\": \"integer\", \"format\": \"int32\"}" },
		{ ".google.protobuf.UInt32Value", "{\"type\": \"integer\", \"format\": \"int64\", \"minimum\": 0}" },
		{ ".google.protobuf.Int64Value", "{\"type\": \"string\", \"format\": \"int64\"}" },
		{ ".google.protobuf.UInt64Value", "{\"type\": \"string\", \"format\": \"uint64\"}" },
		{ ".google.protobuf.FloatValue", "{\"type\": \"number\", \"format\": \"float\"}" },
		{ ".google.protobuf.DoubleValue", "{\"type\": \"number\", \"format\": \"double\"}" },
	};

	for (size_t i = 0; i < sizeof(wkt) / sizeof(*wkt); i++)
		if (strcmp(wkt[i].name, name) == 0)
			return wkt[i].schema;
	return NULL;
}

static bool is_map_entry(const cg_msgp *m)
{
	return m && m->options && m->options->has_map_entry && m->options->map_entry;
}

/* The schema of one value of a field (ignoring repeated), adding the
 * messages and enums it refers to to `refs`. */
static const char *value_schema(const cg_request *req, const cg_fieldp *f,
				name_set *refs)
{
	switch (f->type) {
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING:
		return "{\"type\": \"string\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES:
		return "{\"type\": \"string\", \"format\": \"byte\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BOOL:
		return "{\"type\": \"boolean\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED32:
		return "{\"type\": \"integer\", \"format\": \"int32\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32:
		return "{\"type\": \"integer\", \"format\": \"int64\", \"minimum\": 0}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT64:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED64:
		/* proto3 JSON: 64-bit integers are strings. */
		return "{\"type\": \"string\", \"format\": \"int64\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED64:
		return "{\"type\": \"string\", \"format\": \"uint64\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FLOAT:
		return "{\"type\": \"number\", \"format\": \"float\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE:
		return "{\"type\": \"number\", \"format\": \"double\"}";
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE: {
		const char *w = wkt_schema(f->type_name);

		if (w)
			return w;
		set_add(refs, f->type_name);
		return cg_sprintf("{\"$ref\": \"#/components/schemas/%s\"}",
				  f->type_name + 1);
	}
	default:
		return "{}";
	}
}

static const char *field_schema(const cg_request *req, const cg_fieldp *f,
				name_set *refs)
{
	if (f->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED) {
		const cg_msgp *entry = f->type ==
			GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ?
			cg_find_message(req, f->type_name) : NULL;

		if (is_map_entry(entry) && entry->n_field == 2)
			return cg_sprintf("{\"type\": \"object\", \"additionalProperties\": %s}",
					  value_schema(req, entry->field[1], refs));
		return cg_sprintf("{\"type\": \"array\", \"items\": %s}",
				  value_schema(req, f, refs));
	}
	return value_schema(req, f, refs);
}

static const char *json_name(const cg_fieldp *f)
{
	return f->json_name ? f->json_name : f->name;
}

static void emit_message_schema(cg_buf *b, const cg_request *req,
				const char *name, name_set *refs)
{
	const cg_msgp *m = cg_find_message(req, name);
	const cg_enump *e = m ? NULL : find_enum(req, name);

	indent(b, 3);
	json_str(b, name + 1);
	cg_puts(b, ": ");
	if (e) {
		cg_puts(b, "{\"type\": \"string\", \"enum\": [");
		for (size_t i = 0; i < e->n_value; i++) {
			cg_puts(b, i ? ", " : "");
			json_str(b, e->value[i]->name);
		}
		cg_puts(b, "]}");
		return;
	}
	if (m == NULL) {
		cg_puts(b, "{}");
		return;
	}
	cg_puts(b, "{\n");
	indent(b, 4);
	cg_puts(b, "\"type\": \"object\",\n");
	indent(b, 4);
	cg_puts(b, "\"properties\": {");
	for (size_t i = 0; i < m->n_field; i++) {
		cg_puts(b, i ? ",\n" : "\n");
		indent(b, 5);
		json_str(b, json_name(m->field[i]));
		cg_printf(b, ": %s", field_schema(req, m->field[i], refs));
	}
	cg_puts(b, m->n_field ? "\n" : "");
	if (m->n_field)
		indent(b, 4);
	cg_puts(b, "}\n");
	indent(b, 3);
	cg_puts(b, "}");
}

/* ---- paths -------------------------------------------------------------------- */

/* The OpenAPI name of a path variable: the last piece of its field path
 * ("account.id" → "id"), so /v1/accounts/{id} and /v1/accounts/{account.id}
 * are one OpenAPI path (which must not exist twice under two names); the
 * whole field path when another variable of the pattern ends the same. */
static const char *param_name(const char *const *vars, size_t n, size_t i)
{
	const char *dot = strrchr(vars[i], '.');
	const char *last = dot ? dot + 1 : vars[i];

	for (size_t k = 0; k < n; k++) {
		const char *d = strrchr(vars[k], '.');

		if (k != i && strcmp(d ? d + 1 : vars[k], last) == 0)
			return vars[i];
	}
	return last;
}

/* "/v1/{name=shelves/...}/x" → "/v1/{name}/x"; the field paths of the
 * variables in *vars. */
static const char *openapi_path(const char *pattern, const char **vars,
				size_t *n_vars)
{
	cg_buf b = { 0 };
	char *r;
	size_t k = 0;

	*n_vars = 0;
	for (const char *p = pattern; *p; p++) {
		if (*p == '{') {
			const char *close = strchr(p, '}');
			const char *eq = memchr(p, '=', (size_t)(close - p));
			const char *end = eq ? eq : close;

			if (*n_vars < 16)
				vars[(*n_vars)++] = cg_sprintf("%.*s", (int)(end - p - 1), p + 1);
			p = close;
		}
	}
	cg_puts(&b, "");
	for (const char *p = pattern; *p; p++) {
		if (*p == '{') {
			p = strchr(p, '}');
			cg_printf(&b, "{%s}", k < *n_vars ? param_name(vars, *n_vars, k) : "");
			k++;
			continue;
		}
		cg_printf(&b, "%c", *p);
	}
	r = cg_strdup(b.data);
	cg_buf_dispose(&b);
	return r;
}

typedef struct op {
	const cg_fdp *fd;
	const cg_svcp *svc;
	size_t si, mi;
	const cg_methodp *m;
	cg_http_binding b;
	const char *path;           /* OpenAPI form */
	const char *vars[16];
	size_t n_vars;
	size_t binding_index;       /* for unique operationIds */
} op;

static bool needs_token(const cg_methodp *m)
{
	const Google__Protobuf__MethodOptions *o = m->options;

	for (unsigned i = 0; o && i < o->base.n_unknown_fields; i++) {
		const ProtobufCMessageUnknownField *f = &o->base.unknown_fields[i];

		if (f->tag == ACCESS_OPTION_FIELD &&
		    f->wire_type == PROTOBUF_C_WIRE_TYPE_VARINT && f->len > 0)
			return f->data[0] != ACCESS_PUBLIC;
	}
	return false;
}

static bool is_path_var(const op *o, const char *name)
{
	for (size_t i = 0; i < o->n_vars; i++)
		if (strcmp(o->vars[i], name) == 0)
			return true;
	return false;
}

static void emit_operation(cg_buf *b, const cg_request *req, const op *o,
			   name_set *refs)
{
	int32_t path[4] = { FDP_SERVICE, (int32_t)o->si, SDP_METHOD, (int32_t)o->mi };
	const char *comment = cg_leading_comment(o->fd, path, 4);
	const cg_msgp *in = cg_find_message(req, o->m->input_type);
	const char *lower = cg_sprintf("%s", o->b.verb);
	bool first = true;

	for (char *c = (char *)lower; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	indent(b, 3);
	json_str(b, lower);
	cg_puts(b, ": {\n");
	indent(b, 4);
	cg_printf(b, "\"operationId\": \"%s_%s%s\",\n", o->svc->name, o->m->name,
		  o->binding_index ? cg_sprintf("_%zu", o->binding_index + 1) : "");
	indent(b, 4);
	cg_puts(b, "\"tags\": [");
	json_str(b, o->svc->name);
	cg_puts(b, "],\n");
	if (comment) {
		indent(b, 4);
		cg_puts(b, "\"description\": ");
		json_str(b, flatten(comment));
		cg_puts(b, ",\n");
	}
	indent(b, 4);
	cg_puts(b, "\"parameters\": [");
	for (size_t i = 0; i < o->n_vars; i++) {
		const cg_fieldp *f = cg_find_field(req, in, o->vars[i]);

		cg_puts(b, first ? "\n" : ",\n");
		first = false;
		indent(b, 5);
		cg_puts(b, "{\"name\": ");
		json_str(b, param_name(o->vars, o->n_vars, i));
		cg_puts(b, ", \"in\": \"path\", \"required\": true, \"description\": ");
		json_str(b, cg_sprintf("the request's %s", o->vars[i]));
		cg_printf(b, ", \"schema\": %s}",
			  f ? field_schema(req, f, refs) : "{\"type\": \"string\"}");
	}
	/* Top-level scalar fields not in the path nor the body are query
	 * parameters (?pageSize=10&role=ROLE_VENDOR). */
	if (strcmp(o->b.body, "*") != 0) {
		for (size_t i = 0; in && i < in->n_field; i++) {
			const cg_fieldp *f = in->field[i];

			if (is_path_var(o, f->name) || strcmp(f->name, o->b.body) == 0 ||
			    (f->type == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE &&
			     !wkt_schema(f->type_name)))
				continue;
			cg_puts(b, first ? "\n" : ",\n");
			first = false;
			indent(b, 5);
			cg_puts(b, "{\"name\": ");
			json_str(b, json_name(f));
			cg_printf(b, ", \"in\": \"query\", \"schema\": %s}",
				  field_schema(req, f, refs));
		}
	}
	if (!first) {
		cg_puts(b, "\n");
		indent(b, 4);
	}
	cg_puts(b, "],\n");
	if (o->b.body[0]) {
		const char *schema;

		if (strcmp(o->b.body, "*") == 0) {
			set_add(refs, o->m->input_type);
			schema = cg_sprintf("{\"$ref\": \"#/components/schemas/%s\"}",
					    o->m->input_type + 1);
		} else {
			schema = field_schema(req, cg_find_field(req, in, o->b.body), refs);
		}
		indent(b, 4);
		cg_printf(b, "\"requestBody\": {\"required\": true, \"content\": "
			  "{\"application/json\": {\"schema\": %s}}},\n", schema);
	}
	{
		const char *schema;

		if (o->b.response_body[0]) {
			schema = field_schema(req, cg_find_field(req,
				cg_find_message(req, o->m->output_type),
				o->b.response_body), refs);
		} else if (wkt_schema(o->m->output_type)) {
			schema = wkt_schema(o->m->output_type);
		} else {
			set_add(refs, o->m->output_type);
			schema = cg_sprintf("{\"$ref\": \"#/components/schemas/%s\"}",
					    o->m->output_type + 1);
		}
		indent(b, 4);
		cg_printf(b, "\"responses\": {\n");
		indent(b, 5);
		cg_printf(b, "\"200\": {\"description\": \"OK\", \"content\": "
			  "{\"application/json\": {\"schema\": %s}}},\n", schema);
		indent(b, 5);
		cg_puts(b, "\"default\": {\"description\": \"An error: the gRPC status "
			"code, mapped to the HTTP status\", \"content\": "
			"{\"application/json\": {\"schema\": "
			"{\"$ref\": \"#/components/schemas/Status\"}}}}\n");
		indent(b, 4);
		cg_puts(b, "},\n");
	}
	indent(b, 4);
	cg_printf(b, "\"security\": %s\n",
		  needs_token(o->m) ? "[{\"bearer\": []}]" : "[]");
	indent(b, 3);
	cg_puts(b, "}");
}

const char *cg_gen_openapi(const cg_request *req, cg_buf *b)
{
	op *ops = NULL;
	size_t n_ops = 0;
	name_set refs = { 0 };
	const char *err = NULL;

	for (size_t i = 0; i < req->n_files; i++) {
		const cg_fdp *fd = req->files[i];

		if (!req->generate[i])
			continue;
		for (size_t si = 0; si < fd->n_service; si++) {
			const cg_svcp *s = fd->service[si];

			for (size_t mi = 0; mi < s->n_method; mi++) {
				cg_http_binding *bs = NULL;
				size_t n = 0;

				err = cg_method_http(req, s->method[mi], &bs, &n);
				if (err) {
					free(bs);
					goto out;
				}
				for (size_t k = 0; k < n; k++) {
					op *o;

					ops = realloc(ops, (n_ops + 1) * sizeof(*ops));
					if (ops == NULL)
						cg_oom();
					o = &ops[n_ops++];
					memset(o, 0, sizeof(*o));
					o->fd = fd;
					o->svc = s;
					o->si = si;
					o->mi = mi;
					o->m = s->method[mi];
					o->b = bs[k];
					o->binding_index = k;
					o->path = openapi_path(bs[k].pattern, o->vars,
							       &o->n_vars);
				}
				free(bs);
			}
		}
	}

	cg_puts(b, "{\n"
		"  \"openapi\": \"3.0.3\",\n"
		"  \"info\": {\n"
		"    \"title\": \"estore\",\n"
		"    \"version\": \"v1\",\n"
		"    \"description\": \"The JSON/HTTP API of estore, generated from "
		"the google.api.http options of its .proto contracts. Field names "
		"are lowerCamelCase; 64-bit integers are strings; enums are names.\"\n"
		"  },\n"
		"  \"paths\": {");
	/* One path object per distinct path, its operations in order. */
	for (size_t i = 0; i < n_ops; i++) {
		bool seen = false;

		for (size_t k = 0; k < i; k++)
			if (strcmp(ops[k].path, ops[i].path) == 0)
				seen = true;
		if (seen)
			continue;
		cg_puts(b, i ? ",\n" : "\n");
		indent(b, 2);
		json_str(b, ops[i].path);
		cg_puts(b, ": {\n");
		for (size_t k = i, first = 1; k < n_ops; k++) {
			if (strcmp(ops[k].path, ops[i].path) != 0)
				continue;
			if (!first)
				cg_puts(b, ",\n");
			first = 0;
			emit_operation(b, req, &ops[k], &refs);
		}
		cg_puts(b, "\n");
		indent(b, 2);
		cg_puts(b, "}");
	}
	cg_puts(b, n_ops ? "\n  },\n" : "},\n");

	/* Schemas: every message and enum reached, transitively. */
	for (size_t i = 0; i < refs.n; i++) {
		const cg_msgp *m = cg_find_message(req, refs.v[i]);

		for (size_t k = 0; m && k < m->n_field; k++)
			(void)field_schema(req, m->field[k], &refs);
	}
	qsort(refs.v, refs.n, sizeof(*refs.v), cmp_str);
	cg_puts(b, "  \"components\": {\n"
		"    \"securitySchemes\": {\n"
		"      \"bearer\": {\"type\": \"http\", \"scheme\": \"bearer\", "
		"\"bearerFormat\": \"JWT\"}\n"
		"    },\n"
		"    \"schemas\": {\n"
		"      \"Status\": {\n"
		"        \"type\": \"object\",\n"
		"        \"properties\": {\n"
		"          \"code\": {\"type\": \"integer\", \"format\": \"int32\", "
		"\"description\": \"gRPC status code\"},\n"
		"          \"message\": {\"type\": \"string\"},\n"
		"          \"details\": {\"type\": \"array\", \"items\": {\"type\": \"object\"}}\n"
		"        }\n"
		"      }");
	for (size_t i = 0; i < refs.n; i++) {
		cg_puts(b, ",\n");
		emit_message_schema(b, req, refs.v[i], &refs);
	}
	cg_puts(b, "\n    }\n  }\n}\n");
out:
	free(ops);
	free(refs.v);
	return err;
}
