// Command gateway is the grpc-gateway peer of the edge benchmark: the
// reverse proxy protoc-gen-grpc-gateway generates from
// proto/estore/account/v1/account.proto, in front of the same
// estore-account the edge calls. It writes JSON as the edge does (proto3
// JSON mapping: lowerCamelCase names, default values printed), so both
// answer GET /v1/accounts/me with the same document. The Authorization
// header reaches the service as "authorization" metadata (grpc-gateway
// forwards it as a permanent HTTP header). Like the other bench peers it
// prints "listening on HOST:PORT" once it accepts connections.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	pb "estore/account/v1"

	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	backend := flag.String("backend", "", "estore-account's host:port")
	flag.Parse()
	if *backend == "" {
		log.Fatal("gateway: -backend is required")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard,
		&runtime.JSONPb{OrigName: false, EmitDefaults: true}))
	err := pb.RegisterAccountServiceHandlerFromEndpoint(ctx, mux, *backend,
		[]grpc.DialOption{grpc.WithInsecure()})
	if err != nil {
		log.Fatalf("gateway: %v", err)
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("gateway: listen %s: %v", *listen, err)
	}
	srv := &http.Server{Handler: mux}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Close()
	}()

	fmt.Printf("listening on %s\n", lis.Addr().String())
	os.Stdout.Sync()
	if err := srv.Serve(lis); err != nil && err != http.ErrServerClosed {
		log.Fatalf("gateway: %v", err)
	}
}
