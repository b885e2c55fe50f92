package tls_test

import (
	"crypto/tls"
	"fmt"

	"github.com/edgeproxy/edge/edge/config"
	edgetls "github.com/edgeproxy/edge/tls"
)

func ExampleClientConfig() {
	cfg := &config.Config{File: "edge.yaml", Dir: "/etc/edge"}
	// No ca_file: the system roots; no cert_file: no client certificate.
	tc, err := edgetls.ClientConfig(cfg, "clusters[0].tls", &config.UpstreamTLS{ServerName: "api.internal"}, []string{"h2"})
	if err != nil {
		panic(err)
	}
	fmt.Println(tc.ServerName, tc.NextProtos, tc.MinVersion == tls.VersionTLS12)

	_, err = edgetls.ClientConfig(cfg, "clusters[0].tls", &config.UpstreamTLS{CAFile: "certs/missing-ca.crt"}, nil)
	fmt.Println(err)
	// Output:
	// api.internal [h2] true
	// edge.yaml: clusters[0].tls.ca_file: cannot read CA file /etc/edge/certs/missing-ca.crt: no such file or directory
}

func ExampleParseFingerprint() {
	sum, err := edgetls.ParseFingerprint("DF:6F:F7:2F:E9:11:65:21:26:8F:6F:2D:D4:96:6F:51:DF:47:88:3F:00:94:AD:6B:D6:6F:F6:16:FD:B8:E2:7A")
	fmt.Printf("%x %v\n", sum[:4], err)
	// Output:
	// df6ff72f <nil>
}

func ExampleTicketKeys() {
	// The parent process exports its keys at hot restart...
	parent, err := edgetls.NewTicketKeys(0, 0) // rotate every 12h, keep 2
	if err != nil {
		panic(err)
	}
	secret := parent.Export() // pass over the private control socket only

	// ...and the child imports them before building its listeners, so
	// sessions the parent issued resume on the child.
	child, _ := edgetls.NewTicketKeys(0, 0)
	fmt.Println(child.Import(secret))
	tc := &tls.Config{}
	child.Apply(tc) // what ServerOptions.TicketKeys does
	fmt.Println(tc.WrapSession != nil, tc.UnwrapSession != nil)
	// Output:
	// <nil>
	// true true
}
