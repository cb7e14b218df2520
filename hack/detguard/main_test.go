package main

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// want is one expected finding, written in a fixture as a trailing
// comment: // want "substring of the message".
type want struct {
	file string
	line int
	text string
}

var wantRe = regexp.MustCompile(`// want "((?:[^"\\]|\\.)*)"`)

func readWants(t *testing.T, dir string) []want {
	t.Helper()
	var out []want
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && d.Name() == "testdata" {
			return filepath.SkipDir // the guard skips nested testdata too
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			if m := wantRe.FindStringSubmatch(sc.Text()); m != nil {
				out = append(out, want{p, n, strings.ReplaceAll(m[1], `\"`, `"`)})
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRules runs the guard over one fixture package per rule and checks
// that it reports exactly the lines marked // want, with those messages.
func TestRules(t *testing.T) {
	fixtures := []struct {
		dir  string
		rule string
	}{
		{"clock", "clock reads and timers"},
		{"renamed", "renamed imports of time, math/rand/v2 and a UUID package"},
		{"cryptorand", "crypto/rand import"},
		{"mathrand", "math/rand global functions (constructors allowed)"},
		{"mathrandv2", "math/rand/v2 global functions (constructors allowed)"},
		{"goroutine", "go statements"},
		{"os", "os import"},
		{"osexec", "os/exec import"},
		{"net", "net import"},
		{"nethttp", "net/http import"},
		{"syscall", "syscall import"},
		{"ioutil", "io/ioutil import"},
		{"uuid", "UUID New* functions"},
		{"dotimport", "dot import of a guarded package"},
		{"allow", "//detguard:allow needs a reason and only covers its line"},
		{"clean", "clean package: pure time, seeded rand, map range, shadowing, tests and testdata skipped"},
	}
	for _, fx := range fixtures {
		t.Run(fx.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", fx.dir)
			wants := readWants(t, dir)
			if fx.dir != "clean" && fx.dir != "allow" && len(wants) == 0 {
				t.Fatalf("fixture %s has no // want comments", dir)
			}
			got, err := CheckDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			matched := make([]bool, len(got))
			for _, w := range wants {
				i := slices.IndexFunc(got, func(f Finding) bool {
					return f.Pos.Filename == w.file && f.Pos.Line == w.line && strings.Contains(f.Message, w.text)
				})
				if i < 0 {
					t.Errorf("%s:%d: rule %q did not fire (want a finding containing %q)", w.file, w.line, fx.rule, w.text)
					continue
				}
				matched[i] = true
			}
			for i, f := range got {
				if !matched[i] {
					t.Errorf("unexpected finding: %s", f)
				}
			}
		})
	}
}

// TestExitStatus checks what make lint sees: 1 with findings, 0 when clean,
// 1 for an explicit directory that does not exist.
func TestExitStatus(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"clean fixture passes", []string{"testdata/clean"}, 0},
		{"bad fixture fails", []string{"testdata/clean", "testdata/goroutine"}, 1},
		{"missing explicit dir fails", []string{"testdata/does-not-exist"}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := run(c.args); got != c.want {
				t.Errorf("run(%v) = %d, want %d", c.args, got, c.want)
			}
		})
	}
}

// TestDefaultDirsSkipMissing runs the default directories from a directory
// where only some exist: missing ones are skipped, present ones checked.
func TestDefaultDirsSkipMissing(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "core"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "core", "c.go"), []byte("package core\n\nimport \"time\"\n\nvar T = time.Now()\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(root)
	if got := run(nil); got != 1 {
		t.Fatalf("default run over a core that reads the clock = %d, want 1", got)
	}
	if err := os.WriteFile(filepath.Join(root, "core", "c.go"), []byte("package core\n\nimport \"time\"\n\nvar T time.Duration\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run(nil); got != 0 {
		t.Fatalf("default run over a clean core with the other dirs missing = %d, want 0", got)
	}
}

func TestDefaultName(t *testing.T) {
	for path, want := range map[string]string{
		"time":                      "time",
		"math/rand/v2":              "rand",
		"github.com/gofrs/uuid/v5":  "uuid",
		"github.com/satori/go.uuid": "uuid",
		"github.com/google/uuid":    "uuid",
	} {
		if got := defaultName(path); got != want {
			t.Errorf("defaultName(%q) = %q, want %q", path, got, want)
		}
	}
}
