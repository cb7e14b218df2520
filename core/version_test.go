package core

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	cases := []struct {
		in                  string
		major, minor, patch uint64
		pre                 []string
		build               string
	}{
		{"1.2.3", 1, 2, 3, nil, ""},
		{"v1.2.3", 1, 2, 3, nil, ""},
		{"v0.0.1", 0, 0, 1, nil, ""},
		{"1.0.0-rc.1", 1, 0, 0, []string{"rc", "1"}, ""},
		{"v2.0.0+build.7", 2, 0, 0, nil, "build.7"},
		{"1.0.0-alpha-1.0+001", 1, 0, 0, []string{"alpha-1", "0"}, "001"},
		{"1.0.0-0A.is.legal", 1, 0, 0, []string{"0A", "is", "legal"}, ""},
		{"18446744073709551615.0.0", 18446744073709551615, 0, 0, nil, ""},
		{"v1.2.3-" + strings.Repeat("a", 25), 1, 2, 3, []string{strings.Repeat("a", 25)}, ""}, // 32 bytes
	}
	for _, c := range cases {
		v, err := ParseVersion(c.in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", c.in, err)
			continue
		}
		if v.Major != c.major || v.Minor != c.minor || v.Patch != c.patch || !slices.Equal(v.Pre, c.pre) || v.Build != c.build {
			t.Errorf("ParseVersion(%q) = %+v", c.in, v)
		}
		if v.String() != c.in {
			t.Errorf("String() = %q, want the input %q", v.String(), c.in)
		}
		if v.IsZero() {
			t.Errorf("%q parsed as the zero version", c.in)
		}
	}
}

func TestParseVersionRejects(t *testing.T) {
	cases := []struct{ in, why string }{
		{"", "must not be empty"},
		{"v1.2.3-" + strings.Repeat("a", 26), "longer than 32 bytes"},
		{"1.2", "want MAJOR.MINOR.PATCH"},
		{"1.2.3.4", "want MAJOR.MINOR.PATCH"},
		{"V1.2.3", "major must be a non-negative integer"},
		{"vv1.2.3", "major must be a non-negative integer"},
		{"1.x.3", "minor must be a non-negative integer"},
		{"1.2.", "patch must be a non-negative integer"},
		{"-1.2.3", "want MAJOR.MINOR.PATCH"},
		{"01.2.3", "major has a leading zero"},
		{"1.02.3", "minor has a leading zero"},
		{"1.2.03", "patch has a leading zero"},
		{"18446744073709551616.0.0", "major out of range"},
		{"1.2.3-", "empty pre-release"},
		{"1.2.3-a..b", "pre-release identifiers must be non-empty"},
		{"1.2.3-a_b", "pre-release identifiers must be non-empty [0-9A-Za-z-]"},
		{"1.2.3-01", "numeric pre-release identifier with a leading zero"},
		{"1.2.3+", "build metadata"},
		{"1.2.3+a..b", "build metadata"},
		{"1.2.3+a b", "build metadata"},
		{" 1.2.3", "major must be a non-negative integer"},
	}
	for _, c := range cases {
		_, err := ParseVersion(c.in)
		if err == nil || !strings.Contains(err.Error(), c.why) || !strings.Contains(err.Error(), "invalid version") {
			t.Errorf("ParseVersion(%q) = %v, want an error saying %q", c.in, err, c.why)
		}
	}
}

// TestVersionPrecedence follows semver.org §11, including its example chain
// 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
// 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0.
func TestVersionPrecedence(t *testing.T) {
	ascending := []string{
		"0.9.99",
		"1.0.0-0",
		"1.0.0-9",
		"1.0.0-10",
		"1.0.0-99999999999999999998", // beyond uint64: still numeric order
		"1.0.0-99999999999999999999",
		"1.0.0-100000000000000000000",
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.0.1",
		"1.1.0",
		"1.10.0",
		"2.0.0",
		"10.0.0",
	}
	for i, a := range ascending {
		for j, b := range ascending {
			va, vb := MustParseVersion(a), MustParseVersion(b)
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := va.Compare(vb); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, want)
			}
			if va.Less(vb) != (want < 0) {
				t.Errorf("Less(%s, %s) = %v", a, b, va.Less(vb))
			}
		}
	}
}

func TestVersionCompareIgnoresBuildAndPrefix(t *testing.T) {
	for _, pair := range [][2]string{{"1.2.3+a", "1.2.3+b"}, {"v1.2.3", "1.2.3"}, {"v1.0.0-rc.1+x", "1.0.0-rc.1"}} {
		if c := MustParseVersion(pair[0]).Compare(MustParseVersion(pair[1])); c != 0 {
			t.Errorf("Compare(%s, %s) = %d, want 0", pair[0], pair[1], c)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	v := MustParseVersion("v1.2.3-rc.1+b7")
	b, err := json.Marshal(v)
	if err != nil || string(b) != `"v1.2.3-rc.1+b7"` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var back Version
	if err := json.Unmarshal(b, &back); err != nil || back.String() != v.String() || back.Compare(v) != 0 {
		t.Fatalf("Unmarshal = %v, %v", back, err)
	}
	for _, bad := range []string{`123`, `"1.2"`, `null`, `""`, `{"major":1}`} {
		var w Version
		if err := json.Unmarshal([]byte(bad), &w); err == nil {
			t.Errorf("Unmarshal(%s) accepted %v", bad, w)
		}
	}
}

func TestMustParseVersionPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParseVersion(\"bogus\") did not panic")
		}
	}()
	MustParseVersion("bogus")
}

func TestZeroVersion(t *testing.T) {
	if !(Version{}).IsZero() {
		t.Error("Version{} is not zero")
	}
	if MustParseVersion("0.0.0").IsZero() {
		t.Error("a parsed 0.0.0 counts as unset")
	}
}

// A huge version string (a hostile KV value) yields a short error.
func TestParseVersionHugeInputShortError(t *testing.T) {
	_, err := ParseVersion(strings.Repeat("9", 1<<20))
	if err == nil || len(err.Error()) > 120 || !strings.Contains(err.Error(), "longer than 32 bytes") {
		t.Fatalf("error is %d bytes: %.200v", len(err.Error()), err)
	}
}
