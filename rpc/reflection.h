/*
 * reflection.h - grpc.reflection.v1 and grpc.reflection.v1alpha
 * ServerReflectionInfo, answered from the descriptors the protoc plugin
 * embeds (rpc_file_desc) for every service registered on the server.
 *
 * Supports list_services, file_by_filename, file_containing_symbol (each
 * answer carries the file and its imports, transitively, once each), and
 * answers NOT_FOUND for unknown names and UNIMPLEMENTED for extension
 * queries that are not supported.
 */
#ifndef ESTORE_RPC_REFLECTION_H
#define ESTORE_RPC_REFLECTION_H

typedef struct rpc_server rpc_server;

/* Registers both reflection services on srv (call after every other
 * service is registered; the server does this itself at start). */
int rpc_reflection_register(rpc_server *srv);

#endif
