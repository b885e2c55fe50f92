package http1

import (
	"bufio"
	"io"

	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/internal/h1wire"
)

// head holds what the parser learned from one response head.
type head struct {
	status    int
	minor     int   // HTTP/1.minor
	cl        int64 // Content-Length, if clSeen
	clSeen    bool
	teSeen    bool
	chunked   bool
	connClose bool
	keepAlive bool
}

// readHead reads one response head: the status line into h, the fields into
// dst (only if the head is a final response or wantInfo is set; the fields
// of an unwanted 1xx are checked but not converted). Framing fields
// (Content-Length, Transfer-Encoding, Connection) are also recorded in h.
func (c *conn) readHead(h *head, dst *message.Header, wantInfo bool) error {
	*h = head{}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return errStatusLine
		}
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if err := parseStatusLine(line, h); err != nil {
		return err
	}
	build := wantInfo || h.status < 100 || h.status >= 200 || h.status == 101
	return c.readFields(dst, h, c.p.maxHeaderBytes-len(line), build)
}

// parseStatusLine parses "HTTP/1.x DDD[ reason]" followed by CRLF or LF.
func parseStatusLine(line []byte, h *head) error {
	l := line[:len(line)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	if len(l) < 12 || string(l[:5]) != "HTTP/" {
		return errStatusLine
	}
	if l[5] != '1' || l[6] != '.' || l[7] < '0' || l[7] > '9' || l[8] != ' ' {
		return errVersion
	}
	h.minor = 1
	if l[7] == '0' {
		h.minor = 0
	}
	s := 0
	for _, d := range l[9:12] {
		if d < '0' || d > '9' {
			return errStatusLine
		}
		s = s*10 + int(d-'0')
	}
	if s < 100 || (len(l) > 12 && l[12] != ' ') {
		return errStatusLine
	}
	h.status = s
	return nil
}

// readFields reads field lines up to the empty line, at most budget bytes
// and maxHeaderFields fields. The lines are copied into c.hdr, names are
// lower-cased in place, and, if build is set, the whole block becomes one
// string that the fields appended to dst slice. h, if not nil, records the
// framing fields (nil for a trailer section).
func (c *conn) readFields(dst *message.Header, h *head, budget int, build bool) error {
	c.hdr = c.hdr[:0]
	c.spans = c.spans[:0]
	start := 0
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(c.hdr)+len(frag) > budget {
			return errHeaderTooLarge
		}
		c.hdr = append(c.hdr, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		end := len(c.hdr) - 1
		if end > start && c.hdr[end-1] == '\r' {
			end--
		}
		if end == start {
			break
		}
		if len(c.spans) == c.p.maxHeaderFields {
			return errTooManyFields
		}
		if err := c.parseField(start, end, h); err != nil {
			return err
		}
		start = len(c.hdr)
	}
	if build && len(c.spans) > 0 {
		s := string(c.hdr)
		for _, sp := range c.spans {
			dst.Add(s[sp.ns:sp.ne], s[sp.vs:sp.ve])
		}
	}
	return nil
}

// parseField checks the field line c.hdr[start:end] (without CRLF),
// lower-cases its name in place and records its span.
func (c *conn) parseField(start, end int, h *head) error {
	line := c.hdr[start:end]
	colon, vs, ve, fault := h1wire.SplitField(line)
	switch fault {
	case h1wire.FieldObsFold:
		// RFC 9112 §5.2: a user agent may replace obs-fold with spaces,
		// but a proxy had better not forward what others parse differently.
		return errObsFold
	case h1wire.FieldBadName:
		// Includes whitespace before the colon (RFC 9112 §5.1).
		return errFieldName
	case h1wire.FieldBadValue:
		// CR, LF, NUL and the other controls except HTAB are invalid
		// (RFC 9110 §5.5); a proxy forwarding them invites smuggling.
		return errFieldValue
	}
	if h != nil {
		if err := h.framing(line[:colon], line[vs:ve]); err != nil {
			return err
		}
	}
	c.spans = append(c.spans, span{int32(start), int32(start + colon), int32(start + vs), int32(start + ve)})
	return nil
}

// framing records the framing-related field name: value, if it is one.
func (h *head) framing(name, value []byte) error {
	switch len(name) {
	case len("connection"):
		if string(name) == "connection" {
			cl, ka := h1wire.ConnectionOptions(value)
			h.connClose = h.connClose || cl
			h.keepAlive = h.keepAlive || ka
		}
	case len("content-length"):
		if string(name) == "content-length" {
			return h.contentLength(value)
		}
	case len("transfer-encoding"):
		if string(name) == "transfer-encoding" {
			h.teSeen = true
			for v := value; len(v) > 0; {
				var tok []byte
				if tok, v = h1wire.NextElement(v); len(tok) == 0 {
					continue
				}
				// Only chunked is supported, as by net/http: passing any
				// other coding through would hand the client bytes whose
				// encoding no header announces any more.
				if !h1wire.EqualLower(tok, "chunked") || h.chunked {
					return errTE
				}
				h.chunked = true
			}
		}
	}
	return nil
}

// contentLength parses a Content-Length value. A list of identical values,
// or repeated identical fields, is accepted as one (RFC 9110 §8.6);
// differing values are an error (RFC 9112 §6.3, rule 5).
func (h *head) contentLength(v []byte) error {
	if len(v) == 0 {
		return errContentLength
	}
	for len(v) > 0 {
		var elem []byte
		elem, v = h1wire.NextElement(v)
		n, ok := h1wire.ParseContentLength(elem)
		if !ok {
			return errContentLength
		}
		if h.clSeen && n != h.cl {
			return errConflictingCL
		}
		h.clSeen, h.cl = true, n
	}
	return nil
}

// isUpgrade reports whether req asks for a protocol upgrade: an upgrade
// field and the upgrade token in connection.
func isUpgrade(req *message.Request) bool {
	if !req.Header.Has("upgrade") {
		return false
	}
	for _, f := range req.Header.Fields() {
		if f.Name != "connection" {
			continue
		}
		for v := []byte(f.Value); len(v) > 0; {
			var tok []byte
			if tok, v = h1wire.NextElement(v); h1wire.EqualLower(tok, "upgrade") {
				return true
			}
		}
	}
	return false
}
