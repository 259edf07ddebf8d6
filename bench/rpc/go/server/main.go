// Command goserver is the grpc-go peer of the RPC benchmark: it serves
// estore.testing.v1.Echo/UnaryEcho (echoing message and payload) with the
// stock grpc-go server and default options. The other Echo methods answer
// UNIMPLEMENTED. Like estore-echo it prints "listening on HOST:PORT" once
// it accepts calls, so the bench can ask for port 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	pb "estore/testing/v1"

	"google.golang.org/grpc"
)

type echoServer struct {
	pb.UnimplementedEchoServer
}

func (*echoServer) UnaryEcho(ctx context.Context, in *pb.EchoRequest) (*pb.EchoReply, error) {
	return &pb.EchoReply{Message: in.Message, Payload: in.Payload}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("goserver: listen %s: %v", *listen, err)
	}
	srv := grpc.NewServer()
	pb.RegisterEchoServer(srv, &echoServer{})

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Stop()
	}()

	fmt.Printf("listening on %s\n", lis.Addr().String())
	os.Stdout.Sync()
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("goserver: %v", err)
	}
}
