package core

import (
	"strings"
	"testing"
)

func TestArtifactRefValidate(t *testing.T) {
	ok := ArtifactRef{Object: "flotilla-agent/v1.3.0", SHA256: sampleSHA, Size: 1, Signature: sampleSig}
	cases := []struct {
		name  string
		edit  func(*ArtifactRef)
		field string // FieldError.Field; "" means valid
		why   string
	}{
		{"object ref", func(a *ArtifactRef) {}, "", ""},
		{"https url", func(a *ArtifactRef) { a.Object, a.URL = "", "https://releases.example.com/a?x=1" }, "", ""},
		{"max size", func(a *ArtifactRef) { a.Size = MaxArtifactBytes }, "", ""},
		{"no signature", func(a *ArtifactRef) { a.Signature = "" }, "", ""},
		{"neither", func(a *ArtifactRef) { a.Object = "" }, "artifact.object", "one of object or url is required"},
		{"both", func(a *ArtifactRef) { a.URL = "https://x/y" }, "artifact.url", "not both"},
		{"http url", func(a *ArtifactRef) { a.Object, a.URL = "", "http://x/y" }, "artifact.url", "must be an https:// URL"},
		{"url without host", func(a *ArtifactRef) { a.Object, a.URL = "", "https:///y" }, "artifact.url", "must be an https:// URL"},
		{"unparseable url", func(a *ArtifactRef) { a.Object, a.URL = "", "https://x/%zz" }, "artifact.url", "must be an https:// URL"},
		{"object without version", func(a *ArtifactRef) { a.Object = "agent" }, "artifact.object", "want <name>/<version>"},
		{"object with two slashes", func(a *ArtifactRef) { a.Object = "a/b/c" }, "artifact.object", "want <name>/<version>"},
		{"object traversal", func(a *ArtifactRef) { a.Object = "../v1" }, "artifact.object", "path traversal"},
		{"object dot version", func(a *ArtifactRef) { a.Object = "agent/." }, "artifact.object", "path traversal"},
		{"object backslash", func(a *ArtifactRef) { a.Object = `a\b/v1` }, "artifact.object", "path traversal or bad characters"},
		{"object too long", func(a *ArtifactRef) { a.Object = "a/" + strings.Repeat("v", 254) }, "artifact.object", "longer than 255 bytes"},
		// '.' is allowed inside object names, but no other name rule is
		// waived: whitespace and wildcards after a '.' used to slip through.
		{"object space after dot", func(a *ArtifactRef) { a.Object = "my.agent x/v1" }, "artifact.object", "must not contain whitespace"},
		{"object wildcard after dot", func(a *ArtifactRef) { a.Object = "agent/v1.2*" }, "artifact.object", "NATS wildcard '*'"},
		{"object control char", func(a *ArtifactRef) { a.Object = "agent/v1.\x07" }, "artifact.object", `invalid artifact name "v1.\a": must not contain control character`},
		{"short sha", func(a *ArtifactRef) { a.SHA256 = "abcd" }, "artifact.sha256", "64 hex characters, got 4"},
		{"upper sha", func(a *ArtifactRef) { a.SHA256 = strings.ToUpper(sampleSHA) }, "artifact.sha256", "lower-case"},
		{"zero size", func(a *ArtifactRef) { a.Size = 0 }, "artifact.size", "got 0"},
		{"negative size", func(a *ArtifactRef) { a.Size = -1 }, "artifact.size", "got -1"},
		{"too big", func(a *ArtifactRef) { a.Size = MaxArtifactBytes + 1 }, "artifact.size", "must be between 1 and 268435456 bytes"},
		{"signature not base64", func(a *ArtifactRef) { a.Signature = "!!" }, "artifact.signature", "base64 ed25519 signature (64 bytes)"},
		{"signature wrong length", func(a *ArtifactRef) { a.Signature = "AAAA" }, "artifact.signature", "64 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := ok
			c.edit(&a)
			err := a.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", a, err)
				}
				return
			}
			fe, isFE := err.(*FieldError)
			if !isFE || fe.Field != c.field || !strings.Contains(fe.Why, c.why) {
				t.Errorf("Validate = %v, want field %q saying %q", err, c.field, c.why)
			}
		})
	}
}

func TestValidateSHA256(t *testing.T) {
	if err := ValidateSHA256(sampleSHA); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", sampleSHA[:63], sampleSHA + "0", strings.Repeat("z", 64)} {
		if ValidateSHA256(bad) == nil {
			t.Errorf("ValidateSHA256(%q) accepted", bad)
		}
	}
}
