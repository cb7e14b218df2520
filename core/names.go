package core

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest device or deployment name, in bytes.
const MaxNameLen = 253

// NameError reports why a device, deployment or other name is unusable.
type NameError struct {
	Kind string // "device", "deployment", ...
	Name string
	Rule string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid %s name %q: %s", e.Kind, e.Name, e.Rule)
}

// ValidateName checks a name that becomes one token of a NATS subject or KV
// key. kind ("device", "deployment") only appears in the error.
//
// Rejected: empty names, names longer than MaxNameLen bytes, invalid UTF-8,
// '.', the NATS wildcards '*' and '>', whitespace and control characters.
func ValidateName(kind, name string) error {
	if name == "" {
		return &NameError{kind, name, "must not be empty"}
	}
	if len(name) > MaxNameLen {
		return &NameError{kind, name[:32] + "...", fmt.Sprintf("is %d bytes long; the limit is %d", len(name), MaxNameLen)}
	}
	if !utf8.ValidString(name) {
		return &NameError{kind, name, "is not valid UTF-8"}
	}
	for i, r := range name {
		switch {
		case r == '.':
			return &NameError{kind, name, fmt.Sprintf("must not contain '.' (byte %d): it separates NATS subject tokens", i)}
		case r == '*' || r == '>':
			return &NameError{kind, name, fmt.Sprintf("must not contain the NATS wildcard %q (byte %d)", r, i)}
		case unicode.IsSpace(r):
			return &NameError{kind, name, fmt.Sprintf("must not contain whitespace (byte %d)", i)}
		case unicode.IsControl(r):
			return &NameError{kind, name, fmt.Sprintf("must not contain control character %U (byte %d)", r, i)}
		}
	}
	return nil
}

// ValidateDeviceName is ValidateName for device IDs, which also become NATS
// KV keys (see validateKeyToken).
func ValidateDeviceName(name string) error { return validateKeyToken("device", name) }

// ValidateDeploymentName is ValidateName for deployment names, which also
// become NATS KV keys (see validateKeyToken).
func ValidateDeploymentName(name string) error { return validateKeyToken("deployment", name) }

// validateKeyToken is ValidateName plus the character set of a NATS KV key
// ([-/_=.A-Za-z0-9], without '.'): a device named "café" would otherwise
// pass validation and then fail every KV write with "invalid key".
func validateKeyToken(kind, name string) error {
	if name != "" && len(name) <= MaxNameLen && keyTokenChars(name) < 0 {
		// Every byte a key character: none of ValidateName's rules can
		// fail. Device keys are checked on every heartbeat.
		return nil
	}
	if err := ValidateName(kind, name); err != nil {
		return err
	}
	if i := keyTokenChars(name); i >= 0 {
		r, _ := utf8.DecodeRuneInString(name[i:])
		return &NameError{kind, name, fmt.Sprintf("must only contain ASCII letters, digits, '-', '_', '/' and '=' (NATS KV key characters); found %q (byte %d)", r, i)}
	}
	return nil
}

// keyTokenChars returns the index of the first byte of s that is not a KV
// key character, or -1.
func keyTokenChars(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '/' || c == '=') {
			return i
		}
	}
	return -1
}
