/*
 * wirecheck.h - checks a serialized message for what protobuf-c's unpack
 * accepts but C code cannot see.
 *
 * proto3 requires string fields to hold valid UTF-8; protobuf-c does not
 * check, and hands strings over NUL-terminated, so "alice\0admin" would
 * reach a handler as "alice": different data than the client sent, with
 * no error. The server runs this over every request before decoding it
 * and answers INVALID_ARGUMENT naming the field.
 */
#ifndef RPC_WIRECHECK_H
#define RPC_WIRECHECK_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Nested messages deeper than this are refused (protobuf-c's own unpack
 * recursion has no limit). */
#define RPC_WIRECHECK_MAX_DEPTH 64

/*
 * Walks the wire form of a `desc` message in data[0..len): every string
 * field, at any depth (nested messages, repeated fields, map entries,
 * oneofs), must be valid UTF-8 without NUL bytes. Unknown fields are
 * skipped; bytes fields are not looked at.
 *
 * Returns 0 when the message passes (or is malformed in a way unpack will
 * refuse by itself), or -1 with a message naming the field path in err:
 * "display_name: not valid UTF-8", "roles[2]: contains a NUL byte",
 * "items[0].title: ...".
 */
int rpc_wirecheck_strings(const ProtobufCMessageDescriptor *desc,
			  const uint8_t *data, size_t len, char *err,
			  size_t errlen);

#endif
