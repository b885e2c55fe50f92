// Package h1wire is HTTP/1.1 message syntax (RFC 9110, RFC 9112) shared by
// edge's server codec (package edge, h1parse.go and h1body.go) and its
// client codec (package upstream/http1): the token table, field-line
// splitting and field-value checks, Content-Length digits, comma-separated
// list elements and chunk-size lines.
//
// Model: every function works on a byte slice the caller owns, in place,
// allocates nothing and keeps no state; the tables are unexported and
// read-only after package initialisation.
//
// Invariants: a primitive here has exactly one meaning for both codecs.
// Where the server and the client apply different rules on purpose (a
// chunk-size line's bare LF, chunk extensions' control bytes, the values a
// client may write, Content-Length lists), the caller applies its own rule
// on top of the shared primitive.
//
// Non-goals: reading from connections, error values with statuses, framing
// decisions (those stay in each codec).
package h1wire

import (
	"bytes"
	"encoding/binary"
)

// tchar marks the bytes of an RFC 9110 token (§5.6.2): methods and field
// names.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// lowerTchar maps a token byte to its lower case, and any other byte to 0.
var lowerTchar = func() (t [256]byte) {
	for c := range 256 {
		if tchar[c] {
			t[c] = byte(c)
			if 'A' <= c && c <= 'Z' {
				t[c] = byte(c) + ('a' - 'A')
			}
		}
	}
	return t
}()

// IsTchar reports whether b may appear in an RFC 9110 token (§5.6.2).
func IsTchar(b byte) bool { return tchar[b] }

// LowerTchar returns the token byte b in lower case, or 0 if b is not a
// token byte.
func LowerTchar(b byte) byte { return lowerTchar[b] }

// IsToken reports whether every byte of s is a token byte. The empty
// string is reported true; callers that need a non-empty token check the
// length themselves.
func IsToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !tchar[s[i]] {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether v holds no control byte but HTAB: no
// NUL, CR, LF or DEL (RFC 9110 §5.5). It tests eight bytes at a time and
// looks closer only at words that may hold one.
func ValidFieldValue(v []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(v) >= 8 {
		w := binary.LittleEndian.Uint64(v)
		// A byte below 0x20 (w-0x20 sets its high bit) or equal to 0x7f
		// (w+1 does), among the bytes without the high bit. Borrows and
		// carries make false positives only, which the byte loop clears.
		if ((w-ones*0x20)|(w+ones))&^w&highs != 0 {
			if !validValueBytes(v[:8]) {
				return false
			}
		}
		v = v[8:]
	}
	return validValueBytes(v)
}

func validValueBytes(v []byte) bool {
	for _, b := range v {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// Fault is why SplitField refused a field line.
type Fault uint8

// The faults SplitField reports, in the order it checks for them.
const (
	// FieldOK is a well-formed field line.
	FieldOK Fault = iota
	// FieldObsFold is a line starting with SP or HTAB: obs-fold (RFC 9112
	// §5.2), which a proxy must not forward.
	FieldObsFold
	// FieldBadName is a missing colon, an empty name, or a non-token byte
	// (whitespace before the colon included, RFC 9112 §5.1) in the name.
	FieldBadName
	// FieldBadValue is a value holding a control byte (see ValidFieldValue).
	FieldBadValue
)

// SplitField checks the field line line (without its line ending, not
// empty), lower-cases its name in place, and returns the name's end (the
// colon) and the span of the value with optional whitespace trimmed. On a
// fault line may have been partly lower-cased and the offsets are 0.
func SplitField(line []byte) (nameEnd, valueStart, valueEnd int, fault Fault) {
	if line[0] == ' ' || line[0] == '\t' {
		return 0, 0, 0, FieldObsFold
	}
	// One table load per name byte: ':' is not a token byte, so it is
	// looked for only where the table says the name ends.
	colon := 0
	for ; colon < len(line); colon++ {
		l := lowerTchar[line[colon]]
		if l == 0 {
			break
		}
		line[colon] = l
	}
	if colon == 0 || colon == len(line) || line[colon] != ':' {
		return 0, 0, 0, FieldBadName
	}
	vs, ve := colon+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	if !ValidFieldValue(line[vs:ve]) {
		return 0, 0, 0, FieldBadValue
	}
	return colon, vs, ve, FieldOK
}

// ParseContentLength parses one Content-Length value: 1 to 18 decimal
// digits and nothing else (no sign, no whitespace, no list).
func ParseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, b := range v {
		if b < '0' || b > '9' {
			return 0, false
		}
		n = n*10 + int64(b-'0')
	}
	return n, true
}

// NextElement splits the first element off the comma-separated list v
// (RFC 9110 §5.6.1), with optional whitespace trimmed; the element may be
// empty. rest is empty once v is used up.
func NextElement(v []byte) (elem, rest []byte) {
	if i := bytes.IndexByte(v, ','); i >= 0 {
		return TrimOWS(v[:i]), v[i+1:]
	}
	return TrimOWS(v), nil
}

// TrimOWS trims optional whitespace (SP and HTAB) from both ends of b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// EqualLower reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case in b.
func EqualLower(b []byte, s string) bool {
	return len(b) == len(s) && HasPrefixLower(b, s)
}

// HasPrefixLower reports whether b starts with the lower-case ASCII string
// prefix, ignoring ASCII case in b.
func HasPrefixLower(b []byte, prefix string) bool {
	if len(b) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// ConnectionOptions reports whether the Connection field value v lists the
// close and the keep-alive options, ignoring case.
func ConnectionOptions(v []byte) (close, keepAlive bool) {
	for len(v) > 0 {
		var tok []byte
		tok, v = NextElement(v)
		switch {
		case EqualLower(tok, "close"):
			close = true
		case EqualLower(tok, "keep-alive"):
			keepAlive = true
		}
	}
	return close, keepAlive
}

// ParseChunkSize parses the chunk-size at the start of a chunk-size line
// (RFC 9112 §7.1) given without its line ending: 1 to 15 hex digits, then
// optional whitespace and, if anything follows, a ";" that starts the
// chunk extensions. ext is that rest, from the ";" (empty if none); the
// caller decides how strictly to check it. ok is false for no digits, 16
// or more digits (2^60 bytes or more), or anything but ";" after them.
func ParseChunkSize(line []byte) (size int64, ext []byte, ok bool) {
	i := 0
	for ; i < len(line); i++ {
		b := line[i]
		var v byte
		switch {
		case '0' <= b && b <= '9':
			v = b - '0'
		case 'a' <= b && b <= 'f':
			v = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			v = b - 'A' + 10
		default:
			goto rest
		}
		if i == 15 {
			return 0, nil, false
		}
		size = size<<4 | int64(v)
	}
rest:
	if i == 0 {
		return 0, nil, false
	}
	ext = line[i:]
	for len(ext) > 0 && (ext[0] == ' ' || ext[0] == '\t') {
		ext = ext[1:]
	}
	if len(ext) > 0 && ext[0] != ';' {
		return 0, nil, false
	}
	return size, ext, true
}
