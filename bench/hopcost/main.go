// Command hopcost measures what one extra loopback hop costs on this
// machine, without the relay: bytes written straight to a sink, through a
// user-space copy (what any reverse proxy does), and through splice(2)
// (Go's (*net.TCPConn).ReadFrom between two plain TCP sockets). It bounds
// the relay-vs-direct upload ratio the machine allows: a proxy that copies
// cannot beat the "copy" row, and one that splices cannot beat "splice".
//
//	go run ./bench/hopcost -rounds 5 -bytes 4294967296
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"time"
)

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

func main() {
	rounds := flag.Int("rounds", 5, "rounds; each runs every mode once, order rotated")
	total := flag.Int64("bytes", 2<<30, "bytes sent per mode per round")
	flag.Parse()
	if *rounds < 1 || *total < 1<<20 {
		fmt.Fprintln(os.Stderr, "hopcost: -rounds ≥ 1 and -bytes ≥ 1 MiB")
		os.Exit(2)
	}
	if err := run(*rounds, *total); err != nil {
		fmt.Fprintln(os.Stderr, "hopcost:", err)
		os.Exit(1)
	}
}

type result struct{ mibs, cpuPerGiB float64 }

func run(rounds int, total int64) error {
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.Close()
	modes := []string{"direct", "copy", "splice"}
	got := map[string][]result{}
	for r := range rounds {
		for i := range modes {
			m := modes[(i+r)%len(modes)]
			res, err := measure(m, sink.Addr().String(), total)
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			got[m] = append(got[m], res)
		}
	}
	direct := median(got["direct"]).mibs
	fmt.Printf("%-7s %10s %10s %14s\n", "mode", "MiB/s", "× direct", "CPU s / GiB")
	for _, m := range modes {
		md := median(got[m])
		fmt.Printf("%-7s %10.0f %10.3f %14.3f\n", m, md.mibs, md.mibs/direct, md.cpuPerGiB)
	}
	return nil
}

// startSink reads and drops everything sent to it, 64 KiB at a time.
func startSink() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln, nil
}

// measure sends total bytes through the mode's path and returns throughput
// and the whole process's CPU per GiB (sender, hop and sink share it).
func measure(mode, sinkAddr string, total int64) (result, error) {
	target := sinkAddr
	hopDone := make(chan error, 1)
	if mode != "direct" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return result{}, err
		}
		defer ln.Close()
		go func() { hopDone <- hop(ln, mode, sinkAddr) }()
		target = ln.Addr().String()
	} else {
		hopDone <- nil
	}
	c, err := net.Dial("tcp", target)
	if err != nil {
		return result{}, err
	}
	buf := make([]byte, 256<<10)
	cpu0, t0 := cpuTime(), time.Now()
	var sent int64
	for sent < total {
		n, err := c.Write(buf[:min(int64(len(buf)), total-sent)])
		sent += int64(n)
		if err != nil {
			c.Close()
			return result{}, err
		}
	}
	_ = c.Close()
	if err := <-hopDone; err != nil {
		return result{}, err
	}
	took, cpu := time.Since(t0), cpuTime()-cpu0
	gib := float64(sent) / (1 << 30)
	return result{mibs: float64(sent) / (1 << 20) / took.Seconds(), cpuPerGiB: cpu.Seconds() / gib}, nil
}

// hop accepts one connection and moves its bytes to the sink.
func hop(ln net.Listener, mode, sinkAddr string) error {
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	defer c.Close()
	up, err := net.Dial("tcp", sinkAddr)
	if err != nil {
		return err
	}
	defer up.Close()
	if mode == "splice" {
		_, err = up.(*net.TCPConn).ReadFrom(&io.LimitedReader{R: c.(*net.TCPConn), N: 1 << 62})
	} else {
		_, err = io.CopyBuffer(writerOnly{up}, readerOnly{c}, make([]byte, 256<<10))
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int {
		switch {
		case a.mibs < b.mibs:
			return -1
		case a.mibs > b.mibs:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}
