package message

import (
	"net/textproto"
	"strings"
)

// LowerName returns the lower-case form of a header name in net/http's
// canonical form ("Content-Type" -> "content-type"), without allocating
// for common names.
func LowerName(canonical string) string {
	if !hasUpper(canonical) {
		return canonical
	}
	if l, ok := commonLower[canonical]; ok {
		return l
	}
	return strings.ToLower(canonical)
}

// CanonicalName returns net/http's canonical form of a lower-case header
// name ("content-type" -> "Content-Type"), without allocating for common
// names. net/http's HTTP/1.1 writer recognises framing headers only in
// that form.
func CanonicalName(lower string) string {
	if c, ok := commonCanonical[lower]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(lower)
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// commonNames are the header names seen on most requests and responses.
var commonNames = []string{
	"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges",
	"access-control-allow-credentials", "access-control-allow-headers",
	"access-control-allow-methods", "access-control-allow-origin",
	"access-control-expose-headers", "access-control-max-age", "age",
	"allow", "alt-svc", "authorization", "cache-control", "connection",
	"content-disposition", "content-encoding", "content-language",
	"content-length", "content-location", "content-range",
	"content-security-policy", "content-type", "cookie", "date", "etag",
	"expect", "expires", "forwarded", "from", "grpc-encoding", "grpc-accept-encoding",
	"grpc-message", "grpc-status", "grpc-status-details-bin", "grpc-timeout", "host",
	"if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
	"keep-alive", "last-modified", "link", "location", "origin", "pragma",
	"proxy-authorization", "range", "referer", "referrer-policy", "retry-after",
	"sec-websocket-accept", "sec-websocket-extensions", "sec-websocket-key",
	"sec-websocket-protocol", "sec-websocket-version", "server", "set-cookie",
	"strict-transport-security", "te", "trailer", "transfer-encoding", "upgrade",
	"user-agent", "vary", "via", "www-authenticate", "x-content-type-options",
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-frame-options",
	"x-request-id", "x-xss-protection", "x-edge-internal", "x-edge-original-path",
	"x-edge-attempt-count", "x-edge-overloaded",
}

var commonLower, commonCanonical = func() (map[string]string, map[string]string) {
	lower := make(map[string]string, len(commonNames))
	canon := make(map[string]string, len(commonNames))
	for _, n := range commonNames {
		c := textproto.CanonicalMIMEHeaderKey(n)
		lower[c] = n
		canon[n] = c
	}
	return lower, canon
}()
