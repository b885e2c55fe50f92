package config

import (
	"strings"
	"testing"
)

// TestAdminBinding: the admin API has no authentication, so its address
// must be loopback unless allow_non_loopback says otherwise. A host name
// other than localhost is refused too: it may resolve to anything.
func TestAdminBinding(t *testing.T) {
	for _, c := range []struct {
		address string
		allow   bool
		ok      bool
	}{
		{"127.0.0.1:9901", false, true},
		{"127.0.0.2:9901", false, true}, // all of 127/8 is loopback
		{"localhost:9901", false, true},
		{"[::1]:9901", false, true},
		{"0.0.0.0:9901", false, false},
		{"[::]:9901", false, false},
		{":9901", false, false}, // every interface
		{"10.1.2.3:9901", false, false},
		{"admin.example.com:9901", false, false},
		{"0.0.0.0:9901", true, true},
		{":9901", true, true},
		{"10.1.2.3:9901", true, true},
	} {
		admin := "admin: {address: \"" + c.address + "\"}\n"
		if c.allow {
			admin = "admin: {address: \"" + c.address + "\", allow_non_loopback: true}\n"
		}
		_, err := Parse([]byte(admin+strings.TrimPrefix(minimal, "\n")), "test.yaml", "")
		switch {
		case c.ok && err != nil:
			t.Errorf("%s (allow_non_loopback %v): %v, want accepted", c.address, c.allow, err)
		case !c.ok && err == nil:
			t.Errorf("%s (allow_non_loopback %v): accepted, want refused", c.address, c.allow)
		case !c.ok && !strings.Contains(err.Error(), "allow_non_loopback: true"):
			t.Errorf("%s: error %q does not say how to allow it", c.address, err)
		}
	}
}
