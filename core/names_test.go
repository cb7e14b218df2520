package core

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNameRules(t *testing.T) {
	cases := []struct {
		name     string
		input    string
		wantRule string // substring of NameError.Rule; "" means valid
	}{
		{"plain device id", "edge-0001", ""},
		{"letters digits dash underscore", "Rack_7-node-3", ""},
		{"exactly 253 bytes", strings.Repeat("a", 253), ""},
		{"non-ASCII letters are fine in a generic name", "café", ""},
		{"empty", "", "must not be empty"},
		{"254 bytes", strings.Repeat("a", 254), "is 254 bytes long; the limit is 253"},
		{"dot", "edge.1", "must not contain '.'"},
		{"leading dot", ".edge", "must not contain '.' (byte 0)"},
		{"star wildcard", "edge*", "NATS wildcard '*'"},
		{"gt wildcard", "edge>", "NATS wildcard '>'"},
		{"space", "edge 1", "must not contain whitespace (byte 4)"},
		{"tab", "edge\t1", "must not contain whitespace"},
		{"newline", "edge\n", "must not contain whitespace"},
		{"non-breaking space", "edge\u00a01", "must not contain whitespace"},
		{"NUL", "edge\x00", "control character U+0000"},
		{"DEL", "edge\x7f", "control character U+007F"},
		{"C1 control", "edge\u0080", "control character U+0080"},
		{"invalid UTF-8", "edge\xff", "is not valid UTF-8"},
		{"truncated UTF-8 sequence", "caf\xc3", "is not valid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateName("device", c.input)
			if c.wantRule == "" {
				if err != nil {
					t.Fatalf("ValidateName(%q) = %v, want nil", c.input, err)
				}
				return
			}
			var ne *NameError
			if !errors.As(err, &ne) {
				t.Fatalf("ValidateName(%q) = %v, want a *NameError", c.input, err)
			}
			if !strings.Contains(ne.Rule, c.wantRule) {
				t.Errorf("rule = %q, want it to name %q", ne.Rule, c.wantRule)
			}
			if ne.Kind != "device" || !strings.HasPrefix(err.Error(), "invalid device name ") {
				t.Errorf("error %q does not say which kind of name is bad", err)
			}
		})
	}
}

// Device and deployment names become NATS KV keys, whose alphabet is
// [-/_=.A-Za-z0-9]; anything else would fail every KV write at runtime.
func TestDeviceAndDeploymentNamesAreKVKeyTokens(t *testing.T) {
	cases := []struct {
		input    string
		wantRule string
	}{
		{"edge-0001", ""},
		{"site=a/rack_7", ""},
		{"café", "NATS KV key characters); found 'é' (byte 3)"},
		{"a:b", "found ':' (byte 1)"},
		{"a@b", "found '@'"},
		{"a.b", "must not contain '.'"}, // the more specific rule still wins
		{"", "must not be empty"},
	}
	for _, c := range cases {
		for kind, validate := range map[string]func(string) error{"device": ValidateDeviceName, "deployment": ValidateDeploymentName} {
			err := validate(c.input)
			if c.wantRule == "" {
				if err != nil {
					t.Errorf("%s name %q: %v, want valid", kind, c.input, err)
				}
				continue
			}
			if err == nil || !strings.Contains(err.Error(), c.wantRule) || !strings.Contains(err.Error(), "invalid "+kind+" name") {
				t.Errorf("%s name %q: error %v, want one naming %q", kind, c.input, err, c.wantRule)
			}
		}
	}
}

func TestLongNameErrorIsShortened(t *testing.T) {
	err := ValidateDeviceName(strings.Repeat("x", 10_000))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error for a 10 kB name should be short, got %d bytes: %v", len(err.Error()), err)
	}
}
