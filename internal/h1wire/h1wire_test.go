package h1wire

import (
	"strings"
	"testing"
)

func TestTokenChars(t *testing.T) {
	const tokens = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for c := range 256 {
		b := byte(c)
		want := strings.IndexByte(tokens, b) >= 0
		if got := IsTchar(b); got != want {
			t.Errorf("IsTchar(%q): got %v, want %v", b, got, want)
		}
		var wantLower byte
		if want {
			wantLower = b
			if 'A' <= b && b <= 'Z' {
				wantLower = b + 'a' - 'A'
			}
		}
		if got := LowerTchar(b); got != wantLower {
			t.Errorf("LowerTchar(%q): got %q, want %q", b, got, wantLower)
		}
	}
}

func TestIsToken(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", true},
		{"GET", true},
		{"x-custom_Name.1~", true},
		{"a b", false},
		{"a:b", false},
		{"a\x00", false},
		{"caf\xc3\xa9", false},
		{"(x)", false},
		{"a\"b", false},
	}
	for _, tt := range tests {
		if got := IsToken(tt.in); got != tt.want {
			t.Errorf("IsToken(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidFieldValue(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", true},
		{"text/html; charset=utf-8", true},
		{"a\tb", true},
		{"obs-text \x80\xff", true},
		{"0123456789abcdef~ visible only", true},
		{"a\rb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
		{"a\x1fb", false},
		{"01234567\r", false},        // control in the tail after a full word
		{"0123456\n89abcdef", false}, // control inside a full word
		{"0123456789abcde\x7f", false},
		{"\t\t\t\t\t\t\t\t\t", true}, // HTAB words look suspicious but are valid
	}
	for _, tt := range tests {
		if got := ValidFieldValue([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidFieldValue(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
	// Every single byte in every position of a two-word value.
	for c := range 256 {
		want := !((c < ' ' && c != '\t') || c == 0x7f)
		for pos := range 16 {
			v := []byte("abcdefghijklmnop")
			v[pos] = byte(c)
			if got := ValidFieldValue(v); got != want {
				t.Fatalf("ValidFieldValue with %#x at %d: got %v, want %v", c, pos, got, want)
			}
		}
	}
}

// TestValidFieldValuePairs checks the word-at-a-time test against the
// byte loop where borrows and carries between neighbouring bytes matter.
func TestValidFieldValuePairs(t *testing.T) {
	edge := []byte{0x00, '\t', 0x1f, 0x20, 0x21, 'a', 0x7e, 0x7f, 0x80, 0x9f, 0xfe, 0xff}
	v := make([]byte, 16)
	for _, x := range edge {
		for _, y := range edge {
			for i := range v {
				for j := range v {
					for k := range v {
						v[k] = 'a'
					}
					v[i], v[j] = x, y
					if got, want := ValidFieldValue(v), validValueBytes(v); got != want {
						t.Fatalf("ValidFieldValue(%q): got %v, want %v", v, got, want)
					}
				}
			}
		}
	}
}

func TestSplitField(t *testing.T) {
	tests := []struct {
		in          string
		fault       Fault
		name, value string // after lower-casing, when fault is FieldOK
	}{
		{"Host: example.com", FieldOK, "host", "example.com"},
		{"X-Empty:", FieldOK, "x-empty", ""},
		{"X-Spaces: \t a b \t ", FieldOK, "x-spaces", "a b"},
		{"Content-Type:text/plain", FieldOK, "content-type", "text/plain"},
		{"a:b:c", FieldOK, "a", "b:c"},
		{"X: obs\x80text", FieldOK, "x", "obs\x80text"},
		{" folded: x", FieldObsFold, "", ""},
		{"\tfolded", FieldObsFold, "", ""},
		{"Host : x", FieldBadName, "", ""},
		{"no colon", FieldBadName, "", ""},
		{"nocolon", FieldBadName, "", ""},
		{": empty name", FieldBadName, "", ""},
		{"b@d: x", FieldBadName, "", ""},
		{"X: a\rb", FieldBadValue, "", ""},
		{"X: a\x00", FieldBadValue, "", ""},
		{"X: \x7f", FieldBadValue, "", ""},
	}
	for _, tt := range tests {
		line := []byte(tt.in)
		ne, vs, ve, fault := SplitField(line)
		if fault != tt.fault {
			t.Errorf("SplitField(%q): got fault %d, want %d", tt.in, fault, tt.fault)
			continue
		}
		if fault != FieldOK {
			continue
		}
		if name, value := string(line[:ne]), string(line[vs:ve]); name != tt.name || value != tt.value {
			t.Errorf("SplitField(%q): got %q: %q, want %q: %q", tt.in, name, value, tt.name, tt.value)
		}
	}
}

func TestParseContentLength(t *testing.T) {
	tests := []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"000123", 123, true},
		{"999999999999999999", 999999999999999999, true},
		{"1000000000000000000", 0, false}, // 19 digits
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1,1", 0, false},
		{"0x10", 0, false},
	}
	for _, tt := range tests {
		n, ok := ParseContentLength([]byte(tt.in))
		if n != tt.n || ok != tt.ok {
			t.Errorf("ParseContentLength(%q): got %d, %v, want %d, %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
}

func TestNextElement(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"close", []string{"close"}},
		{" a , b\t,c ", []string{"a", "b", "c"}},
		{"a,,b", []string{"a", "", "b"}},
		{"a,", []string{"a"}},
		{",a", []string{"", "a"}},
		{" \t ", []string{""}},
	}
	for _, tt := range tests {
		var got []string
		for v := []byte(tt.in); len(v) > 0; {
			var e []byte
			e, v = NextElement(v)
			got = append(got, string(e))
		}
		if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
			t.Errorf("NextElement over %q: got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "a"},
		{" \ta b\t ", "a b"},
		{"\r a \n", "\r a \n"}, // only SP and HTAB are OWS
		{" \t", ""},
	}
	for _, tt := range tests {
		if got := string(TrimOWS([]byte(tt.in))); got != tt.want {
			t.Errorf("TrimOWS(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEqualAndHasPrefixLower(t *testing.T) {
	tests := []struct {
		b, s          string
		equal, prefix bool
	}{
		{"chunked", "chunked", true, true},
		{"CHUNKED", "chunked", true, true},
		{"ChUnKeD", "chunked", true, true},
		{"chunked ", "chunked", false, true},
		{"chunke", "chunked", false, false},
		{"chunkes", "chunked", false, false},
		{"HTTP://x", "http://", false, true},
		{"", "", true, true},
		{"\xc3", "c", false, false},
		{"K", "\u212a", false, false}, // ASCII folding only
	}
	for _, tt := range tests {
		if got := EqualLower([]byte(tt.b), tt.s); got != tt.equal {
			t.Errorf("EqualLower(%q, %q): got %v, want %v", tt.b, tt.s, got, tt.equal)
		}
		if got := HasPrefixLower([]byte(tt.b), tt.s); got != tt.prefix {
			t.Errorf("HasPrefixLower(%q, %q): got %v, want %v", tt.b, tt.s, got, tt.prefix)
		}
	}
}

func TestConnectionOptions(t *testing.T) {
	tests := []struct {
		in               string
		close, keepAlive bool
	}{
		{"", false, false},
		{"close", true, false},
		{"Keep-Alive", false, true},
		{"upgrade, CLOSE", true, false},
		{" keep-alive ,\tclose", true, true},
		{"closed, keep-alive2", false, false},
		{"close-ish", false, false},
	}
	for _, tt := range tests {
		c, k := ConnectionOptions([]byte(tt.in))
		if c != tt.close || k != tt.keepAlive {
			t.Errorf("ConnectionOptions(%q): got %v, %v, want %v, %v", tt.in, c, k, tt.close, tt.keepAlive)
		}
	}
}

func TestParseChunkSize(t *testing.T) {
	tests := []struct {
		in   string
		size int64
		ext  string
		ok   bool
	}{
		{"0", 0, "", true},
		{"a", 10, "", true},
		{"1F", 31, "", true},
		{"fFfF", 0xffff, "", true},
		{"00000000000001", 1, "", true},
		{"fffffffffffffff", 0xfffffffffffffff, "", true}, // 15 digits
		{"1000000000000000", 0, "", false},               // 16 digits
		{"5;name=value", 5, ";name=value", true},
		{"5 \t;ext", 5, ";ext", true},
		{"5 ", 5, "", true},
		{"5;ext\x01", 5, ";ext\x01", true}, // extension checks are the caller's
		{"", 0, "", false},
		{";ext", 0, "", false},
		{"-5", 0, "", false},
		{"0x5", 0, "", false},
		{"5 5", 0, "", false},
		{"5\r", 0, "", false},
		{"g", 0, "", false},
	}
	for _, tt := range tests {
		size, ext, ok := ParseChunkSize([]byte(tt.in))
		if size != tt.size || string(ext) != tt.ext || ok != tt.ok {
			t.Errorf("ParseChunkSize(%q): got %d, %q, %v, want %d, %q, %v", tt.in, size, ext, ok, tt.size, tt.ext, tt.ok)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	line := []byte("Content-Type: text/html; charset=utf-8")
	value := []byte("keep-alive, Upgrade, close")
	n := testing.AllocsPerRun(100, func() {
		SplitField(line)
		ConnectionOptions(value)
		ParseContentLength([]byte("12345"))
		ParseChunkSize([]byte("1f4;x=y"))
		ValidFieldValue(value)
	})
	if n != 0 {
		t.Errorf("allocations per run: got %v, want 0", n)
	}
}

var sink int

func BenchmarkSplitField(b *testing.B) {
	line := []byte("User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		_, vs, ve, _ := SplitField(line)
		sink += ve - vs
	}
}

func BenchmarkValidFieldValue(b *testing.B) {
	v := []byte("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0")
	b.ReportAllocs()
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if ValidFieldValue(v) {
			sink++
		}
	}
}

func BenchmarkParseContentLength(b *testing.B) {
	v := []byte("1048576")
	b.ReportAllocs()
	for b.Loop() {
		n, _ := ParseContentLength(v)
		sink += int(n)
	}
}

func BenchmarkConnectionOptions(b *testing.B) {
	v := []byte("Upgrade, Keep-Alive, close")
	b.ReportAllocs()
	for b.Loop() {
		if c, _ := ConnectionOptions(v); c {
			sink++
		}
	}
}

func BenchmarkParseChunkSize(b *testing.B) {
	line := []byte("7fff;name=value")
	b.ReportAllocs()
	for b.Loop() {
		n, _, _ := ParseChunkSize(line)
		sink += int(n)
	}
}
