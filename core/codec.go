package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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

// decode unmarshals data into v after checking the major schema version
// stored under schemaField, then validates v.
func decode(kind, schemaField string, data []byte, v validator) error {
	if len(data) == 0 {
		return &DecodeError{Kind: kind, Err: errors.New("empty message")}
	}
	if len(data) > MaxMessageBytes {
		return &DecodeError{Kind: kind, Err: fmt.Errorf("message is %d bytes; the limit is %d", len(data), MaxMessageBytes)}
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return &DecodeError{Kind: kind, Err: fmt.Errorf("not a JSON object: %w", err)}
	}
	raw, ok := probe[schemaField]
	if !ok {
		return &DecodeError{Kind: kind, Field: schemaField, Err: errors.New("missing schema version")}
	}
	var major int
	if err := json.Unmarshal(raw, &major); err != nil {
		return &DecodeError{Kind: kind, Field: schemaField, Err: errors.New("schema version must be an integer")}
	}
	if major != SchemaVersion {
		return &DecodeError{Kind: kind, Field: schemaField, Err: fmt.Errorf("%w %d (this build understands %d)", ErrUnsupportedSchema, major, SchemaVersion)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &DecodeError{Kind: kind, Field: te.Field, Err: fmt.Errorf("want %s, got JSON %s", te.Type, te.Value)}
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			return &DecodeError{Kind: kind, Field: fe.Field, Err: errors.New(fe.Why)}
		}
		return &DecodeError{Kind: kind, Err: err}
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
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	return b, nil
}
