package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is a 1-based line and column in the config file.
type Pos struct{ Line, Column int }

// Meta records where a mapping appeared in the file and which keys it set.
// Every config struct embeds it, so errors found after decoding can still
// point at the exact line and column, and defaults can tell "absent" from
// "set to zero".
type Meta struct {
	pos  Pos
	keys map[string]Pos
}

// Pos returns the position of the mapping itself.
func (m *Meta) Pos() Pos { return m.pos }

// Has reports whether the key was written in the file.
func (m *Meta) Has(key string) bool {
	_, ok := m.keys[key]
	return ok
}

// KeyPos returns the position of key's value, or of the mapping if the key
// was not written.
func (m *Meta) KeyPos(key string) Pos {
	if p, ok := m.keys[key]; ok {
		return p
	}
	return m.pos
}

var metaType = reflect.TypeFor[Meta]()

// decoder turns a yaml.Node tree into config structs, strictly: unknown or
// repeated keys, wrong types and out-of-range numbers are errors that name
// the line, column and field path.
type decoder struct {
	errs *Errors
	file string
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.errs.add(d.file, Pos{n.Line, n.Column}, path, fmt.Sprintf(format, args...))
}

// nodeDecoder is implemented by types with their own YAML syntax.
type nodeDecoder interface {
	decodeYAML(d *decoder, n *yaml.Node, path string)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported YAML node"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() {
		if u, ok := v.Addr().Interface().(nodeDecoder); ok {
			u.decodeYAML(d, n, path)
			return
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.fail(n, path, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.fail(n, path, "want true or false, got %s", kindName(n))
			return
		}
		b, _ := strconv.ParseBool(strings.ToLower(n.Value))
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "want an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "want a non-negative integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want a non-negative integer below %d, got %s", uint64(math.MaxUint32), n.Value)
			return
		}
		v.SetUint(i)
	default:
		d.fail(n, path, "internal error: cannot decode into %s", v.Type())
	}
}

// structField is one YAML key of a struct, possibly inside an inlined struct.
type structField struct {
	name  string
	index []int
}

func yamlFields(t reflect.Type) []structField {
	var out []structField
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type == metaType {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for _, sf := range yamlFields(f.Type) {
				out = append(out, structField{sf.name, append([]int{i}, sf.index...)})
			}
			continue
		}
		out = append(out, structField{name, []int{i}})
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", kindName(n))
		return
	}
	fields := yamlFields(v.Type())
	meta := Meta{pos: Pos{n.Line, n.Column}, keys: make(map[string]Pos, len(n.Content)/2)}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		fpath := k.Value
		if path != "" {
			fpath = path + "." + k.Value
		}
		if _, dup := meta.keys[k.Value]; dup {
			d.fail(k, fpath, "key written twice; keep one")
			continue
		}
		j := slices.IndexFunc(fields, func(f structField) bool { return f.name == k.Value })
		if j < 0 {
			d.fail(k, fpath, "unknown field %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		meta.keys[k.Value] = Pos{val.Line, val.Column}
		d.decode(val, v.FieldByIndex(fields[j].index), fpath)
	}
	for i := range v.NumField() {
		if v.Type().Field(i).Type == metaType {
			v.Field(i).Set(reflect.ValueOf(meta))
		}
	}
}

// suggest names the closest valid field, or lists them all.
func suggest(got string, fields []structField) string {
	best, bestD := "", 3
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
		if dd := editDistance(got, f.name); dd < bestD {
			best, bestD = f.name, dd
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; valid fields: " + strings.Join(names, ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeYAML lets an endpoint be written as a plain "host:port" string.
func (e *Endpoint) decodeYAML(d *decoder, n *yaml.Node, path string) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		e.Address = n.Value
		e.pos = Pos{n.Line, n.Column}
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want \"host:port\" or {address: host:port, weight: N}, got %s", kindName(n))
		return
	}
	// A defined type without the method, so decoding does not recurse here.
	type plain Endpoint
	d.decodeStruct(n, reflect.ValueOf((*plain)(e)).Elem(), path)
}
