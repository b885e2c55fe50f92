package accesslog

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edgeproxy/edge/edge/config"
	"github.com/edgeproxy/edge/edge/message"
)

// Entry is what one access log line is made of: values the forwarding
// handler already has. Empty strings, a zero Start, a zero Downstream and
// nil headers print as "-" (null in JSON).
type Entry struct {
	// Start is when the request's headers were received.
	Start time.Time
	// Duration is from Start to the last byte sent downstream.
	Duration time.Duration
	// Method, Authority, Path and Scheme are the request's, as received;
	// OriginalPath is the path before a rewrite ("" if not rewritten).
	Method, Authority, Path, OriginalPath, Scheme string
	// Protocol is the downstream protocol: "HTTP/1.1", "HTTP/2" or "HTTP/3".
	Protocol string
	// Status is the response status sent downstream; 0 if none was.
	Status int
	// Flags say why the request ended as it did.
	Flags Flags
	// BytesReceived and BytesSent count body bytes from and to downstream.
	BytesReceived, BytesSent int64
	// UpstreamHost is the address of the last host tried.
	UpstreamHost string
	// UpstreamCluster, RouteName and ListenerName name the config objects
	// the request went through.
	UpstreamCluster, RouteName, ListenerName string
	// RequestID is the x-request-id edge used for the request.
	RequestID string
	// Downstream is the client's address.
	Downstream netip.AddrPort
	// RequestHeader and ResponseHeader are the headers received from
	// downstream and sent to it; either may be nil.
	RequestHeader, ResponseHeader *message.Header
	// UpstreamServiceTime is from sending the request upstream to receiving
	// the response headers; 0 means there was no upstream response.
	UpstreamServiceTime time.Duration
	// Attempts is how many upstream tries were made (1 + retries).
	Attempts int
}

// maxPooledBuffer is the largest line buffer returned to the pool, so one
// huge line does not pin memory forever.
const maxPooledBuffer = 64 << 10

// Logger writes one line per request. It is safe for concurrent use. A nil
// *Logger logs nothing.
type Logger struct {
	ops  []op
	json bool

	path string // the file's path; "" for stdout and stderr
	out  atomic.Pointer[os.File]
	bufs sync.Pool // *[]byte

	mu     sync.Mutex // serializes Reopen and Close
	closed bool       // guarded by mu

	writeErrs atomic.Uint64
}

// New compiles c's format once and opens its output: "stdout", "stderr"
// or a file, opened for appending and created with mode 0644. A relative
// file name is passed through resolve first (nil: used as is). The format
// is "json" or an Envoy-style format string ("" means
// config.DefaultAccessLogFormat); an error names the bad operator and
// lists the valid ones. A nil c returns a nil Logger, which logs nothing.
func New(c *config.AccessLog, resolve func(string) string) (*Logger, error) {
	if c == nil {
		return nil, nil
	}
	l := &Logger{}
	switch c.Format {
	case "json":
		l.json = true
	case "":
		c2 := *c
		c2.Format = config.DefaultAccessLogFormat
		return New(&c2, resolve)
	default:
		ops, err := compile(c.Format)
		if err != nil {
			return nil, err
		}
		l.ops = ops
	}
	l.bufs.New = func() any {
		b := make([]byte, 0, 512)
		return &b
	}
	switch c.Path {
	case "", "stdout":
		l.out.Store(os.Stdout)
	case "stderr":
		l.out.Store(os.Stderr)
	default:
		l.path = c.Path
		if resolve != nil {
			l.path = resolve(c.Path)
		}
		f, err := l.open()
		if err != nil {
			return nil, err
		}
		l.out.Store(f)
	}
	return l, nil
}

func (l *Logger) open() (*os.File, error) {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening access log: %w", err)
	}
	return f, nil
}

// Log writes e as one line, with one write(2). Lines from concurrent calls
// never interleave: os.File serializes writes within the process, and
// O_APPEND keeps each write whole when a parent and child process share a
// file during a hot restart. (Two processes sharing a pipe on stdout get
// that guarantee only for lines up to PIPE_BUF, 4096 bytes on Linux.) A
// failed write is dropped and counted in WriteErrors.
func (l *Logger) Log(e *Entry) {
	if l == nil || e == nil {
		return
	}
	bp := l.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = appendJSON(b, e)
	} else {
		b = l.appendText(b, e)
	}
	b = append(b, '\n')
	l.write(b)
	if cap(b) <= maxPooledBuffer {
		*bp = b
		l.bufs.Put(bp)
	}
}

func (l *Logger) write(b []byte) {
	f := l.out.Load()
	if f == nil {
		l.writeErrs.Add(1)
		return
	}
	_, err := f.Write(b)
	// Reopen swapped in a new file and closed this one between our Load
	// and Write: write to the new one (again, if that was swapped too).
	for err != nil && errors.Is(err, os.ErrClosed) {
		f2 := l.out.Load()
		if f2 == nil || f2 == f {
			break
		}
		f = f2
		_, err = f.Write(b)
	}
	if err != nil {
		l.writeErrs.Add(1)
	}
}

// WriteErrors reports how many lines could not be written.
func (l *Logger) WriteErrors() uint64 {
	if l == nil {
		return 0
	}
	return l.writeErrs.Load()
}

// Reopen reopens a file output under its configured name, for logrotate:
// after the file is renamed, the next lines go to a new file with the old
// name. Lines being written meanwhile go to one file or the other, whole.
// If the new file cannot be opened, logging continues to the old one and
// the error is returned. For stdout and stderr it does nothing.
func (l *Logger) Reopen() error {
	if l == nil || l.path == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("reopening access log: logger is closed")
	}
	f, err := l.open()
	if err != nil {
		return fmt.Errorf("reopening access log: %w", err)
	}
	old := l.out.Swap(f)
	if err := old.Close(); err != nil {
		return fmt.Errorf("closing rotated access log: %w", err)
	}
	return nil
}

// Close closes a file output (stdout and stderr stay open). Later Log calls
// write nothing and count as write errors.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	f := l.out.Swap(nil)
	if l.path == "" || f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing access log: %w", err)
	}
	return nil
}

// appendText formats e with the compiled format string.
func (l *Logger) appendText(b []byte, e *Entry) []byte {
	for i := range l.ops {
		o := &l.ops[i]
		switch o.kind {
		case opLiteral:
			b = append(b, o.text...)
		case opStartTime:
			if e.Start.IsZero() {
				b = append(b, '-')
			} else {
				b = appendTime(b, e.Start)
			}
		case opDuration:
			b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
		case opResponseCode:
			b = strconv.AppendInt(b, int64(e.Status), 10)
		case opResponseFlags:
			b = e.Flags.appendTo(b)
		case opBytesReceived:
			b = strconv.AppendInt(b, e.BytesReceived, 10)
		case opBytesSent:
			b = strconv.AppendInt(b, e.BytesSent, 10)
		case opProtocol:
			b = appendText(b, e.Protocol, 0)
		case opReq, opResp:
			v := o.value(e)
			if o.noQuery {
				if q := strings.IndexByte(v, '?'); q >= 0 {
					v = v[:q]
				}
			}
			b = appendText(b, v, o.maxLen)
		case opUpstreamHost:
			b = appendText(b, e.UpstreamHost, 0)
		case opUpstreamCluster:
			b = appendText(b, e.UpstreamCluster, 0)
		case opRouteName:
			b = appendText(b, e.RouteName, 0)
		case opListenerName:
			b = appendText(b, e.ListenerName, 0)
		case opDownstreamRemoteAddress:
			if e.Downstream.IsValid() {
				b = e.Downstream.AppendTo(b)
			} else {
				b = append(b, '-')
			}
		case opDownstreamRemoteAddressWithoutPort:
			if e.Downstream.IsValid() {
				b = e.Downstream.Addr().AppendTo(b)
			} else {
				b = append(b, '-')
			}
		case opUpstreamRequestAttemptCount:
			b = strconv.AppendInt(b, int64(e.Attempts), 10)
		case opUpstreamServiceTime:
			if e.UpstreamServiceTime == 0 {
				b = append(b, '-')
			} else {
				b = strconv.AppendInt(b, e.UpstreamServiceTime.Milliseconds(), 10)
			}
		}
	}
	return b
}

// value returns the REQ or RESP operator's value: the primary name's, or
// the alternative's when the primary is empty.
func (o *op) value(e *Entry) string {
	h := e.RequestHeader
	if o.response {
		h = e.ResponseHeader
	}
	if v := lookup(e, h, o.primary); v != "" || !o.hasAlt {
		return v
	}
	return lookup(e, h, o.alt)
}

func lookup(e *Entry, h *message.Header, r headerRef) string {
	switch r.src {
	case srcMethod:
		return e.Method
	case srcPath:
		return e.Path
	case srcAuthority:
		return e.Authority
	case srcScheme:
		return e.Scheme
	case srcOriginalPath:
		if e.OriginalPath != "" {
			return e.OriginalPath
		}
	case srcRequestID:
		if e.RequestID != "" {
			return e.RequestID
		}
	}
	if h == nil {
		return ""
	}
	return h.Get(r.name)
}

// appendText appends s cut to limit bytes (0: no limit), or "-" if it is
// empty. Control characters (which no valid header holds) are written as
// \xHH so that a value can never break the one-line-per-request shape.
func appendText(b []byte, s string, limit int) []byte {
	if s == "" {
		return append(b, '-')
	}
	if limit > 0 && len(s) > limit {
		s = s[:limit]
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return appendEscapedText(b, s)
		}
	}
	return append(b, s...)
}

func appendEscapedText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendTime appends t in UTC as RFC 3339 with milliseconds:
// 2006-01-02T15:04:05.000Z.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	b = append(b,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
	return b
}

// appendJSON writes e as one JSON object with fixed keys, in a fixed order.
func appendJSON(b []byte, e *Entry) []byte {
	b = append(b, `{"start_time":`...)
	if e.Start.IsZero() {
		b = append(b, "null"...)
	} else {
		b = append(b, '"')
		b = appendTime(b, e.Start)
		b = append(b, '"')
	}
	b = appendJSONField(b, `,"method":`, e.Method)
	b = appendJSONField(b, `,"authority":`, e.Authority)
	path := e.OriginalPath
	if path == "" {
		path = e.Path
	}
	b = appendJSONField(b, `,"path":`, path)
	b = appendJSONField(b, `,"protocol":`, e.Protocol)
	b = append(b, `,"response_code":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"response_flags":"`...)
	b = e.Flags.appendTo(b)
	b = append(b, `","bytes_received":`...)
	b = strconv.AppendInt(b, e.BytesReceived, 10)
	b = append(b, `,"bytes_sent":`...)
	b = strconv.AppendInt(b, e.BytesSent, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendInt(b, e.Duration.Milliseconds(), 10)
	b = appendJSONField(b, `,"upstream_host":`, e.UpstreamHost)
	b = appendJSONField(b, `,"upstream_cluster":`, e.UpstreamCluster)
	b = appendJSONField(b, `,"route_name":`, e.RouteName)
	rid := e.RequestID
	if rid == "" && e.RequestHeader != nil {
		rid = e.RequestHeader.Get("x-request-id")
	}
	b = appendJSONField(b, `,"request_id":`, rid)
	b = append(b, `,"downstream_remote_address":`...)
	if e.Downstream.IsValid() {
		b = append(b, '"')
		b = e.Downstream.AppendTo(b)
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	var ua, xff string
	if h := e.RequestHeader; h != nil {
		ua, xff = h.Get("user-agent"), h.Get("x-forwarded-for")
	}
	b = appendJSONField(b, `,"user_agent":`, ua)
	b = appendJSONField(b, `,"x_forwarded_for":`, xff)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	return append(b, '}')
}

// appendJSONField appends key (already JSON, with its leading comma and
// trailing colon) and s as a JSON string, or null if s is empty.
func appendJSONField(b []byte, key, s string) []byte {
	b = append(b, key...)
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// appendJSONString appends s as a quoted JSON string, escaped as
// encoding/json does without HTML escaping: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped for JavaScript consumers.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
