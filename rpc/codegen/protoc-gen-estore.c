/*
 * protoc-gen-estore - protoc plugin emitting the rpc/ glue for .proto files.
 *
 * protoc runs it with a CodeGeneratorRequest on stdin and expects a
 * CodeGeneratorResponse on stdout. For each file to generate it writes
 * <path>.rpc.h/.rpc.c (embedded descriptor, service/method descriptors,
 * typed impl struct and registration, client stubs); for each imported file
 * that is not generated in the same run it writes <path>.desc.h/.desc.c
 * (descriptor only), so reflection can serve every file's import closure.
 *
 * Errors in the .proto input go back to protoc in the response's `error`
 * (protoc prints them and fails); broken I/O ends with exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

/* CodeGeneratorResponse.Feature.FEATURE_PROTO3_OPTIONAL: proto3 `optional`
 * only adds synthetic oneofs, which nothing here looks at. */
#define FEATURE_PROTO3_OPTIONAL 1

static int read_all(FILE *f, uint8_t **out, size_t *out_len)
{
	size_t len = 0, cap = 64 * 1024;
	uint8_t *data = malloc(cap);

	if (data == NULL)
		cg_oom();
	for (;;) {
		size_t n = fread(data + len, 1, cap - len, f);

		len += n;
		if (len < cap) {
			if (ferror(f)) {
				free(data);
				return -1;
			}
			break;
		}
		cap *= 2;
		uint8_t *p = realloc(data, cap);
		if (p == NULL)
			cg_oom();
		data = p;
	}
	*out = data;
	*out_len = len;
	return 0;
}

const cg_fdp *cg_request_find(const cg_request *req, const char *name,
			      bool *generated)
{
	for (size_t i = 0; i < req->n_files; i++) {
		if (strcmp(req->files[i]->name, name) == 0) {
			if (generated)
				*generated = req->generate[i];
			return req->files[i];
		}
	}
	return NULL;
}

typedef struct out_files {
	Google__Protobuf__Compiler__CodeGeneratorResponse__File **v;
	size_t n;
	size_t cap;
} out_files;

/* Takes ownership of b's text. */
static void add_file(out_files *o, const char *name, cg_buf *b)
{
	Google__Protobuf__Compiler__CodeGeneratorResponse__File *f;

	if (o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		void *p = realloc(o->v, cap * sizeof(*o->v));

		if (p == NULL)
			cg_oom();
		o->v = p;
		o->cap = cap;
	}
	f = malloc(sizeof(*f));
	if (f == NULL)
		cg_oom();
	google__protobuf__compiler__code_generator_response__file__init(f);
	f->name = cg_strdup(name);
	/* content is freed with free() in main, never through the pool. */
	f->content = b->data ? b->data : strdup("");
	if (f->content == NULL)
		cg_oom();
	b->data = NULL;
	b->len = b->cap = 0;
	o->v[o->n++] = f;
}

static const char *generate(const cg_request *req, out_files *o)
{
	for (size_t i = 0; i < req->n_files; i++) {
		const cg_fdp *fd = req->files[i];
		char *base = cg_strip_proto(fd->name);
		cg_buf h = { 0 }, c = { 0 };
		const char *err;

		if (req->generate[i]) {
			err = cg_gen_rpc(req, fd, &h, &c);
			if (err) {
				cg_buf_dispose(&h);
				cg_buf_dispose(&c);
				return err;
			}
			add_file(o, cg_sprintf("%s.rpc.h", base), &h);
			add_file(o, cg_sprintf("%s.rpc.c", base), &c);
		} else {
			err = cg_gen_desc(req, fd, &h, &c);
			if (err) {
				cg_buf_dispose(&h);
				cg_buf_dispose(&c);
				return err;
			}
			add_file(o, cg_sprintf("%s.desc.h", base), &h);
			add_file(o, cg_sprintf("%s.desc.c", base), &c);
		}
	}
	{
		cg_buf doc = { 0 };
		const char *err = cg_gen_openapi(req, &doc);

		if (err) {
			cg_buf_dispose(&doc);
			return err;
		}
		add_file(o, "openapi.json", &doc);
	}
	return NULL;
}

int main(void)
{
	Google__Protobuf__Compiler__CodeGeneratorRequest *rq = NULL;
	Google__Protobuf__Compiler__CodeGeneratorResponse resp =
		GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__INIT;
	cg_request req = { 0 };
	out_files o = { 0 };
	uint8_t *in = NULL, *outb = NULL;
	size_t in_len, out_len;
	const char *err;
	int status = 1;

	if (read_all(stdin, &in, &in_len) < 0) {
		perror("protoc-gen-estore: reading the request");
		goto out;
	}
	rq = google__protobuf__compiler__code_generator_request__unpack(
		NULL, in_len, in);
	if (rq == NULL) {
		fputs("protoc-gen-estore: malformed CodeGeneratorRequest "
		      "(run me through protoc)\n", stderr);
		goto out;
	}

	req.files = rq->proto_file;
	req.n_files = rq->n_proto_file;
	req.generate = calloc(req.n_files ? req.n_files : 1, sizeof(bool));
	if (req.generate == NULL)
		cg_oom();
	for (size_t i = 0; i < rq->n_file_to_generate; i++) {
		bool found = false;

		for (size_t j = 0; j < req.n_files; j++) {
			if (strcmp(req.files[j]->name,
				   rq->file_to_generate[i]) == 0) {
				req.generate[j] = true;
				found = true;
			}
		}
		if (!found) {
			fprintf(stderr, "protoc-gen-estore: %s is not among "
				"the request's files\n", rq->file_to_generate[i]);
			goto out;
		}
	}

	resp.has_supported_features = 1;
	resp.supported_features = FEATURE_PROTO3_OPTIONAL;
	err = generate(&req, &o);
	if (err) {
		/* No partial output: protoc reports the error and writes nothing. */
		resp.error = (char *)err;
	} else {
		resp.file = o.v;
		resp.n_file = o.n;
	}

	out_len = google__protobuf__compiler__code_generator_response__get_packed_size(&resp);
	outb = malloc(out_len ? out_len : 1);
	if (outb == NULL)
		cg_oom();
	google__protobuf__compiler__code_generator_response__pack(&resp, outb);
	if (fwrite(outb, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
		perror("protoc-gen-estore: writing the response");
		goto out;
	}
	status = 0;
out:
	for (size_t i = 0; i < o.n; i++) {
		free(o.v[i]->content);
		free(o.v[i]);
	}
	free(o.v);
	free(outb);
	free(req.generate);
	if (rq)
		google__protobuf__compiler__code_generator_request__free_unpacked(rq, NULL);
	free(in);
	cg_pool_free();
	return status;
}
