// Command goclient is the grpc-go counterpart of client_bench.c: it keeps
// -concurrency unary UnaryEcho calls outstanding on one ClientConn for
// -duration seconds and prints the same two figures, calls/s and the
// process's CPU time (user+system, getrusage) per call in microseconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "estore/testing/v1"

	"google.golang.org/grpc"
)

func cpuMicros() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatalf("goclient: getrusage: %v", err)
	}
	return ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

func main() {
	target := flag.String("target", "", "host:port of the Echo server")
	concurrency := flag.Int("concurrency", 64, "outstanding calls")
	duration := flag.Float64("duration", 10, "seconds to measure")
	warmup := flag.Float64("warmup", 1, "seconds of calls before measuring")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "usage: goclient -target HOST:PORT [-concurrency N] [-duration S] [-warmup S]")
		os.Exit(2)
	}

	conn, err := grpc.Dial(*target, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatalf("goclient: dial %s: %v", *target, err)
	}
	defer conn.Close()
	client := pb.NewEchoClient(conn)
	req := &pb.EchoRequest{Message: "hello"}

	// measuring: 0 warm-up, 1 counting, 2 stop.
	var phase int32
	var calls, failures int64
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p := atomic.LoadInt32(&phase)
				if p == 2 {
					return
				}
				_, err := client.UnaryEcho(context.Background(), req)
				if atomic.LoadInt32(&phase) == 1 {
					if err != nil {
						atomic.AddInt64(&failures, 1)
					} else {
						atomic.AddInt64(&calls, 1)
					}
				}
			}
		}()
	}

	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	cpu0 := cpuMicros()
	t0 := time.Now()
	atomic.StoreInt32(&phase, 1)
	time.Sleep(time.Duration(*duration * float64(time.Second)))
	atomic.StoreInt32(&phase, 2)
	elapsed := time.Since(t0).Seconds()
	n := atomic.LoadInt64(&calls)
	cpu1 := cpuMicros()
	wg.Wait()

	if n == 0 {
		log.Fatalf("goclient: no call succeeded (%d failed)", failures)
	}
	fmt.Printf("calls=%d failed=%d seconds=%.3f calls_per_s=%.1f cpu_us_per_call=%.2f\n",
		n, failures, elapsed, float64(n)/elapsed, float64(cpu1-cpu0)/float64(n))
}
