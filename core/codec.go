package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// SchemaVersion is the major schema version of every message this build
// writes and the only one it reads. Additive changes (new optional fields)
// keep the major version; decoders ignore fields they do not know, so an
// older agent keeps working against a newer operator. Anything else bumps it.
const SchemaVersion = 1

// MaxMessageBytes bounds every message a decoder accepts.
const MaxMessageBytes = 1 << 20

// DecodeError is returned by every Decode* function. It names the message
// kind and, where known, the offending field.
type DecodeError struct {
	Kind  string // "heartbeat", "workload spec", ...
	Field string // JSON field path, empty when the whole document is bad
	Err   error
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("decode %s: %v", e.Kind, e.Err)
	}
	return fmt.Sprintf("decode %s: field %q: %v", e.Kind, e.Field, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ErrUnsupportedSchema is wrapped by a DecodeError for an unknown major
// schema version.
var ErrUnsupportedSchema = errors.New("unsupported schema version")

// FieldError names one invalid field of a message that decoded as JSON.
type FieldError struct {
	Field string
	Why   string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Why) }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Why: fmt.Sprintf(format, args...)}
}

// validator is implemented by every message type.
type validator interface{ Validate() error }

// schemaHolder exposes a message's schema-version field to the decoder.
type schemaHolder interface{ schemaPtr() *int }

func (m *WorkloadSpec) schemaPtr() *int   { return &m.Schema }
func (m *DeviceState) schemaPtr() *int    { return &m.Schema }
func (m *DeviceInfo) schemaPtr() *int     { return &m.Schema }
func (m *Heartbeat) schemaPtr() *int      { return &m.Schema }
func (m *UpgradeMarker) schemaPtr() *int  { return &m.Schema }
func (m *UpgradeStatus) schemaPtr() *int  { return &m.Schema }
func (m *CommandRequest) schemaPtr() *int { return &m.Schema }
func (m *CommandReply) schemaPtr() *int   { return &m.Schema }

// decodeFast is the single-pass path for well-formed messages: plain ASCII
// without escapes, the schema key present exactly once in any letter case,
// a supported version and a valid value. Anything else returns false and
// takes the general path, which parses twice to name the offending field.
// Both paths accept exactly the same inputs.
func decodeFast(schemaField string, data []byte, v validator) bool {
	sh, ok := v.(schemaHolder)
	if !ok {
		return false
	}
	for _, c := range data {
		if c >= 0x80 || c == '\\' {
			return false
		}
	}
	if countKeyFold(data, schemaField) != 1 || !bytes.Contains(data, []byte(`"`+schemaField+`"`)) {
		return false
	}
	const unset = -1 << 31
	*sh.schemaPtr() = unset
	if err := json.Unmarshal(data, v); err != nil || *sh.schemaPtr() != SchemaVersion {
		return false
	}
	return v.Validate() == nil
}

// countKeyFold counts the places where "key" (quotes included) occurs in
// ASCII data, ignoring letter case.
func countKeyFold(data []byte, key string) int {
	n := 0
	for i := 0; i+len(key)+1 < len(data); i++ {
		if data[i] == '"' && data[i+len(key)+1] == '"' && bytes.EqualFold(data[i+1:i+1+len(key)], []byte(key)) {
			n++
		}
	}
	return n
}

// decode unmarshals data into v after checking the major schema version
// stored under schemaField, then validates v.
func decode(kind, schemaField string, data []byte, v validator) error {
	if len(data) == 0 {
		return &DecodeError{Kind: kind, Err: errors.New("empty message")}
	}
	if len(data) > MaxMessageBytes {
		return &DecodeError{Kind: kind, Err: fmt.Errorf("message is %d bytes; the limit is %d", len(data), MaxMessageBytes)}
	}
	if decodeFast(schemaField, data, v) {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero()
	return decodeSlow(kind, schemaField, data, v)
}

// decodeSlow parses data twice: first as a generic object, to check the
// schema version before anything else, then into v, and names the field of
// any error.
func decodeSlow(kind, schemaField string, data []byte, v validator) error {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return &DecodeError{Kind: kind, Err: fmt.Errorf("not a JSON object: %w", err)}
	}
	if _, ok := probe[schemaField]; !ok {
		return &DecodeError{Kind: kind, Field: schemaField, Err: errors.New("missing schema version")}
	}
	// encoding/json matches object keys to struct fields case-insensitively,
	// so "Schema" or "SCHEMA" would also land in the schema field: every key
	// that folds to the schema field must carry the supported version.
	for _, k := range sortedKeys(probe) {
		if jsonFold(k) != jsonFold(schemaField) {
			continue
		}
		var major int
		if err := json.Unmarshal(probe[k], &major); err != nil {
			return &DecodeError{Kind: kind, Field: k, Err: errors.New("schema version must be an integer")}
		}
		if major != SchemaVersion {
			return &DecodeError{Kind: kind, Field: k, Err: fmt.Errorf("%w %d (this build understands %d)", ErrUnsupportedSchema, major, SchemaVersion)}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &DecodeError{Kind: kind, Field: te.Field, Err: fmt.Errorf("want %s, got JSON %s", te.Type, te.Value)}
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			return &DecodeError{Kind: kind, Field: fe.Field, Err: errors.New(fe.Why)}
		}
		// Errors from a field's own UnmarshalJSON (a malformed version,
		// say) carry no field name: find the field that fails on its own.
		return &DecodeError{Kind: kind, Field: locateField(reflect.TypeOf(v), probe), Err: err}
	}
	if dec.More() {
		return &DecodeError{Kind: kind, Err: errors.New("trailing data after the JSON object")}
	}
	if err := v.Validate(); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return &DecodeError{Kind: kind, Field: fe.Field, Err: errors.New(fe.Why)}
		}
		return &DecodeError{Kind: kind, Err: err}
	}
	return nil
}

// encode validates v and marshals it. Encoding is byte-deterministic:
// struct fields in declaration order, map keys sorted by encoding/json.
func encode(kind string, v validator) ([]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	return marshal(kind, v)
}

// marshal is encode without the validation, for the hand-built encoders
// (fastcodec.go) to fall back on after validating themselves.
func marshal(kind string, v validator) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	return b, nil
}

// jsonFold folds a JSON object key the way encoding/json does when it
// matches keys to struct fields (ASCII and Unicode simple case folding).
func jsonFold(s string) string {
	return strings.Map(func(r rune) rune { return unicode.ToUpper(unicode.ToLower(r)) }, s)
}

// locateField returns the JSON path of the first field of obj (sorted by
// key) whose value does not unmarshal into the matching field of struct type
// t, descending into nested objects; "" when none fails on its own.
func locateField(t reflect.Type, obj map[string]json.RawMessage) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return ""
	}
	for _, k := range sortedKeys(obj) {
		f, ok := jsonField(t, k)
		if !ok {
			continue
		}
		if err := json.Unmarshal(obj[k], reflect.New(f.Type).Interface()); err == nil {
			continue
		}
		var sub map[string]json.RawMessage
		if json.Unmarshal(obj[k], &sub) == nil && sub != nil {
			if p := locateField(f.Type, sub); p != "" {
				return k + "." + p
			}
		}
		return k
	}
	return ""
}

// jsonField finds the exported field of struct type t that encoding/json
// would fill from key: an exact tag match first, then a case-folded one.
func jsonField(t reflect.Type, key string) (reflect.StructField, bool) {
	var folded []reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f, true
		}
		if jsonFold(name) == jsonFold(key) {
			folded = append(folded, f)
		}
	}
	if len(folded) > 0 {
		return folded[0], true
	}
	return reflect.StructField{}, false
}
