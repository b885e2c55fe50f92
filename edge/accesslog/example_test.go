package accesslog_test

import (
	"net/netip"
	"time"

	"github.com/edgeproxy/edge/edge/accesslog"
	"github.com/edgeproxy/edge/edge/config"
)

func Example() {
	l, err := accesslog.New(&config.AccessLog{
		Path:   "stdout",
		Format: `%START_TIME% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %DURATION%ms %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% "%REQ(USER-AGENT)%"`,
	}, nil)
	if err != nil {
		panic(err)
	}
	defer l.Close()
	l.Log(&accesslog.Entry{
		Start:      time.Date(2025, 1, 2, 3, 4, 5, 6e6, time.UTC),
		Duration:   42 * time.Millisecond,
		Method:     "GET",
		Path:       "/healthz",
		Status:     503,
		Flags:      accesslog.NoHealthyUpstream,
		Downstream: netip.MustParseAddrPort("192.0.2.7:40000"),
	})
	// Output:
	// 2025-01-02T03:04:05.006Z GET /healthz 503 UH 42ms 192.0.2.7 "-"
}
