package http1

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/edgeproxy/edge/edge/message"
	"github.com/edgeproxy/edge/internal/h1wire"
)

// checkRequest validates everything written before the body, so that a bad
// request is refused with nothing sent.
func checkRequest(req *message.Request) error {
	if req.Method == "" || !h1wire.IsToken(req.Method) {
		return errReqMethod
	}
	if req.Method == "CONNECT" {
		return errReqConnect
	}
	for i := 0; i < len(req.Path); i++ {
		if b := req.Path[i]; b <= ' ' || b == 0x7f {
			return errReqPath
		}
	}
	for i := 0; i < len(req.Authority); i++ {
		if b := req.Authority[i]; b <= ' ' || b == 0x7f {
			return errReqAuthority
		}
	}
	for _, f := range req.Header.Fields() {
		if f.Name == "" || !h1wire.IsToken(f.Name) {
			return fmt.Errorf("%w: %q", errReqFieldName, f.Name)
		}
		if !validValue(f.Value) {
			return fmt.Errorf("%w: %s", errReqFieldValue, f.Name)
		}
	}
	if req.ContentLength < -1 || (req.ContentLength > 0 && req.Body == nil) {
		return errReqContentLength
	}
	return nil
}

// validValue rejects CR, LF and NUL, the bytes that split or truncate a
// field (RFC 9110 §5.5).
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b == '\r' || b == '\n' || b == 0 {
			return false
		}
	}
	return true
}

// needsZeroLength lists the methods that get "content-length: 0" when they
// carry no body: servers may answer 411 otherwise (RFC 9110 §8.6).
func needsZeroLength(method string) bool {
	return method == "POST" || method == "PUT" || method == "PATCH"
}

// writeRequest writes req on c: the head in one buffered write together
// with the start of the body, then the rest of the body.
func (rt *roundTrip) writeRequest(c *conn, req *message.Request) *Error {
	bw := c.bw
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	if req.Path == "" {
		bw.WriteByte('/')
	} else {
		bw.WriteString(req.Path)
	}
	bw.WriteString(" HTTP/1.1\r\nhost: ")
	bw.WriteString(req.Authority)
	bw.WriteString("\r\n")
	for _, f := range req.Header.Fields() {
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	hasBody := req.Body != nil && req.ContentLength != 0
	switch {
	case !hasBody:
		if needsZeroLength(req.Method) {
			bw.WriteString("content-length: 0\r\n")
		}
	case req.ContentLength > 0:
		bw.WriteString("content-length: ")
		bw.Write(strconv.AppendInt(c.scratch[:0], req.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("transfer-encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if !hasBody {
		if err := bw.Flush(); err != nil {
			return rt.writeError(c, err)
		}
		return nil
	}
	if req.ContentLength > 0 {
		return rt.writeFixed(c, req.Body, req.ContentLength)
	}
	return rt.writeChunked(c, req)
}

func (rt *roundTrip) writeError(c *conn, err error) *Error {
	return classify(rt.ctx, "write request", err, c.nwritten > 0)
}

func (rt *roundTrip) bodyError(c *conn, err error) *Error {
	return &Error{Kind: RequestBody, Sent: c.nwritten > 0, Err: fmt.Errorf("read request body: %w", err)}
}

// Errors about the request body's length.
var (
	errBodyShort = errors.New("request body shorter than ContentLength")
	errBodyLong  = errors.New("request body longer than ContentLength")
)

// writeFixed writes exactly n body bytes, reading them straight into the
// write buffer. Each body read is flushed at once, so a slow body does not
// hold back what has arrived.
func (rt *roundTrip) writeFixed(c *conn, body io.Reader, n int64) *Error {
	bw := c.bw
	eof := false
	for n > 0 {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return rt.writeError(c, err)
			}
		}
		buf := bw.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n)]
		m, err := body.Read(buf)
		rt.bodyRead = true
		if m > 0 {
			bw.Write(buf[:m])
			n -= int64(m)
			if ferr := bw.Flush(); ferr != nil {
				return rt.writeError(c, ferr)
			}
		}
		if err == io.EOF {
			eof = true
			if n > 0 {
				return rt.bodyError(c, errBodyShort)
			}
			break
		}
		if err != nil {
			return rt.bodyError(c, err)
		}
	}
	if !eof {
		// The body must end here; one more read tells.
		m, err := body.Read(c.scratch[:1])
		if m > 0 {
			return rt.bodyError(c, errBodyLong)
		}
		if err != nil && err != io.EOF {
			return rt.bodyError(c, err)
		}
	}
	return nil
}

// chunkRoom is the write-buffer space reserved in front of chunk data for
// its size line: up to 16 hex digits and CRLF.
const chunkRoom = 18

// writeChunked writes the body with chunked transfer coding, one chunk per
// body read, flushed at once, then the last chunk and req.Trailer.
func (rt *roundTrip) writeChunked(c *conn, req *message.Request) *Error {
	bw := c.bw
	body := req.Body
	for {
		if bw.Available() < chunkRoom+2+64 {
			if err := bw.Flush(); err != nil {
				return rt.writeError(c, err)
			}
		}
		// Read straight into the write buffer, leaving room in front for
		// the size line and behind for the CRLF; then write the size line
		// and move the data up behind it (an overlapping copy).
		avail := bw.AvailableBuffer()
		avail = avail[:cap(avail)]
		data := avail[chunkRoom : len(avail)-2]
		m, err := body.Read(data)
		rt.bodyRead = true
		if m > 0 {
			size := strconv.AppendUint(c.scratch[:0], uint64(m), 16)
			size = append(size, '\r', '\n')
			bw.Write(size)
			bw.Write(data[:m])
			bw.WriteString("\r\n")
			if err == nil {
				if ferr := bw.Flush(); ferr != nil {
					return rt.writeError(c, ferr)
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return rt.bodyError(c, err)
		}
	}
	bw.WriteString("0\r\n")
	for _, f := range req.Trailer.Fields() {
		if f.Name == "" || !h1wire.IsToken(f.Name) || !validValue(f.Value) {
			return &Error{Kind: Protocol, Sent: c.nwritten > 0, Err: fmt.Errorf("write request trailer %q: %w", f.Name, errReqTrailer)}
		}
		bw.WriteString(f.Name)
		bw.WriteString(": ")
		bw.WriteString(f.Value)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if err := bw.Flush(); err != nil {
		return rt.writeError(c, err)
	}
	return nil
}
