// Package message is edge's own representation of an HTTP request and
// response, independent of any codec.
//
// The forwarding core (package edge), the router and the upstream pools work
// on these types, never on net/http's, so that a downstream or upstream codec
// can be replaced without touching them. Header names are always lower case,
// as HTTP/2 and HTTP/3 put them on the wire; HTTP/1.1 is case-insensitive, so
// nothing is lost.
//
// A Header is an ordered slice of fields, not a map: forwarding keeps the
// client's order, lookups over the usual 10-30 fields are a short linear scan,
// and Reset keeps the backing array so pooled requests allocate nothing.
package message

import (
	"crypto/tls"
	"io"
	"net/netip"
	"time"
)

// Field is one header field. Name is lower case.
type Field struct {
	Name  string
	Value string
}

// Header is an ordered list of header fields. The zero value is empty and
// ready to use. Names passed to its methods must be lower case.
type Header struct {
	fields []Field
}

// Len reports the number of fields.
func (h *Header) Len() int { return len(h.fields) }

// Fields returns the fields in order. The slice is owned by h: callers must
// not keep it past the next change to h.
func (h *Header) Fields() []Field { return h.fields }

// Get returns the first value of name, or "" if absent.
func (h *Header) Get(name string) string {
	for i := range h.fields {
		if h.fields[i].Name == name {
			return h.fields[i].Value
		}
	}
	return ""
}

// Lookup returns the first value of name and whether it is present.
func (h *Header) Lookup(name string) (string, bool) {
	for i := range h.fields {
		if h.fields[i].Name == name {
			return h.fields[i].Value, true
		}
	}
	return "", false
}

// Has reports whether name is present.
func (h *Header) Has(name string) bool {
	_, ok := h.Lookup(name)
	return ok
}

// Count reports how many fields are named name.
func (h *Header) Count(name string) int {
	n := 0
	for i := range h.fields {
		if h.fields[i].Name == name {
			n++
		}
	}
	return n
}

// Add appends a field. name must be lower case.
func (h *Header) Add(name, value string) {
	h.fields = append(h.fields, Field{Name: name, Value: value})
}

// Set replaces every field named name with one field holding value, kept at
// the position of the first one (or appended).
func (h *Header) Set(name, value string) {
	for i := range h.fields {
		if h.fields[i].Name == name {
			h.fields[i].Value = value
			h.delFrom(name, i+1)
			return
		}
	}
	h.Add(name, value)
}

// Del removes every field named name.
func (h *Header) Del(name string) { h.delFrom(name, 0) }

func (h *Header) delFrom(name string, start int) {
	j := start
	for i := start; i < len(h.fields); i++ {
		if h.fields[i].Name == name {
			continue
		}
		h.fields[j] = h.fields[i]
		j++
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// DelFunc removes every field for which drop returns true.
func (h *Header) DelFunc(drop func(Field) bool) {
	j := 0
	for i := range h.fields {
		if drop(h.fields[i]) {
			continue
		}
		h.fields[j] = h.fields[i]
		j++
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// Reset empties h, keeping its storage.
func (h *Header) Reset() {
	clear(h.fields)
	h.fields = h.fields[:0]
}

// CopyFrom makes h a copy of src, reusing h's storage.
func (h *Header) CopyFrom(src *Header) {
	h.fields = append(h.fields[:0], src.fields...)
}

// Request is an HTTP request as the forwarding core sees it.
type Request struct {
	// Method is the request method, e.g. "GET".
	Method string
	// Scheme is "http" or "https": how the request reached edge (or, from a
	// trusted peer, how it reached the first proxy).
	Scheme string
	// Authority is the host and optional port (Host or :authority).
	Authority string
	// Path is the request target in origin form: path and query, as received.
	Path string
	// ProtoMajor is the downstream protocol version: 1, 2 or 3.
	ProtoMajor int
	// Header holds the request's header fields, without pseudo-headers and
	// without Host.
	Header Header
	// Body is the request body; nil means none.
	Body io.Reader
	// ContentLength is the body length; -1 means unknown (chunked or
	// streamed), 0 means no body.
	ContentLength int64
	// Trailer holds request trailers once Body has returned io.EOF.
	Trailer Header
	// RemoteAddr is the downstream peer's address.
	RemoteAddr netip.AddrPort
	// TLS reports whether the downstream connection is encrypted.
	TLS bool
	// TLSState is the downstream TLS connection's state, or nil. A
	// verified client certificate shows as non-empty VerifiedChains.
	TLSState *tls.ConnectionState
	// Deadline, if not zero, bounds the upstream exchange, response body
	// included, as a context deadline would, without the cost of creating
	// a context per request. The pools honour the earlier of it and the
	// context's deadline; hitting it is a timeout.
	Deadline time.Time
	// OnInformational, if not nil, is called for each 1xx response (other
	// than 101) the upstream sends before the final response.
	OnInformational func(status int, h *Header)
}

// Reset clears r for reuse, keeping header storage.
// SetTLS records the downstream connection's TLS state (nil for
// cleartext) and the scheme that follows from it.
func (r *Request) SetTLS(st *tls.ConnectionState) {
	r.TLS, r.TLSState, r.Scheme = st != nil, st, "http"
	if st != nil {
		r.Scheme = "https"
	}
}

func (r *Request) Reset() {
	h, t := r.Header, r.Trailer
	h.Reset()
	t.Reset()
	*r = Request{Header: h, Trailer: t}
}

// Response is an upstream's HTTP response as the forwarding core sees it.
type Response struct {
	// Status is the status code.
	Status int
	// Header holds the response header fields.
	Header Header
	// Body is the response body. It is never nil for a response returned
	// by a round trip; the caller must Close it.
	Body io.ReadCloser
	// ContentLength is the body length; -1 means unknown.
	ContentLength int64
	// Trailer holds response trailers once Body has returned io.EOF.
	Trailer Header
	// Upgraded, for a 101 Switching Protocols response, is the upstream
	// connection, now carrying the upgraded protocol. The caller owns it.
	Upgraded io.ReadWriteCloser
}

// NoBody is an empty response body.
var NoBody io.ReadCloser = noBody{}

type noBody struct{}

func (noBody) Read([]byte) (int, error) { return 0, io.EOF }
func (noBody) Close() error             { return nil }
