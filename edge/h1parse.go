package edge

import (
	"bufio"
	"io"
	"net/http"
	"strconv"

	"github.com/edgeproxy/edge/internal/h1wire"
)

// This file is the HTTP/1.1 request parser (RFC 9112): the request line,
// header and trailer fields, and the framing rules that keep a front proxy
// safe from request smuggling. It reads from the connection's
// bufio.Reader, copies the head into a per-connection byte slice, checks
// and lower-cases it in place, and converts it to one string that every
// name and value slices: one allocation per request head.

// h1Error is a request the parser refuses: the status and short text of
// the local answer. The connection is closed after it.
type h1Error struct {
	status int
	msg    string
}

func (e *h1Error) Error() string { return "http1: " + strconv.Itoa(e.status) + " " + e.msg }

var (
	errRequestLine     = &h1Error{400, "malformed request line"}
	errMethod          = &h1Error{400, "invalid method"}
	errTarget          = &h1Error{400, "invalid request target"}
	errVersion         = &h1Error{400, "malformed HTTP version"}
	errVersionNotSupp  = &h1Error{505, "HTTP version not supported"}
	errURITooLong      = &h1Error{414, "request line too long"}
	errHeadTooLarge    = &h1Error{431, "request header fields too large"}
	errTooManyFields   = &h1Error{431, "too many request header fields"}
	errObsFold         = &h1Error{400, "obsolete line folding in header field"}
	errFieldName       = &h1Error{400, "invalid header field name"}
	errFieldValue      = &h1Error{400, "invalid header field value"}
	errNoHost          = &h1Error{400, "missing host header"}
	errManyHosts       = &h1Error{400, "more than one host header"}
	errBadHost         = &h1Error{400, "invalid host"}
	errContentLength   = &h1Error{400, "invalid content-length"}
	errTEAndCL         = &h1Error{400, "transfer-encoding with content-length"}
	errTEHTTP10        = &h1Error{400, "transfer-encoding in an HTTP/1.0 request"}
	errTENotChunked    = &h1Error{501, "transfer-encoding other than chunked"}
	errConnect         = &h1Error{501, "CONNECT is not supported"}
	errChunkLine       = &h1Error{400, "malformed chunk size line"}
	errChunkEnd        = &h1Error{400, "chunk data not followed by CRLF"}
	errTrailerTooLarge = &h1Error{400, "request trailers too large"}
)

// errLineTooLong is readLine's budget running out; the caller turns it
// into 414 or 431.
var errLineTooLong = &h1Error{431, "line too long"}

// hostChar marks the bytes allowed in a host header or absolute-form
// authority: RFC 3986 reg-name, IP literals and a port.
var hostChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-._~!$&'()*+,;=:[]%" {
		t[c] = true
	}
	return t
}()

// statusLines holds "HTTP/1.1 NNN Reason\r\n" for every code from 100 to
// 599, so writing a status line allocates nothing.
var statusLines = func() (t [600]string) {
	for code := 100; code < 600; code++ {
		t[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
	}
	return t
}()

func statusLine(code int) string {
	if code >= 100 && code < 600 {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " \r\n"
}

// fieldSpan locates a field's name and value in the head buffer.
type fieldSpan struct{ ns, ne, vs, ve int32 }

// h1Head is what parsing a request head learned, besides the fields.
type h1Head struct {
	methodEnd        int // method is hdr[:methodEnd]
	targetStart      int
	targetEnd        int
	minor            int // HTTP/1.minor: 0 or 1
	hostStart        int // host value span, if hosts > 0
	hostEnd          int
	hosts            int
	contentLength    int64 // if clSeen
	clSeen           bool
	teFields         int
	chunked          bool // the one transfer-encoding field says exactly chunked
	connClose        bool
	connKeepAlive    bool
	expect100        bool
	fields           int
	absAuthorityFrom int // absolute-form authority span in hdr, if absAuthorityTo > 0
	absAuthorityTo   int
	absPathFrom      int
}

// readLine appends the next line (through LF) from br to c.hdr, within
// limit bytes of c.hdr in all, and returns its span without the line
// ending (LF, or CRLF).
func (c *h1conn) readLine(limit int) (start, end int, err error) {
	start = len(c.hdr)
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.hdr)+len(frag) > limit {
			return 0, 0, errLineTooLong
		}
		c.hdr = append(c.hdr, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(c.hdr) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
		break
	}
	end = len(c.hdr) - 1
	if end > start && c.hdr[end-1] == '\r' {
		end--
	}
	return start, end, nil
}

// readHead reads one request head into c.req. An *h1Error means the
// request is refused with that status; other errors are I/O errors.
func (c *h1conn) readHead() error {
	d := c.d
	c.hdr = c.hdr[:0]
	c.spans = c.spans[:0]
	h := &c.head
	*h = h1Head{}

	// The request line. RFC 9112 §2.2: a server should ignore at least
	// one empty line received before it.
	var ls, le int
	for empty := 0; ; empty++ {
		var err error
		ls, le, err = c.readLine(d.maxHeadBytes)
		if err != nil {
			if err == errLineTooLong {
				return errURITooLong
			}
			return err
		}
		if le > ls {
			break
		}
		if empty == 3 {
			return errRequestLine
		}
		c.hdr = c.hdr[:0]
	}
	if err := c.parseRequestLine(ls, le); err != nil {
		return err
	}

	for {
		fs, fe, err := c.readLine(d.maxHeadBytes)
		if err != nil {
			if err == errLineTooLong {
				return errHeadTooLarge
			}
			return err
		}
		if fe == fs {
			break
		}
		if h.fields == d.maxFields {
			return errTooManyFields
		}
		h.fields++
		if err := c.parseField(fs, fe, true); err != nil {
			return err
		}
	}
	return c.checkFraming()
}

// parseRequestLine checks "METHOD SP request-target SP HTTP/1.x" in
// c.hdr[ls:le] and records where its parts are.
func (c *h1conn) parseRequestLine(ls, le int) error {
	line := c.hdr[ls:le]
	h := &c.head
	i := 0
	for i < len(line) && line[i] != ' ' {
		if !h1wire.IsTchar(line[i]) {
			return errMethod
		}
		i++
	}
	if i == 0 || i == len(line) {
		return errRequestLine
	}
	h.methodEnd = ls + i
	i++
	ts := i
	for i < len(line) && line[i] != ' ' {
		// Visible ASCII only: no controls (a bare CR included), no
		// spaces, no obs-text, no fragment.
		if b := line[i]; b <= ' ' || b >= 0x7f || b == '#' {
			return errTarget
		}
		i++
	}
	if i == ts || i == len(line) {
		return errRequestLine
	}
	h.targetStart, h.targetEnd = ls+ts, ls+i
	v := line[i+1:]
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return errVersion
	}
	if v[5] != '1' {
		return errVersionNotSupp
	}
	if v[7] == '0' {
		h.minor = 0
	} else {
		h.minor = 1 // RFC 9110 §6.2: a higher minor version is served as 1.1
	}
	return c.parseTarget()
}

// parseTarget classifies the request target: origin form, asterisk form
// (OPTIONS only) or absolute form, whose authority replaces Host.
func (c *h1conn) parseTarget() error {
	h := &c.head
	t := c.hdr[h.targetStart:h.targetEnd]
	method := c.hdr[:h.methodEnd]
	if string(method) == "CONNECT" {
		return errConnect
	}
	switch {
	case t[0] == '/':
		return nil
	case len(t) == 1 && t[0] == '*':
		if string(method) != "OPTIONS" {
			return errTarget
		}
		return nil
	}
	var rest int
	switch {
	case h1wire.HasPrefixLower(t, "http://"):
		rest = len("http://")
	case h1wire.HasPrefixLower(t, "https://"):
		rest = len("https://")
	default:
		return errTarget
	}
	as := rest
	for rest < len(t) && t[rest] != '/' && t[rest] != '?' {
		if !hostChar[t[rest]] {
			return errBadHost // includes userinfo ('@')
		}
		rest++
	}
	if rest == as {
		return errBadHost
	}
	h.absAuthorityFrom = h.targetStart + as
	h.absAuthorityTo = h.targetStart + rest
	h.absPathFrom = h.targetStart + rest
	return nil
}

// parseField checks the field line c.hdr[start:end], lower-cases its name
// in place and records its span in c.spans. In a request head (head set)
// it also records the framing fields, which are not forwarded as fields.
func (c *h1conn) parseField(start, end int, head bool) error {
	line := c.hdr[start:end]
	colon, vs, ve, fault := h1wire.SplitField(line)
	switch fault {
	case h1wire.FieldObsFold:
		// obs-fold (RFC 9112 §5.2): a proxy must not forward a field
		// that others may unfold differently.
		return errObsFold
	case h1wire.FieldBadName:
		return errFieldName
	case h1wire.FieldBadValue:
		return errFieldValue
	}
	name, value := line[:colon], line[vs:ve]
	if head {
		skip, err := c.framingField(name, value, start+vs, start+ve)
		if err != nil || skip {
			return err
		}
	} else if skipTrailer(name) {
		return nil
	}
	c.spans = append(c.spans, fieldSpan{int32(start), int32(start + colon), int32(start + vs), int32(start + ve)})
	return nil
}

// framingField records host, content-length, transfer-encoding,
// connection and expect. skip reports a field edge consumes itself rather
// than forwarding (host, content-length, transfer-encoding).
func (c *h1conn) framingField(name, value []byte, vs, ve int) (skip bool, err error) {
	h := &c.head
	switch len(name) {
	case len("host"):
		if string(name) == "host" {
			h.hosts++
			h.hostStart, h.hostEnd = vs, ve
			return true, nil
		}
	case len("expect"):
		if string(name) == "expect" && h1wire.EqualLower(value, "100-continue") {
			h.expect100 = true
		}
	case len("connection"):
		if string(name) == "connection" {
			cl, ka := h1wire.ConnectionOptions(value)
			h.connClose = h.connClose || cl
			h.connKeepAlive = h.connKeepAlive || ka
		}
	case len("content-length"):
		if string(name) == "content-length" {
			n, ok := h1wire.ParseContentLength(value)
			if !ok || (h.clSeen && n != h.contentLength) {
				return false, errContentLength
			}
			h.clSeen, h.contentLength = true, n
			return true, nil
		}
	case len("transfer-encoding"):
		if string(name) == "transfer-encoding" {
			h.teFields++
			h.chunked = h1wire.EqualLower(value, "chunked")
			return true, nil
		}
	}
	return false, nil
}

// checkFraming applies RFC 9112's rules on Host and message framing once
// every field is known.
func (c *h1conn) checkFraming() error {
	h := &c.head
	switch {
	case h.hosts > 1:
		return errManyHosts
	case h.hosts == 0 && h.minor == 1:
		return errNoHost
	}
	for _, b := range c.hdr[h.hostStart:h.hostEnd] {
		if !hostChar[b] {
			return errBadHost
		}
	}
	if h.teFields > 0 {
		switch {
		case h.minor == 0:
			// RFC 9112 §6.1: faulty framing, whatever else is there.
			return errTEHTTP10
		case h.clSeen:
			return errTEAndCL
		case h.teFields > 1 || !h.chunked:
			return errTENotChunked
		}
	}
	return nil
}

// skipTrailer reports whether a trailer field may not be forwarded (RFC
// 9110 §6.5.1: framing, routing and connection fields).
func skipTrailer[T string | []byte](name T) bool {
	switch string(name) {
	case "content-length", "transfer-encoding", "host", "te", "trailer",
		"connection", "keep-alive", "proxy-connection", "upgrade":
		return true
	}
	return false
}

// buildRequest fills c.req from the checked head: the head becomes one
// string, and the method, target, authority and every field slice it.
func (c *h1conn) buildRequest() {
	h := &c.head
	s := string(c.hdr)
	req := &c.req
	req.Method = s[:h.methodEnd]
	req.Path = s[h.targetStart:h.targetEnd]
	if h.hosts > 0 {
		req.Authority = s[h.hostStart:h.hostEnd]
	}
	if h.absAuthorityTo > 0 {
		// Absolute form: the URL's authority wins over Host (RFC 9112
		// §3.2.2), and the target is reduced to origin form.
		req.Authority = s[h.absAuthorityFrom:h.absAuthorityTo]
		switch p := s[h.absPathFrom:h.targetEnd]; {
		case p == "":
			req.Path = "/"
		case p[0] == '?':
			req.Path = "/" + p
		default:
			req.Path = p
		}
	}
	req.ProtoMajor = 1
	req.SetTLS(c.tlsState)
	req.RemoteAddr = c.remote
	for _, sp := range c.spans {
		req.Header.Add(s[sp.ns:sp.ne], s[sp.vs:sp.ve])
	}
	// A body is its own object, not part of c: a reader that outlives the
	// request (x/net's HTTP/2 body writer) then finds it closed rather
	// than reading the next request's body.
	switch {
	case h.teFields > 0:
		req.ContentLength = -1
		c.body = &h1body{c: c, chunked: true}
		req.Body = c.body
	case h.contentLength > 0:
		req.ContentLength = h.contentLength
		c.body = &h1body{c: c, n: h.contentLength}
		req.Body = c.body
	}
}

// parseChunkSize parses a chunk-size line without its CRLF: hex digits,
// then optionally BWS ";" and extensions, which are checked (no control
// bytes but HTAB) and ignored.
func parseChunkSize(line []byte) (int64, error) {
	n, ext, ok := h1wire.ParseChunkSize(line)
	if !ok || !h1wire.ValidFieldValue(ext) {
		return 0, errChunkLine
	}
	return n, nil
}

// readTrailers reads the trailer section after the last chunk into
// c.req.Trailer, within the listener's header limits.
func (c *h1conn) readTrailers() error {
	d := c.d
	c.hdr = c.hdr[:0]
	c.spans = c.spans[:0]
	for n := 0; ; n++ {
		fs, fe, err := c.readLine(d.maxHeadBytes)
		if err != nil {
			if err == errLineTooLong {
				return errTrailerTooLarge
			}
			return err
		}
		if fe == fs {
			break
		}
		if n == d.maxFields {
			return errTrailerTooLarge
		}
		if err := c.parseField(fs, fe, false); err != nil {
			return err
		}
	}
	if len(c.spans) > 0 {
		s := string(c.hdr)
		for _, sp := range c.spans {
			c.req.Trailer.Add(s[sp.ns:sp.ne], s[sp.vs:sp.ve])
		}
	}
	return nil
}
