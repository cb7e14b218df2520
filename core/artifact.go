package core

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// MaxArtifactBytes is the largest artifact an agent downloads (256 MiB).
const MaxArtifactBytes = 256 << 20

// ArtifactRef names a downloadable artifact and how to verify it. Exactly one
// of Object (a name in the "artifacts" object store) and URL (https) is set.
type ArtifactRef struct {
	Object string `json:"object,omitempty"`
	URL    string `json:"url,omitempty"`
	// SHA256 is the lower-case hex SHA-256 of the artifact's bytes.
	SHA256 string `json:"sha256"`
	// Size is the artifact's length in bytes; a download that exceeds it is
	// aborted.
	Size int64 `json:"size"`
	// Signature is an optional base64 ed25519 signature over the artifact's
	// bytes, checked when the agent has a public key configured.
	Signature string `json:"signature,omitempty"`
}

// Validate checks the reference; field names in errors are prefixed with
// "artifact.".
func (a ArtifactRef) Validate() error { return a.validate("artifact") }

func (a ArtifactRef) validate(prefix string) error {
	switch {
	case a.Object == "" && a.URL == "":
		return fieldErr(prefix+".object", "one of object or url is required")
	case a.Object != "" && a.URL != "":
		return fieldErr(prefix+".url", "set object or url, not both")
	case a.Object != "":
		if err := validateObjectName(a.Object); err != nil {
			return fieldErr(prefix+".object", "%v", err)
		}
	default:
		u, err := url.Parse(a.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fieldErr(prefix+".url", "must be an https:// URL, got %q", a.URL)
		}
	}
	if err := ValidateSHA256(a.SHA256); err != nil {
		return fieldErr(prefix+".sha256", "%v", err)
	}
	if a.Size <= 0 || a.Size > MaxArtifactBytes {
		return fieldErr(prefix+".size", "must be between 1 and %d bytes, got %d", MaxArtifactBytes, a.Size)
	}
	if a.Signature != "" {
		sig, err := base64.StdEncoding.DecodeString(a.Signature)
		if err != nil || len(sig) != 64 {
			return fieldErr(prefix+".signature", "must be a base64 ed25519 signature (64 bytes)")
		}
	}
	return nil
}

// ValidateSHA256 checks a lower-case hex SHA-256 digest.
func ValidateSHA256(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("SHA-256 must be 64 hex characters, got %d", len(s))
	}
	if strings.ToLower(s) != s {
		return fmt.Errorf("SHA-256 must be lower-case hex")
	}
	if _, err := hex.DecodeString(s); err != nil {
		return fmt.Errorf("SHA-256 must be hex: %v", err)
	}
	return nil
}

// validateObjectName accepts <name>/<version> with no path traversal.
func validateObjectName(s string) error {
	if len(s) > 255 {
		return fmt.Errorf("object name longer than 255 bytes")
	}
	name, version, ok := strings.Cut(s, "/")
	if !ok || name == "" || version == "" || strings.Contains(version, "/") {
		return fmt.Errorf("object name %q: want <name>/<version>", s)
	}
	for _, p := range []string{name, version} {
		if p == "." || p == ".." || strings.ContainsAny(p, "\\\x00") {
			return fmt.Errorf("object name %q: path traversal or bad characters", s)
		}
		// '.' is fine inside an object name ("agent/v1.2.3"); every other
		// name rule applies.
		if err := ValidateName("artifact", dotless(p)); err != nil {
			if ne, ok := err.(*NameError); ok {
				return &NameError{Kind: "artifact", Name: p, Rule: ne.Rule}
			}
			return err
		}
	}
	return nil
}
