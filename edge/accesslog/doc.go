// Package accesslog writes one line per request, in JSON or in an
// Envoy-style format string, to stdout, stderr or a file.
//
// # Model
//
// New compiles the format once into a list of operations; Log walks it,
// appending into a pooled buffer, and hands the finished line to the output
// in a single write(2). The values come from an Entry the forwarding
// handler fills in as it goes; nothing is looked up or computed at log time
// beyond header lookups in the request and response headers.
//
// Format strings use Envoy's operator names: %START_TIME%, %DURATION%,
// %RESPONSE_CODE%, %RESPONSE_FLAGS%, %BYTES_RECEIVED%, %BYTES_SENT%,
// %PROTOCOL%, %REQ(X?Y):N%, %REQ_WITHOUT_QUERY(X?Y):N%, %RESP(X?Y):N%,
// %UPSTREAM_HOST%, %UPSTREAM_CLUSTER%, %ROUTE_NAME%,
// %DOWNSTREAM_REMOTE_ADDRESS%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%,
// %UPSTREAM_REQUEST_ATTEMPT_COUNT%, %UPSTREAM_SERVICE_TIME%, and %% for a
// literal %. %LISTENER_NAME% is edge's own addition. In REQ, the names
// :METHOD, :PATH, :AUTHORITY (or HOST) and :SCHEME read the request line;
// X-EDGE-ORIGINAL-PATH and X-REQUEST-ID read Entry.OriginalPath and
// Entry.RequestID first, then the header; any other name is a header,
// matched case-insensitively. "X?Y" falls back to Y when X is empty, and
// ":N" cuts the value to N bytes. START_TIME is RFC 3339 in UTC with
// milliseconds; durations are whole milliseconds. A missing value prints
// "-". The format "json" writes one object per line with fixed keys (see
// appendJSON) and null for missing strings.
//
// # Invariants
//
//   - One request, one line, one write: a value can never add a line break
//     (control characters are written as \xHH in text formats and escaped
//     in JSON), lines from concurrent Log calls never interleave, and the
//     JSON is always valid, whatever bytes a client put in its headers
//     (invalid UTF-8 becomes U+FFFD).
//   - Log does not allocate in the steady state, takes no lock of its own,
//     and never fails the request: a write error drops the line and is
//     counted (WriteErrors).
//   - Reopen (edge calls it on SIGUSR1, after logrotate renamed the file)
//     swaps the file atomically; a line is written whole to the old file or
//     the new one, never lost to the swap.
//
// # Non-goals
//
//   - No buffering across lines: each line is one write(2), which is what
//     makes rotation and a hot restart's two writers safe. At very high
//     request rates, log to a file on a local disk rather than a slow pipe.
//   - No filters (status or duration thresholds), no sampling, no gRPC or
//     syslog sinks, no custom START_TIME formats, no other Envoy operators
//     yet; an unknown operator is a config error listing the valid ones.
package accesslog
