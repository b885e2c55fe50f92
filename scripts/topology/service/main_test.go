package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestAnswer: the service reports the forwarding headers each hop adds.
func TestAnswer(t *testing.T) {
	srv := httptest.NewServer(handler("a"))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/a/hello?q=1", nil)
	req.Header.Add("X-Forwarded-For", "127.0.0.2, 127.0.0.1")
	req.Header.Add("X-Forwarded-For", "127.0.0.1")
	req.Header.Add("X-Topology-Hop", "pop")
	req.Header.Add("X-Topology-Hop", "datacenter, sidecar-a")
	req.Header.Set("X-Forwarded-Client-Cert", `Hash=1;Subject="CN=a,O=b";DNS=pop.edge.internal,Hash=2;DNS=dc.edge.internal`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	if a.Service != "a" || a.Path != "/a/hello?q=1" || a.Proto != "HTTP/1.1" {
		t.Errorf("service %q path %q proto %q", a.Service, a.Path, a.Proto)
	}
	if a.XForwardedFor != "127.0.0.2, 127.0.0.1, 127.0.0.1" {
		t.Errorf("x_forwarded_for %q", a.XForwardedFor)
	}
	if a.Hops != "pop, datacenter, sidecar-a" {
		t.Errorf("hops %q", a.Hops)
	}
	if a.XForwardedClientCertNo != 2 { // the comma inside the quoted subject does not count
		t.Errorf("x_forwarded_client_cert_elements %d, want 2", a.XForwardedClientCertNo)
	}
	if a.Headers["x-topology-hop"] != "pop, datacenter, sidecar-a" {
		t.Errorf("headers %v", a.Headers)
	}
}
