package core

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// MaxVersionLen bounds a version string so that a heartbeat stays small.
const MaxVersionLen = 32

// Version is a semantic version (https://semver.org) with an optional leading
// "v": v1.2.3, 1.2.3-rc.1, v2.0.0+build.7. The zero Version is invalid.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string // dot-separated pre-release identifiers
	Build               string
	raw                 string
}

// ParseVersion parses s as a semantic version.
func ParseVersion(s string) (Version, error) {
	bad := func(why string) (Version, error) {
		shown := s
		if len(shown) > MaxVersionLen+8 { // keep errors about huge inputs short
			shown = shown[:MaxVersionLen] + "..."
		}
		return Version{}, fmt.Errorf("invalid version %q: %s", shown, why)
	}
	if s == "" {
		return bad("must not be empty")
	}
	if len(s) > MaxVersionLen {
		return bad(fmt.Sprintf("longer than %d bytes", MaxVersionLen))
	}
	rest := strings.TrimPrefix(s, "v")
	var v Version
	v.raw = s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		v.Build = rest[i+1:]
		rest = rest[:i]
		if v.Build == "" || !identChars(v.Build, true) {
			return bad("build metadata must be dot-separated [0-9A-Za-z-] identifiers")
		}
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		pre := rest[i+1:]
		rest = rest[:i]
		if pre == "" {
			return bad("empty pre-release")
		}
		v.Pre = strings.Split(pre, ".")
		for _, id := range v.Pre {
			if id == "" || !identChars(id, false) {
				return bad("pre-release identifiers must be non-empty [0-9A-Za-z-]")
			}
			if isNumeric(id) && len(id) > 1 && id[0] == '0' {
				return bad("numeric pre-release identifier with a leading zero")
			}
		}
	}
	// MAJOR.MINOR.PATCH, cut by hand rather than with strings.Split: this
	// runs for every version field of every message decoded.
	if strings.Count(rest, ".") != 2 {
		return bad("want MAJOR.MINOR.PATCH")
	}
	nums := [3]*uint64{&v.Major, &v.Minor, &v.Patch}
	names := [3]string{"major", "minor", "patch"}
	for i := range nums {
		p, after, _ := strings.Cut(rest, ".")
		rest = after
		if p == "" || !isNumeric(p) {
			return bad(names[i] + " must be a non-negative integer")
		}
		if len(p) > 1 && p[0] == '0' {
			return bad(names[i] + " has a leading zero")
		}
		if len(p) > 19 { // 19 decimal digits always fit in a uint64
			if _, err := strconv.ParseUint(p, 10, 64); err != nil {
				return bad(names[i] + " out of range")
			}
		}
		var n uint64
		for j := 0; j < len(p); j++ {
			n = n*10 + uint64(p[j]-'0')
		}
		*nums[i] = n
	}
	return v, nil
}

// MustParseVersion is ParseVersion for constants in tests and tables; it panics
// on error.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String returns the version as it was written.
func (v Version) String() string {
	if v.raw != "" {
		return v.raw
	}
	// Built with strconv rather than fmt: versions built in code (not
	// parsed) are formatted for every message that carries them.
	var buf [64]byte
	b := append(buf[:0], 'v')
	b = strconv.AppendUint(b, v.Major, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, v.Minor, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, v.Patch, 10)
	for i, p := range v.Pre {
		if i == 0 {
			b = append(b, '-')
		} else {
			b = append(b, '.')
		}
		b = append(b, p...)
	}
	if v.Build != "" {
		b = append(b, '+')
		b = append(b, v.Build...)
	}
	return string(b)
}

// IsZero reports whether v is the zero (unset) Version.
func (v Version) IsZero() bool {
	return v.raw == "" && v.Major == 0 && v.Minor == 0 && v.Patch == 0 && v.Pre == nil
}

// Compare orders versions by semver precedence: -1, 0 or +1. Build metadata
// is ignored, as semver requires.
func (v Version) Compare(o Version) int {
	for _, d := range [3][2]uint64{{v.Major, o.Major}, {v.Minor, o.Minor}, {v.Patch, o.Patch}} {
		if d[0] != d[1] {
			if d[0] < d[1] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(v.Pre) == 0 && len(o.Pre) == 0:
		return 0
	case len(v.Pre) == 0:
		return 1
	case len(o.Pre) == 0:
		return -1
	}
	for i := 0; i < len(v.Pre) && i < len(o.Pre); i++ {
		a, b := v.Pre[i], o.Pre[i]
		an, bn := isNumeric(a), isNumeric(b)
		switch {
		case an && bn:
			// Numeric identifiers compare numerically, at any length: with
			// leading zeros stripped, the longer one is larger, and equal
			// lengths compare digit by digit.
			a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
			if len(a) != len(b) {
				if len(a) < len(b) {
					return -1
				}
				return 1
			}
			if c := strings.Compare(a, b); c != 0 {
				return c
			}
		case an:
			return -1
		case bn:
			return 1
		default:
			if c := strings.Compare(a, b); c != 0 {
				return c
			}
		}
	}
	switch {
	case len(v.Pre) < len(o.Pre):
		return -1
	case len(v.Pre) > len(o.Pre):
		return 1
	}
	return 0
}

// Less reports whether v sorts before o.
func (v Version) Less(o Version) bool { return v.Compare(o) < 0 }

// MarshalJSON encodes the version as its string.
func (v Version) MarshalJSON() ([]byte, error) { return json.Marshal(v.String()) }

// UnmarshalJSON parses a version string.
func (v *Version) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("version must be a string: %w", err)
	}
	p, err := ParseVersion(s)
	if err != nil {
		return err
	}
	*v = p
	return nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func identChars(s string, dots bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || dots && c == '.'
		if !ok {
			return false
		}
	}
	// With dots, no identifier may be empty.
	return !dots || s != "" && s[0] != '.' && s[len(s)-1] != '.' && !strings.Contains(s, "..")
}
