package accesslog

import (
	"fmt"
	"strconv"
	"strings"
)

// opKind is what one piece of a compiled format writes.
type opKind uint8

const (
	opLiteral opKind = iota
	opStartTime
	opDuration
	opResponseCode
	opResponseFlags
	opBytesReceived
	opBytesSent
	opProtocol
	opReq
	opResp
	opUpstreamHost
	opUpstreamCluster
	opRouteName
	opListenerName
	opDownstreamRemoteAddress
	opDownstreamRemoteAddressWithoutPort
	opUpstreamRequestAttemptCount
	opUpstreamServiceTime
)

// operators maps each operator name to its kind. REQ, RESP and
// REQ_WITHOUT_QUERY take a header argument; the others take none.
var operators = map[string]opKind{
	"START_TIME":                             opStartTime,
	"DURATION":                               opDuration,
	"RESPONSE_CODE":                          opResponseCode,
	"RESPONSE_FLAGS":                         opResponseFlags,
	"BYTES_RECEIVED":                         opBytesReceived,
	"BYTES_SENT":                             opBytesSent,
	"PROTOCOL":                               opProtocol,
	"REQ":                                    opReq,
	"REQ_WITHOUT_QUERY":                      opReq,
	"RESP":                                   opResp,
	"UPSTREAM_HOST":                          opUpstreamHost,
	"UPSTREAM_CLUSTER":                       opUpstreamCluster,
	"ROUTE_NAME":                             opRouteName,
	"LISTENER_NAME":                          opListenerName,
	"DOWNSTREAM_REMOTE_ADDRESS":              opDownstreamRemoteAddress,
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": opDownstreamRemoteAddressWithoutPort,
	"UPSTREAM_REQUEST_ATTEMPT_COUNT":         opUpstreamRequestAttemptCount,
	"UPSTREAM_SERVICE_TIME":                  opUpstreamServiceTime,
}

// validOperators is the list an unknown-operator error shows.
const validOperators = "%START_TIME%, %DURATION%, %RESPONSE_CODE%, %RESPONSE_FLAGS%, " +
	"%BYTES_RECEIVED%, %BYTES_SENT%, %PROTOCOL%, %REQ(X?Y):N%, %REQ_WITHOUT_QUERY(X?Y):N%, %RESP(X?Y):N%, " +
	"%UPSTREAM_HOST%, %UPSTREAM_CLUSTER%, %ROUTE_NAME%, %LISTENER_NAME%, " +
	"%DOWNSTREAM_REMOTE_ADDRESS%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, " +
	"%UPSTREAM_REQUEST_ATTEMPT_COUNT%, %UPSTREAM_SERVICE_TIME%, and %% for a literal %"

// source is where a REQ or RESP name reads its value from.
type source uint8

const (
	srcHeader       source = iota // the header named name
	srcMethod                     // :METHOD
	srcPath                       // :PATH
	srcAuthority                  // :AUTHORITY (also HOST)
	srcScheme                     // :SCHEME
	srcOriginalPath               // X-EDGE-ORIGINAL-PATH: Entry.OriginalPath, else the header
	srcRequestID                  // X-REQUEST-ID: Entry.RequestID, else the header
)

// headerRef is one compiled header name of REQ(X?Y) or RESP(X?Y).
type headerRef struct {
	src  source
	name string // lower case
}

// op is one compiled piece of a format string.
type op struct {
	kind     opKind
	text     string    // opLiteral
	primary  headerRef // opReq, opResp
	alt      headerRef // opReq, opResp: the fallback after "?", if hasAlt
	hasAlt   bool
	maxLen   int  // :N truncation of REQ/RESP values; 0 means none
	noQuery  bool // REQ_WITHOUT_QUERY
	response bool // RESP rather than REQ
}

// compile turns an Envoy-style format string into ops. A trailing newline
// is dropped: Log ends every line with exactly one.
func compile(format string) ([]op, error) {
	format = strings.TrimRight(format, "\r\n")
	var ops []op
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			ops = append(ops, op{kind: opLiteral, text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			j := strings.IndexByte(format[i:], '%')
			if j < 0 {
				j = len(format) - i
			}
			lit.WriteString(format[i : i+j])
			i += j
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		j := strings.IndexByte(format[i+1:], '%')
		if j < 0 {
			return nil, fmt.Errorf("format: unterminated operator %q at byte %d: close it with %% (write %%%% for a literal %%)", format[i:], i)
		}
		text := format[i+1 : i+1+j]
		o, err := parseOperator(text)
		if err != nil {
			return nil, fmt.Errorf("format: %%%s%% at byte %d: %w", text, i, err)
		}
		flush()
		ops = append(ops, o)
		i += j + 2
	}
	flush()
	return ops, nil
}

// parseOperator parses NAME, NAME(ARG) or NAME(ARG):N (without the %s).
func parseOperator(text string) (op, error) {
	name, rest := text, ""
	if k := strings.IndexByte(text, '('); k >= 0 {
		name, rest = text[:k], text[k:]
	}
	kind, ok := operators[name]
	if !ok {
		return op{}, fmt.Errorf("unknown operator %q: valid operators are %s", name, validOperators)
	}
	o := op{kind: kind, noQuery: name == "REQ_WITHOUT_QUERY", response: kind == opResp}
	if kind != opReq && kind != opResp {
		if rest != "" {
			return op{}, fmt.Errorf("%s takes no argument (custom formats such as START_TIME(...) are not supported)", name)
		}
		return o, nil
	}
	end := strings.IndexByte(rest, ')')
	if rest == "" || end < 0 {
		return op{}, fmt.Errorf("%s needs a header name: write %%%s(USER-AGENT)%% or %%%s(X?Y)%% for a fallback", name, name, name)
	}
	arg, tail := rest[1:end], rest[end+1:]
	if tail != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tail, ":"))
		if !strings.HasPrefix(tail, ":") || err != nil || n <= 0 {
			return op{}, fmt.Errorf("after %s(%s) want :N, a positive maximum length, got %q", name, arg, tail)
		}
		o.maxLen = n
	}
	first, second, hasAlt := strings.Cut(arg, "?")
	var err error
	if o.primary, err = parseHeaderRef(first, o.response); err != nil {
		return op{}, err
	}
	if hasAlt {
		o.hasAlt = true
		if o.alt, err = parseHeaderRef(second, o.response); err != nil {
			return op{}, err
		}
	}
	return o, nil
}

func parseHeaderRef(s string, response bool) (headerRef, error) {
	n := strings.ToLower(s)
	if n == "" {
		return headerRef{}, fmt.Errorf("empty header name")
	}
	if n[0] == ':' {
		if response {
			return headerRef{}, fmt.Errorf("RESP reads response headers; %q is not one", s)
		}
		switch n {
		case ":method":
			return headerRef{src: srcMethod, name: n}, nil
		case ":path":
			return headerRef{src: srcPath, name: n}, nil
		case ":authority":
			return headerRef{src: srcAuthority, name: n}, nil
		case ":scheme":
			return headerRef{src: srcScheme, name: n}, nil
		}
		return headerRef{}, fmt.Errorf("unknown pseudo-header %q: use :METHOD, :PATH, :AUTHORITY or :SCHEME", s)
	}
	for i := 0; i < len(n); i++ {
		if !isTokenChar(n[i]) {
			return headerRef{}, fmt.Errorf("invalid header name %q", s)
		}
	}
	if !response {
		switch n {
		case "host":
			return headerRef{src: srcAuthority, name: n}, nil
		case "x-edge-original-path":
			return headerRef{src: srcOriginalPath, name: n}, nil
		case "x-request-id":
			return headerRef{src: srcRequestID, name: n}, nil
		}
	}
	return headerRef{src: srcHeader, name: n}, nil
}

// isTokenChar reports whether c may appear in a header name (RFC 9110
// token).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', '0' <= c && c <= '9', 'A' <= c && c <= 'Z':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
