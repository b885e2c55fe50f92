package accesslog_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgeproxy/edge/edge/accesslog"
	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

func header(kv ...string) *message.Header {
	h := &message.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// fullEntry has every field set.
func fullEntry() *accesslog.Entry {
	return &accesslog.Entry{
		Start:           time.Date(2024, 3, 9, 7, 5, 4, 123_456_789, time.FixedZone("CET", 3600)),
		Duration:        1234567 * time.Microsecond,
		Method:          "POST",
		Authority:       "api.example.com",
		Path:            "/v2/items?id=7",
		OriginalPath:    "/api/v2/items?id=7",
		Protocol:        "HTTP/2",
		Scheme:          "https",
		Status:          503,
		Flags:           accesslog.UpstreamConnectionFailure | accesslog.UpstreamRetryLimitExceeded,
		BytesReceived:   321,
		BytesSent:       4567,
		UpstreamHost:    "10.0.0.7:8443",
		UpstreamCluster: "api",
		RouteName:       "api-route",
		ListenerName:    "public",
		RequestID:       "req-123",
		Downstream:      netip.MustParseAddrPort("[2001:db8::1]:51234"),
		RequestHeader: header(
			"user-agent", "curl/8.5.0",
			"x-forwarded-for", "203.0.113.9",
			"x-request-id", "from-header",
			"x-multi", "first",
			"x-multi", "second",
			"x-empty", "",
		),
		ResponseHeader:      header("content-type", "text/plain", "server", "edge"),
		UpstreamServiceTime: 987 * time.Millisecond,
		Attempts:            3,
	}
}

// newFileLogger logs to a file in a temporary directory and returns a
// function reading the file.
func newFileLogger(t testing.TB, format string) (*accesslog.Logger, string) {
	t.Helper()
	dir := t.TempDir()
	l, err := accesslog.New(&config.AccessLog{Path: "access.log", Format: format}, func(p string) string { return filepath.Join(dir, p) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l, filepath.Join(dir, "access.log")
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// line formats one entry with format and returns the line without its
// newline, checking that exactly one line was written.
func line(t *testing.T, format string, e *accesslog.Entry) string {
	t.Helper()
	l, name := newFileLogger(t, format)
	l.Log(e)
	got := readFile(t, name)
	if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Fatalf("format %q wrote %q, want exactly one line", format, got)
	}
	return strings.TrimSuffix(got, "\n")
}

func TestOperators(t *testing.T) {
	full := fullEntry()
	empty := &accesslog.Entry{}
	v4 := fullEntry()
	v4.Downstream = netip.MustParseAddrPort("192.0.2.1:80")
	noOrig := fullEntry()
	noOrig.OriginalPath, noOrig.RequestID = "", ""
	tests := []struct {
		format    string
		e         *accesslog.Entry
		want      string
		wantEmpty string // for an empty Entry
	}{
		{"%START_TIME%", full, "2024-03-09T06:05:04.123Z", "-"},
		{"%DURATION%", full, "1234", "0"},
		{"%RESPONSE_CODE%", full, "503", "0"},
		{"%RESPONSE_FLAGS%", full, "UF,URX", "-"},
		{"%BYTES_RECEIVED%", full, "321", "0"},
		{"%BYTES_SENT%", full, "4567", "0"},
		{"%PROTOCOL%", full, "HTTP/2", "-"},
		{"%REQ(:METHOD)%", full, "POST", "-"},
		{"%REQ(:PATH)%", full, "/v2/items?id=7", "-"},
		{"%REQ(:AUTHORITY)%", full, "api.example.com", "-"},
		{"%REQ(HOST)%", full, "api.example.com", "-"},
		{"%REQ(:SCHEME)%", full, "https", "-"},
		{"%REQ(:method)%", full, "POST", "-"},
		{"%REQ(USER-AGENT)%", full, "curl/8.5.0", "-"},
		{"%REQ(User-Agent)%", full, "curl/8.5.0", "-"},
		{"%REQ(X-MULTI)%", full, "first", "-"},
		{"%REQ(X-MISSING)%", full, "-", "-"},
		{"%REQ(X-EMPTY)%", full, "-", "-"},
		{"%REQ(X-MISSING?USER-AGENT)%", full, "curl/8.5.0", "-"},
		{"%REQ(USER-AGENT?X-MULTI)%", full, "curl/8.5.0", "-"},
		{"%REQ(X-EDGE-ORIGINAL-PATH?:PATH)%", full, "/api/v2/items?id=7", "-"},
		{"%REQ(X-EDGE-ORIGINAL-PATH?:PATH)%", noOrig, "/v2/items?id=7", "-"},
		{"%REQ(X-REQUEST-ID)%", full, "req-123", "-"},
		{"%REQ(X-REQUEST-ID)%", noOrig, "from-header", "-"},
		{"%REQ(USER-AGENT):4%", full, "curl", "-"},
		{"%REQ(USER-AGENT):100%", full, "curl/8.5.0", "-"},
		{"%REQ_WITHOUT_QUERY(:PATH)%", full, "/v2/items", "-"},
		{"%REQ_WITHOUT_QUERY(X-EDGE-ORIGINAL-PATH?:PATH)%", full, "/api/v2/items", "-"},
		{"%RESP(CONTENT-TYPE)%", full, "text/plain", "-"},
		{"%RESP(X-NONE?Server)%", full, "edge", "-"},
		{"%RESP(USER-AGENT)%", full, "-", "-"},
		{"%UPSTREAM_HOST%", full, "10.0.0.7:8443", "-"},
		{"%UPSTREAM_CLUSTER%", full, "api", "-"},
		{"%ROUTE_NAME%", full, "api-route", "-"},
		{"%LISTENER_NAME%", full, "public", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS%", full, "[2001:db8::1]:51234", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS%", v4, "192.0.2.1:80", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", full, "2001:db8::1", "-"},
		{"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", v4, "192.0.2.1", "-"},
		{"%UPSTREAM_REQUEST_ATTEMPT_COUNT%", full, "3", "0"},
		{"%UPSTREAM_SERVICE_TIME%", full, "987", "-"},
		{"100%% done %%%RESPONSE_CODE%%%", full, "100% done %503%", "100% done %0%"},
		{"no operators at all", full, "no operators at all", "no operators at all"},
		{"%RESPONSE_CODE%\n", full, "503", "0"}, // a trailing newline is not doubled
	}
	for _, tt := range tests {
		if got := line(t, tt.format, tt.e); got != tt.want {
			t.Errorf("format %q: got %q, want %q", tt.format, got, tt.want)
		}
		if got := line(t, tt.format, empty); got != tt.wantEmpty {
			t.Errorf("format %q, empty entry: got %q, want %q", tt.format, got, tt.wantEmpty)
		}
	}
}

func TestDefaultFormat(t *testing.T) {
	want := `[2024-03-09T06:05:04.123Z] "POST /api/v2/items?id=7 HTTP/2" 503 UF,URX 321 4567 1234 "203.0.113.9" "curl/8.5.0" "req-123" "api.example.com" "10.0.0.7:8443"`
	for _, format := range []string{"", config.DefaultAccessLogFormat} {
		if got := line(t, format, fullEntry()); got != want {
			t.Errorf("format %q:\ngot  %s\nwant %s", format, got, want)
		}
	}
}

func TestTextEscapesControlCharacters(t *testing.T) {
	e := fullEntry()
	e.RequestHeader = header("user-agent", "evil\r\n[2024-01-01] \"GET / HTTP/1.1\" 200\x00\x7f\tend")
	got := line(t, `"%REQ(USER-AGENT)%"`, e)
	want := `"evil\x0d\x0a[2024-01-01] "GET / HTTP/1.1" 200\x00\x7f\x09end"`
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		f    accesslog.Flags
		want string
	}{
		{0, "-"},
		{accesslog.NoRoute, "NR"},
		{accesslog.NoHealthyUpstream, "UH"},
		{accesslog.UpstreamConnectionFailure, "UF"},
		{accesslog.UpstreamOverflow, "UO"},
		{accesslog.UpstreamRetryLimitExceeded, "URX"},
		{accesslog.UpstreamRequestTimeout, "UT"},
		{accesslog.UpstreamConnectionTermination, "UC"},
		{accesslog.LocalReset, "LR"},
		{accesslog.DownstreamConnectionTermination, "DC"},
		{accesslog.RateLimited, "RL"},
		{accesslog.UnauthorizedExternalService, "UAEX"},
		{accesslog.UpstreamRemoteReset, "UR"},
		{accesslog.StreamIdleTimeout, "SI"},
		{accesslog.InvalidRequestHeaders, "IH"},
		{accesslog.DownstreamProtocolError, "DPE"},
		{accesslog.UpstreamMaxStreamDurationReached, "UMSDR"},
		{accesslog.DurationTimeout, "DT"},
		{accesslog.UpstreamProtocolError, "UPE"},
		{accesslog.NoClusterFound, "NC"},
		{accesslog.OverloadManager, "OM"},
		{accesslog.DNSResolutionFailure, "DF"},
		// Envoy's order, not the order set.
		{accesslog.UpstreamRetryLimitExceeded | accesslog.UpstreamConnectionFailure | accesslog.NoHealthyUpstream, "UH,UF,URX"},
		{accesslog.DownstreamConnectionTermination | accesslog.UpstreamRequestTimeout, "UT,DC"},
		{1 << 31, "-"},
		{1<<31 | accesslog.NoRoute, "NR"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint32(tt.f), got, tt.want)
		}
	}
	f := accesslog.NoRoute | accesslog.LocalReset
	if !f.Has(accesslog.NoRoute) || !f.Has(accesslog.NoRoute|accesslog.LocalReset) || f.Has(accesslog.NoRoute|accesslog.UpstreamOverflow) {
		t.Errorf("Has: wrong answers for %v", f)
	}
}

func TestFormatErrors(t *testing.T) {
	tests := []struct {
		format string
		want   []string
	}{
		{"%START_TIME% %BOGUS% x", []string{`unknown operator "BOGUS"`, "at byte 13", "valid operators are", "%START_TIME%", "%REQ(X?Y):N%", "%UPSTREAM_SERVICE_TIME%", "%%"}},
		{"%REQUEST_ID%", []string{`unknown operator "REQUEST_ID"`}},
		{"%start_time%", []string{`unknown operator "start_time"`}},
		{"%BOGUS(X)%", []string{`unknown operator "BOGUS"`}},
		{"50% off", []string{`unterminated operator "% off"`, "%%"}},
		{"%START_TIME(%s)%", []string{"START_TIME takes no argument"}},
		{"%DURATION(X)%", []string{"DURATION takes no argument"}},
		{"%REQ%", []string{"REQ needs a header name"}},
		{"%REQ()%", []string{"empty header name"}},
		{"%REQ(X?)%", []string{"empty header name"}},
		{"%REQ(X):0%", []string{"want :N, a positive maximum length"}},
		{"%REQ(X):ab%", []string{"want :N"}},
		{"%REQ(X)junk%", []string{"want :N"}},
		{"%REQ(:STATUS)%", []string{`unknown pseudo-header ":STATUS"`}},
		{"%RESP(:PATH)%", []string{"RESP reads response headers"}},
		{"%REQ(bad name)%", []string{`invalid header name "bad name"`}},
	}
	for _, tt := range tests {
		_, err := accesslog.New(&config.AccessLog{Path: "stderr", Format: tt.format}, nil)
		if err == nil {
			t.Errorf("format %q: got no error, want one containing %q", tt.format, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("format %q: error %q, want it to contain %q", tt.format, err, w)
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	for _, p := range []string{"stdout", "stderr"} {
		l, err := accesslog.New(&config.AccessLog{Path: p, Format: "%RESPONSE_CODE%"}, nil)
		if err != nil {
			t.Fatalf("New(%s): %v", p, err)
		}
		if err := l.Reopen(); err != nil {
			t.Errorf("%s: Reopen = %v, want nil", p, err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("%s: Close = %v, want nil", p, err)
		}
	}
	// Close must not have closed the process's stderr.
	if _, err := os.Stderr.Write(nil); err != nil {
		t.Errorf("stderr closed by Logger.Close: %v", err)
	}

	// A nil config means no log; a nil Logger is a no-op.
	l, err := accesslog.New(nil, nil)
	if l != nil || err != nil {
		t.Fatalf("New(nil) = %v, %v; want nil, nil", l, err)
	}
	l.Log(fullEntry())
	if l.Reopen() != nil || l.Close() != nil || l.WriteErrors() != 0 {
		t.Errorf("nil Logger methods should do nothing")
	}

	// An unopenable file is an error naming it.
	bad := filepath.Join(t.TempDir(), "no-such-dir", "access.log")
	if _, err := accesslog.New(&config.AccessLog{Path: bad, Format: "json"}, nil); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("New with path %s: error %v, want one naming the file", bad, err)
	}

	// The file is created 0644 and appended to, not truncated.
	dir := t.TempDir()
	name := filepath.Join(dir, "a.log")
	if err := os.WriteFile(name, []byte("old line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = accesslog.New(&config.AccessLog{Path: name, Format: "%RESPONSE_CODE%"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Log(fullEntry())
	if got, want := readFile(t, name), "old line\n503\n"; got != want {
		t.Errorf("appended file = %q, want %q", got, want)
	}
	l.Close()
	l, err = accesslog.New(&config.AccessLog{Path: "new.log", Format: "json"}, func(p string) string { return filepath.Join(dir, p) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := os.Stat(filepath.Join(dir, "new.log"))
	if err != nil {
		t.Fatalf("relative path not resolved: %v", err)
	}
	if mode := st.Mode().Perm() &^ 0o022; mode != 0o644&^0o022 { // honour the umask
		t.Errorf("new file mode %v, want 0644 (less umask)", st.Mode().Perm())
	}
}

func TestCloseCountsLaterLines(t *testing.T) {
	l, name := newFileLogger(t, "%RESPONSE_CODE%")
	l.Log(fullEntry())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Log(fullEntry())
	if got := l.WriteErrors(); got != 1 {
		t.Errorf("WriteErrors after logging to a closed logger = %d, want 1", got)
	}
	if err := l.Reopen(); err == nil {
		t.Errorf("Reopen after Close succeeded, want an error")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if got := readFile(t, name); got != "503\n" {
		t.Errorf("file = %q, want one line", got)
	}
}

func TestReopenAfterRename(t *testing.T) {
	// The logrotate flow: rename the file, signal, the logger reopens.
	l, name := newFileLogger(t, "%RESPONSE_CODE% %REQ(X-N)%")
	entry := func(n int) *accesslog.Entry {
		e := fullEntry()
		e.RequestHeader = header("x-n", fmt.Sprint(n))
		return e
	}
	l.Log(entry(1))
	if err := os.Rename(name, name+".1"); err != nil {
		t.Fatal(err)
	}
	l.Log(entry(2)) // still the open file, now named .1
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	l.Log(entry(3))
	if got, want := readFile(t, name+".1"), "503 1\n503 2\n"; got != want {
		t.Errorf("rotated file = %q, want %q", got, want)
	}
	if got, want := readFile(t, name), "503 3\n"; got != want {
		t.Errorf("new file = %q, want %q", got, want)
	}
}

func TestReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "logs")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(sub, "access.log")
	l, err := accesslog.New(&config.AccessLog{Path: name, Format: "%RESPONSE_CODE%"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Move the directory away: reopening the name fails.
	if err := os.Rename(sub, sub+".old"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatalf("Reopen of a path whose directory is gone succeeded")
	}
	l.Log(fullEntry())
	if got := readFile(t, filepath.Join(sub+".old", "access.log")); got != "503\n" {
		t.Errorf("old file after failed Reopen = %q, want the line", got)
	}
	if got := l.WriteErrors(); got != 0 {
		t.Errorf("WriteErrors = %d, want 0", got)
	}
}

func TestJSON(t *testing.T) {
	got := line(t, "json", fullEntry())
	var m map[string]any
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	want := map[string]any{
		"start_time":                "2024-03-09T06:05:04.123Z",
		"method":                    "POST",
		"authority":                 "api.example.com",
		"path":                      "/api/v2/items?id=7",
		"protocol":                  "HTTP/2",
		"response_code":             503.0,
		"response_flags":            "UF,URX",
		"bytes_received":            321.0,
		"bytes_sent":                4567.0,
		"duration_ms":               1234.0,
		"upstream_host":             "10.0.0.7:8443",
		"upstream_cluster":          "api",
		"route_name":                "api-route",
		"request_id":                "req-123",
		"downstream_remote_address": "[2001:db8::1]:51234",
		"user_agent":                "curl/8.5.0",
		"x_forwarded_for":           "203.0.113.9",
		"attempts":                  3.0,
	}
	for k, w := range want {
		if g, ok := m[k]; !ok || g != w {
			t.Errorf("%s = %#v, want %#v", k, g, w)
		}
	}
	if len(m) != len(want) {
		t.Errorf("got %d keys, want %d: %s", len(m), len(want), got)
	}

	// An empty entry: nulls and zeros, still valid.
	got = line(t, "json", &accesslog.Entry{})
	m = nil
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("empty entry: not JSON: %v\n%s", err, got)
	}
	for _, k := range []string{"start_time", "method", "authority", "path", "protocol", "upstream_host", "upstream_cluster", "route_name", "request_id", "downstream_remote_address", "user_agent", "x_forwarded_for"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Errorf("empty entry: %s = %#v, want null", k, v)
		}
	}
	if m["response_flags"] != "-" || m["response_code"] != 0.0 || m["attempts"] != 0.0 {
		t.Errorf("empty entry: flags %v code %v attempts %v, want \"-\" 0 0", m["response_flags"], m["response_code"], m["attempts"])
	}

	// The request id falls back to the header; the path to Path.
	e := fullEntry()
	e.RequestID, e.OriginalPath = "", ""
	m = nil
	if err := json.Unmarshal([]byte(line(t, "json", e)), &m); err != nil {
		t.Fatal(err)
	}
	if m["request_id"] != "from-header" || m["path"] != "/v2/items?id=7" {
		t.Errorf("request_id %v path %v, want from-header and /v2/items?id=7", m["request_id"], m["path"])
	}
}

// hostile are header values that could break a log line or its JSON.
var hostile = []string{
	`say "hi"`,
	`back\slash\`,
	`\"}, "injected": "yes`,
	"line\nbreak\r\n{\"x\":1}",
	"tab\tnul\x00bell\x07esc\x1bdel\x7f",
	"\x01\x02\x03\x1f",
	"invalid \xff\xfe utf-8 \xc3",
	"truncated \xe2\x82",
	"overlong \xc0\xaf and surrogate \xed\xa0\x80",
	"unicode ✓ 日本 🎉",
	"js separators \u2028 \u2029",
	"<script>&amp;</script>",
	"",
	strings.Repeat("long ", 4000),
}

// wantDecoded is what a JSON decoder yields for s: each invalid UTF-8 byte
// becomes U+FFFD.
func wantDecoded(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

func TestJSONHostileValues(t *testing.T) {
	for _, v := range hostile {
		e := fullEntry()
		e.Method, e.Authority, e.Path, e.OriginalPath = v, v, v, v
		e.UpstreamHost, e.UpstreamCluster, e.RouteName, e.RequestID, e.Protocol = v, v, v, v, v
		e.RequestHeader = header("user-agent", v, "x-forwarded-for", v)
		got := line(t, "json", e)
		if !utf8.ValidString(got) {
			t.Errorf("value %q: line is not valid UTF-8", v)
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(got))
		if err := dec.Decode(&m); err != nil {
			t.Errorf("value %q: not JSON: %v\n%s", v, err, got)
			continue
		}
		if dec.More() {
			t.Errorf("value %q: more than one JSON value on the line", v)
		}
		for _, k := range []string{"method", "authority", "path", "upstream_host", "upstream_cluster", "route_name", "request_id", "user_agent", "x_forwarded_for", "protocol"} {
			var want any = wantDecoded(v)
			if v == "" {
				want = nil
			}
			if m[k] != want {
				t.Errorf("value %q: %s decoded as %q, want %q", v, k, m[k], want)
			}
		}
		if _, ok := m["injected"]; ok {
			t.Errorf("value %q injected a key", v)
		}
	}
}

func FuzzJSONString(f *testing.F) {
	for _, v := range hostile {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		e := &accesslog.Entry{Method: v}
		l, name := newFileLogger(t, "json")
		l.Log(e)
		got := readFile(t, name)
		var m map[string]any
		if err := json.Unmarshal([]byte(got), &m); err != nil {
			t.Fatalf("value %q: not JSON: %v\n%s", v, err, got)
		}
		want := any(wantDecoded(v))
		if v == "" {
			want = nil
		}
		if m["method"] != want {
			t.Fatalf("value %q decoded as %q, want %q", v, m["method"], want)
		}
		if strings.Count(got, "\n") != 1 {
			t.Fatalf("value %q: %d newlines", v, strings.Count(got, "\n"))
		}
	})
}

func TestConcurrentLogWholeLines(t *testing.T) {
	for _, format := range []string{"json", config.DefaultAccessLogFormat} {
		t.Run(format[:4], func(t *testing.T) {
			l, name := newFileLogger(t, format)
			const goroutines, perG = 8, 200
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perG {
						e := fullEntry()
						// Long, distinct values make torn writes visible.
						ua := strings.Repeat(string(rune('a'+g)), 3000+i)
						e.RequestHeader = header("user-agent", ua, "x-forwarded-for", fmt.Sprintf("%d-%d", g, i))
						e.RequestID = fmt.Sprintf("%d-%d", g, i)
						l.Log(e)
					}
				}()
			}
			// Rotate while logging: every line lands whole in one file.
			rotated := 0
			for i := range 3 {
				time.Sleep(2 * time.Millisecond)
				if err := os.Rename(name, fmt.Sprintf("%s.%d", name, i)); err != nil {
					t.Fatal(err)
				}
				if err := l.Reopen(); err != nil {
					t.Fatal(err)
				}
				rotated++
			}
			wg.Wait()
			files := []string{name}
			for i := range rotated {
				files = append(files, fmt.Sprintf("%s.%d", name, i))
			}
			seen := map[string]bool{}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				sc := bufio.NewScanner(bytes.NewReader(data))
				sc.Buffer(nil, 1<<20)
				for sc.Scan() {
					ln := sc.Text()
					id, ua := parseLine(t, format, ln)
					if id == "" {
						continue
					}
					var g, i int
					if _, err := fmt.Sscanf(id, "%d-%d", &g, &i); err != nil {
						t.Fatalf("bad request id %q in line %.100q", id, ln)
					}
					if want := strings.Repeat(string(rune('a'+g)), 3000+i); ua != want {
						t.Fatalf("torn line for %s: user agent has %d bytes, want %d", id, len(ua), len(want))
					}
					if seen[id] {
						t.Fatalf("line %s written twice", id)
					}
					seen[id] = true
				}
			}
			if got, want := len(seen), goroutines*perG; got != want {
				t.Errorf("got %d whole lines, want %d (write errors %d)", got, want, l.WriteErrors())
			}
		})
	}
}

// parseLine extracts the request id and user agent from a line.
func parseLine(t *testing.T, format, ln string) (id, ua string) {
	t.Helper()
	if format == "json" {
		var m struct {
			RequestID string `json:"request_id"`
			UserAgent string `json:"user_agent"`
		}
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("torn JSON line: %v: %.200q", err, ln)
		}
		return m.RequestID, m.UserAgent
	}
	// ... "XFF" "UA" "ID" "AUTHORITY" "UPSTREAM"
	parts := strings.Split(ln, `"`)
	if len(parts) != 13 {
		t.Fatalf("torn text line (%d quote-separated parts): %.200q", len(parts), ln)
	}
	return parts[7], parts[5]
}

func TestLogDoesNotAllocate(t *testing.T) {
	for _, format := range []string{"json", config.DefaultAccessLogFormat, "%START_TIME% %RESP(SERVER)% %DOWNSTREAM_REMOTE_ADDRESS% %RESPONSE_FLAGS% %UPSTREAM_SERVICE_TIME%"} {
		l, err := accesslog.New(&config.AccessLog{Path: os.DevNull, Format: format}, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := fullEntry()
		e.RequestHeader = header("user-agent", "tab\there \xff", "x-forwarded-for", "1.2.3.4")
		l.Log(e) // warm the pool
		if n := testing.AllocsPerRun(200, func() { l.Log(e) }); n != 0 {
			t.Errorf("format %.20q: %v allocations per Log, want 0", format, n)
		}
		l.Close()
	}
}

func benchmarkLog(b *testing.B, format string) {
	l, err := accesslog.New(&config.AccessLog{Path: os.DevNull, Format: format}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := fullEntry()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l.Log(e)
		}
	})
}

func BenchmarkLogDefaultFormat(b *testing.B) { benchmarkLog(b, config.DefaultAccessLogFormat) }
func BenchmarkLogJSON(b *testing.B)          { benchmarkLog(b, "json") }
