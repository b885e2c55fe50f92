// Command idleconns opens many keep-alive connections to a proxy, sends one
// request on each, and holds them idle, printing the proxy's resident memory
// before and after so the per-connection cost can be read off.
// scripts/bench-idle-conns.sh drives it.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "proxy address")
	n := flag.Int("n", 10000, "connections to open")
	useTLS := flag.Bool("tls", false, "connect with TLS (HTTP/1.1)")
	pid := flag.Int("pid", 0, "proxy PID whose RSS to report")
	hold := flag.Duration("hold", 3*time.Second, "how long to hold the connections idle before measuring")
	flag.Parse()

	before := rssKiB(*pid)
	conns := make([]net.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := net.DialTimeout("tcp", *addr, 5*time.Second)
		if err != nil {
			fail("dial %d: %v", i, err)
		}
		if *useTLS {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err := tc.Handshake(); err != nil {
				fail("handshake %d: %v", i, err)
			}
			c = tc
		}
		fmt.Fprintf(c, "GET /ping HTTP/1.1\r\nHost: bench\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			fail("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		conns = append(conns, c)
	}
	time.Sleep(*hold)
	after := rssKiB(*pid)
	fmt.Printf("connections=%d tls=%v rss_before_kib=%d rss_after_kib=%d per_conn_kib=%.1f\n",
		len(conns), *useTLS, before, after, float64(after-before)/float64(len(conns)))
	for _, c := range conns {
		c.Close()
	}
}

func rssKiB(pid int) int {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		fail("reading RSS: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "idleconns: "+format+"\n", args...)
	os.Exit(1)
}
