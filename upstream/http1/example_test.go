package http1_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/upstream/http1"
)

func Example() {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s: %s", r.Method, r.URL.Path, body)
	}))
	defer upstream.Close()

	pool := http1.NewPool(http1.Options{
		Addr:           upstream.Listener.Addr().String(),
		ConnectTimeout: time.Second,
		MaxIdle:        32,
		IdleTimeout:    time.Minute,
	})
	defer pool.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := &message.Request{Method: "POST", Path: "/echo", Authority: "example.com"}
	req.Header.Add("accept", "text/plain")
	req.Body, req.ContentLength = strings.NewReader("hello"), 5

	resp, err := pool.RoundTrip(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, err := io.ReadAll(resp.Body) // at io.EOF the connection is back in the pool
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("content-type"), string(body), err)
	active, idle := pool.Stats()
	fmt.Println("active", active, "idle", idle)
	pool.Release(resp) // optional: recycles resp for a later round trip
	// Output:
	// 200 text/plain POST /echo: hello <nil>
	// active 0 idle 1
}
