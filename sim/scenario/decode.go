package scenario

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Error is a scenario problem at a place in a file: "file:line: field: msg".
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// Pos records where a YAML mapping was; the decoder fills every field of
// this type.
type Pos struct {
	Line  int
	Path  string
	Lines map[string]int // line of each field's key
}

// LineOf is the line of field (or of the mapping when the field is absent).
func (p Pos) LineOf(field string) int {
	if l, ok := p.Lines[field]; ok {
		return l
	}
	return p.Line
}

// scalar is implemented by the scenario's value types (durations, amounts).
type scalar interface {
	parseScalar(s string) error
}

type decoder struct {
	file string
	errs []error
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Field: path, Msg: fmt.Sprintf(format, args...)})
}

var posType = reflect.TypeOf(Pos{})

// decode fills v from n strictly: unknown fields, wrong kinds and bad
// scalars are errors naming the line and the field path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Pointer {
		if n.Tag == "!!null" {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	}
	if v.CanAddr() {
		if s, ok := v.Addr().Interface().(scalar); ok {
			if n.Kind != yaml.ScalarNode {
				d.fail(n, path, "want a single value, got a %s", kindName(n))
				return
			}
			if err := s.parseScalar(n.Value); err != nil {
				d.fail(n, path, "%v", err)
			}
			return
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got a %s", kindName(n))
			return
		}
		fields := map[string]int{}
		var names []string
		t := v.Type()
		posIdx := -1
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Type == posType {
				posIdx = i
				continue
			}
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = i
			names = append(names, tag)
		}
		seen := map[string]bool{}
		if posIdx >= 0 {
			lines := make(map[string]int, len(n.Content)/2)
			for i := 0; i+1 < len(n.Content); i += 2 {
				lines[n.Content[i].Value] = n.Content[i].Line
			}
			v.Field(posIdx).Set(reflect.ValueOf(Pos{Line: n.Line, Path: path, Lines: lines}))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			idx, ok := fields[k.Value]
			if !ok {
				sort.Strings(names)
				d.fail(k, fp, "unknown field (known fields: %s)", strings.Join(names, ", "))
				continue
			}
			if seen[k.Value] {
				d.fail(k, fp, "set twice")
				continue
			}
			seen[k.Value] = true
			d.decode(val, v.Field(idx), fp)
		}
	case reflect.Slice:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got a %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got a %s", kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			fp := join(path, k.Value)
			if k.Kind != yaml.ScalarNode {
				d.fail(k, fp, "map keys must be plain values")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, fp)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a string, got a %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "want true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "want an integer, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint64, reflect.Uint32, reflect.Uint:
		i, err := strconv.ParseUint(strings.ReplaceAll(n.Value, "_", ""), 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "want a non-negative integer, got %q", n.Value)
			return
		}
		v.SetUint(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "want a number, got %q", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "unsupported field type %s", v.Type())
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	if k == "" {
		return path
	}
	return path + "." + k
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return fmt.Sprintf("value %q", n.Value)
	}
	return "node"
}
