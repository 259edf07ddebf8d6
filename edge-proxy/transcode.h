/*
 * transcode.h - JSON <-> protobuf by the proto3 JSON mapping.
 *
 * The edge proxy turns an HTTP request body into the request message of a
 * gRPC method, path and query parameters into fields of it, and the reply
 * message back into JSON. The mapping is protobuf's canonical one
 * (https://protobuf.dev/programming-guides/json/), driven by protobuf-c's
 * descriptors: any generated message works, with no code per message.
 *
 * What JSON looks like for each field kind, both directions:
 *
 *   int32, sint32, sfixed32,    a number; a string holding one is accepted
 *   uint32, fixed32             ("1.0" and 1e2 too: integral values only)
 *   int64, sint64, sfixed64,    printed as a decimal string; a string or a
 *   uint64, fixed64             number is accepted (a number beyond 2^53 only
 *                               in integer form, so it is exact; a uint64
 *                               above 2^63-1 only as a string: see below)
 *   float, double               a number; "NaN", "Infinity", "-Infinity";
 *                               printed with the fewest of 15 to 17 digits
 *                               (6 to 9 for float) that read back the same:
 *                               0.1, not 0.10000000000000001
 *   bool                        true or false (never a string)
 *   string                      a string (UTF-8, without U+0000)
 *   bytes                       base64: printed standard with padding;
 *                               standard or URL-safe, padding optional,
 *                               accepted
 *   enum                        the value's name as in the .proto; a number
 *                               is accepted, and an unknown number is printed
 *                               as a number; an unknown name is an error
 *   message                     an object
 *   repeated                    an array ([] when empty)
 *   map<K, V>                   an object; keys are strings: "12", "true"
 *   google.protobuf.Timestamp   "1972-01-01T10:00:20.021Z": RFC 3339, any
 *                               offset accepted, printed in UTC with 0, 3, 6
 *                               or 9 fractional digits; years 0001..9999
 *   google.protobuf.Duration    "1.5s", "-0.000001s": printed with 0, 3, 6
 *                               or 9 fractional digits ("1.500s"); at
 *                               most 10000 years
 *   google.protobuf.FieldMask   "displayName,preferences.locale": paths in
 *                               lowerCamelCase joined by commas (proto paths
 *                               are snake_case)
 *   google.protobuf.*Value      the wrapped value itself (Int64Value and
 *   (the wrappers)              UInt64Value as strings); null = absent
 *   google.protobuf.Empty       {}
 *
 * Field names are printed in lowerCamelCase, derived from the proto name
 * the way protoc derives json_name ("page_size" -> "pageSize"); both that
 * name and the proto name are accepted. A `json_name` option in a .proto is
 * not honoured: protobuf-c's descriptors do not carry it.
 *
 * Printing emits default values: every field without presence is printed,
 * 0, "", false, [] and {} included. A message field is printed only when
 * set; a field with presence (a member of a oneof, a proto2 `optional`
 * field: its has_ flag, or a pointer other than NULL and the declared
 * default) only when set, whatever its value. protoc-c 1.4.1 rejects
 * proto3 `optional`, so today only proto2 files have such fields.
 *
 * Parsing: unknown fields are ignored; null means "not set" for every field
 * (a null array element or map value is an error); a field given twice
 * (by its JSON and its proto name) and two members of one oneof are errors.
 * The top level is always a JSON object, also when the message is a
 * well-known type (it is then printed and parsed field by field).
 *
 * Not supported: google.protobuf.Any, Struct, Value and ListValue (a field
 * of these types fails with TC_ERR_UNSUPPORTED both ways), extensions, and
 * the presence of proto2 `required` fields (not checked). Maps are
 * recognised by the shape protoc gives their entry messages (a nested
 * `<Field>Entry` with fields key = 1 and value = 2), because protobuf-c's
 * descriptors do not keep the map_entry option.
 *
 * Numbers are read and printed in the "C" locale, as the library assumes
 * everywhere; nothing here calls setlocale. All functions are thread-safe
 * (they share no state).
 */
#ifndef ESTORE_EDGE_TRANSCODE_H
#define ESTORE_EDGE_TRANSCODE_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

/*
 * Error codes: functions return 0 or one of these. tc_error.message says
 * what was wrong and where: it starts with the path of the field, as the
 * client wrote it when parsing (`preferences.locale`, `page_size`,
 * `roles[2]`, `labels["a"]`) and in lowerCamelCase when printing.
 *
 * For an edge request, TC_ERR_SYNTAX, TC_ERR_INVALID, TC_ERR_LIMIT and
 * TC_ERR_UNSUPPORTED from parsing are the client's fault (HTTP 400);
 * TC_ERR_NOMEM, and any error from printing, are the server's (HTTP 500).
 */
enum {
	/* Not well-formed JSON: a syntax error, truncated text, invalid UTF-8
	 * (raw bytes or an escaped lone surrogate such as "\ud800"), a key
	 * repeated in one object, a number that overflows (an integer beyond
	 * the signed 64-bit range, a real beyond double). The message gives
	 * the line and column. */
	TC_ERR_SYNTAX = -1,
	/* Well-formed JSON that is not a value of the message (wrong type, out
	 * of range, unknown enum name, bad base64, timestamp or duration, null
	 * in an array, two members of a oneof, a top level that is not an
	 * object; for tc_merge_field_from_string, an unknown field or one that
	 * cannot be set from text); when printing, a message with no JSON form
	 * (a string that is not UTF-8, a Timestamp or Duration out of range, a
	 * FieldMask path that is not snake_case). */
	TC_ERR_INVALID = -2,
	/* Nesting deeper than tc_limits.max_depth allows. */
	TC_ERR_LIMIT = -3,
	/* A field of a type this module does not map (google.protobuf.Any,
	 * Struct, Value, ListValue). */
	TC_ERR_UNSUPPORTED = -4,
	/* An allocation failed. */
	TC_ERR_NOMEM = -5,
};

#define TC_ERROR_MAX 512

typedef struct tc_error {
	int code;                     /* 0 or a TC_ERR_* */
	char message[TC_ERROR_MAX];   /* NUL-terminated, "" on success */
} tc_error;

/* A static description of a code ("invalid value"); "unknown error" for a
 * code not listed above. */
const char *tc_strerror(int code);

#define TC_DEFAULT_MAX_DEPTH 32

typedef struct tc_limits {
	/*
	 * Deepest nesting of messages, the top-level message being 1; a
	 * message in a field, in a repeated field or as a map value is one
	 * deeper. Parsing, printing and tc_merge_field_from_string (one level
	 * per message on the path) all check it, so that what one accepts the
	 * others do. Before jansson sees a text, parsing also refuses JSON
	 * nested deeper than twice this (objects and arrays: what such
	 * messages can need, unknown fields included); jansson itself stops
	 * at 2048. 0 means the default.
	 */
	unsigned max_depth;
} tc_limits;

#define TC_LIMITS_DEFAULT { .max_depth = TC_DEFAULT_MAX_DEPTH }

/*
 * Parses the JSON text json[0..len) into a new message of type desc
 * (generated by protoc-c). The text need not be NUL-terminated; its size
 * limit is the caller's business. limits may be NULL (defaults); allocator
 * may be NULL (malloc/free).
 *
 * On success stores the message in *out and returns 0. Every part of it
 * (strings, bytes, arrays, submessages) comes from allocator, in the
 * layout protobuf-c's unpack produces: free it with
 * protobuf_c_message_free_unpacked(*out, allocator), or by dropping the
 * arena behind allocator.
 *
 * On failure sets *out to NULL, frees whatever it allocated, fills err
 * (when not NULL) and returns TC_ERR_SYNTAX, TC_ERR_INVALID, TC_ERR_LIMIT,
 * TC_ERR_UNSUPPORTED or TC_ERR_NOMEM (see above).
 */
int tc_from_json(const ProtobufCMessageDescriptor *desc, const char *json,
		 size_t len, ProtobufCAllocator *allocator,
		 const tc_limits *limits, ProtobufCMessage **out,
		 tc_error *err);

/*
 * Prints msg as compact JSON (no whitespace), fields in field-number
 * order. limits may be NULL (defaults).
 *
 * On success stores a malloc'd, NUL-terminated text in *out (the caller
 * free()s it), its length without the NUL in *out_len (when not NULL), and
 * returns 0. A map holding one key twice (possible on the wire) prints it
 * once, with its last value, as parsing protobuf would keep it.
 *
 * On failure sets *out to NULL, fills err (when not NULL) and returns
 * TC_ERR_INVALID (msg has no JSON form: a string field that is not valid
 * UTF-8, a Timestamp outside 0001..9999 or with nanos outside
 * 0..999999999, a Duration beyond 10000 years or with nanos of the wrong
 * sign, a FieldMask path that does not convert to lowerCamelCase and
 * back), TC_ERR_LIMIT (nested deeper than max_depth), TC_ERR_UNSUPPORTED
 * or TC_ERR_NOMEM.
 */
int tc_to_json(const ProtobufCMessage *msg, const tc_limits *limits,
	       char **out, size_t *out_len, tc_error *err);

/*
 * Sets one field of msg from a text value, as path and query parameters do
 * (`/v1/accounts/{id}`, `?page_size=10&filter.role=ROLE_VENDOR`).
 *
 * path names the field: dot-separated field names, each in lowerCamelCase
 * or as in the .proto ("filter.role", "pageSize"). Every name but the last
 * must be a singular message field; missing messages on the way are
 * created. The last must be a scalar, enum, string or bytes field, or a
 * Timestamp, Duration, FieldMask or wrapper, singular (the value replaces
 * the current one) or repeated (the value is appended). Maps cannot be set.
 *
 * value[0..value_len) is text, not JSON: a string field takes it as it is
 * (it must be UTF-8 without U+0000), a bool takes "true" or "false", an
 * enum a name or a number, bytes base64, numbers and the well-known types
 * the same text as inside a JSON string ("10", "NaN", "1.5s",
 * "2024-01-01T00:00:00Z"). It need not be NUL-terminated.
 *
 * msg and everything in it must come from allocator (e.g. from
 * tc_from_json or protobuf_c_message_unpack with the same allocator, NULL
 * = malloc/free): a value that is replaced is freed with it, new values
 * are allocated with it. limits may be NULL (defaults): a path longer than
 * max_depth is TC_ERR_LIMIT.
 *
 * Returns 0, or TC_ERR_INVALID (an unknown field, a field that cannot be
 * set this way, a value that does not parse or fit, a member of a oneof
 * whose other member is already set), TC_ERR_LIMIT, TC_ERR_UNSUPPORTED or
 * TC_ERR_NOMEM, and fills err when not NULL. On error msg is unchanged,
 * except after TC_ERR_NOMEM, when empty messages created for the path may
 * remain (msg stays valid and freeable).
 */
int tc_merge_field_from_string(ProtobufCMessage *msg, const char *path,
			       const char *value, size_t value_len,
			       ProtobufCAllocator *allocator,
			       const tc_limits *limits, tc_error *err);

#endif
