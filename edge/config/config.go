// Package config reads edge's YAML configuration strictly, applies defaults
// in one place and validates it, collecting every problem with the line,
// column and field path where it was found and what to do about it.
//
// The flow is Parse (decode: unknown or repeated keys and wrong types are
// errors) -> defaults -> Validate (ranges, enumerations, exclusive fields,
// cross-references such as a route naming a cluster that does not exist).
// Compiling the result into runtime state is the job of the packages that
// run it (router, upstream, tls, edge); their errors use this package's
// Error type so they point at the same places.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a config file.
type Error struct {
	File string
	Pos  Pos
	Path string // field path such as listeners[0].address
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Pos.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Pos.Line, e.Pos.Column)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config, in file order of discovery.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func (es *Errors) add(file string, pos Pos, path, msg string) {
	*es = append(*es, &Error{File: file, Pos: pos, Path: path, Msg: msg})
}

// Err returns es as an error, or nil if it is empty.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Load reads, decodes, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(data, path, filepath.Dir(abs))
}

// Parse decodes, defaults and validates a config. name is used in error
// messages; dir is where relative file paths resolve.
func Parse(data []byte, name, dir string) (*Config, error) {
	cfg := &Config{File: name, Dir: dir}
	var errs Errors
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		msg := err.Error()
		if errors.Is(err, io.EOF) {
			msg = "the file is empty; write at least listeners, route_configs and clusters"
		}
		pos := yamlErrPos(msg)
		msg = strings.TrimPrefix(msg, "yaml: ")
		if pos.Line > 0 {
			msg = strings.TrimPrefix(msg, fmt.Sprintf("line %d: ", pos.Line))
		}
		errs.add(name, pos, "", msg)
		return nil, errs
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		errs.add(name, Pos{extra.Line, extra.Column}, "", "a second YAML document; a config file holds one")
	}
	d := &decoder{errs: &errs, file: name}
	d.decode(&doc, reflect.ValueOf(cfg).Elem(), "")
	if len(errs) > 0 {
		return nil, errs
	}
	cfg.setDefaults()
	cfg.validate(&errs)
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *Error) int {
			return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
		})
		return nil, errs
	}
	return cfg, nil
}

// yamlErrPos pulls "line N" out of a YAML syntax error message.
func yamlErrPos(msg string) Pos {
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if j < 0 {
			j = len(rest)
		}
		if n, err := strconv.Atoi(rest[:j]); err == nil {
			return Pos{Line: n, Column: 1}
		}
	}
	return Pos{}
}

// Resolve makes a relative path from the config file absolute.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// Errorf builds an Error at pos for code that compiles a config.
func (c *Config) Errorf(pos Pos, path, format string, args ...any) *Error {
	return &Error{File: c.File, Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Duration is a Go duration written as "250ms", "15s" or "5m".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d as a Go duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d back in the form it is read.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func (d *Duration) decodeYAML(dec *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		dec.fail(n, path, "want a duration such as 250ms, 15s or 5m, got %s", kindName(n))
		return
	}
	if n.Value == "0" {
		*d = 0
		return
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		dec.fail(n, path, "invalid duration %q: write a number with a unit, such as 250ms, 15s or 5m", n.Value)
		return
	}
	if v < 0 {
		dec.fail(n, path, "negative duration %q: durations must be 0 or more", n.Value)
		return
	}
	*d = Duration(v)
}

// Size is a byte count written as a plain number or with a unit: 512,
// 60KiB, 1MiB, 2GiB (also KB, MB, GB as powers of 1000).
type Size int64

// MarshalYAML writes s as a byte count.
func (s Size) MarshalYAML() (any, error) { return int64(s), nil }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1},
}

func (s *Size) decodeYAML(dec *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		dec.fail(n, path, "want a size such as 4096, 60KiB or 1MiB, got %s", kindName(n))
		return
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		dec.fail(n, path, "%v", err)
		return
	}
	*s = Size(v)
}

// ParseSize parses a size as Size's documentation describes.
func ParseSize(text string) (int64, error) {
	t := strings.TrimSpace(text)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: write a byte count such as 4096, 60KiB or 1MiB", text)
	}
	return v * mult, nil
}
