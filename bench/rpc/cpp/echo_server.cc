// echo_server - the gRPC C++ peer of the RPC benchmark: serves
// estore.testing.v1.Echo/UnaryEcho (echoing message and payload) with the
// callback API (grpc::CallbackServerContext / ServerUnaryReactor) and
// default server options; the other Echo methods answer UNIMPLEMENTED.
// Prints "listening on 127.0.0.1:PORT" once it accepts calls.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "estore/testing/v1/echo.grpc.pb.h"

namespace {

using estore::testing::v1::Echo;
using estore::testing::v1::EchoReply;
using estore::testing::v1::EchoRequest;

class EchoService final : public Echo::CallbackService {
	grpc::ServerUnaryReactor *UnaryEcho(grpc::CallbackServerContext *ctx,
					    const EchoRequest *req,
					    EchoReply *reply) override
	{
		reply->set_message(req->message());
		reply->set_payload(req->payload());
		grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
		r->Finish(grpc::Status::OK);
		return r;
	}
};

} // namespace

int main(int argc, char **argv)
{
	std::string addr = "127.0.0.1:0";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (std::strcmp(argv[i], "--listen") == 0) {
			addr = argv[i + 1];
		} else {
			std::fprintf(stderr, "usage: %s [--listen HOST:PORT]\n", argv[0]);
			return 2;
		}
	}

	// Block the stop signals in every gRPC thread; main waits for them.
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

	EchoService service;
	int port = 0;
	grpc::ServerBuilder builder;
	builder.AddListeningPort(addr, grpc::InsecureServerCredentials(), &port);
	builder.RegisterService(&service);
	std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
	if (!server || port == 0) {
		std::fprintf(stderr, "echo_server: cannot listen on %s\n", addr.c_str());
		return 1;
	}
	std::string host = addr.substr(0, addr.rfind(':'));
	std::printf("listening on %s:%d\n", host.c_str(), port);
	std::fflush(stdout);

	int sig = 0;
	sigwait(&sigs, &sig);
	server->Shutdown();
	return 0;
}
