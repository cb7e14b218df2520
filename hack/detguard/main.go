// Command detguard is Flotilla's determinism guard. It parses the Go files of
// the decision cores (not their _test.go files) and fails when one of them
// could make a run depend on anything but its inputs:
//
//   - clock reads and timers: time.Now, Since, Until, Sleep, After, AfterFunc,
//     Tick, NewTimer, NewTicker (cores receive now as an argument of Step);
//   - crypto randomness: importing crypto/rand;
//   - global randomness: any package-level function of math/rand or
//     math/rand/v2 other than the constructors New, NewSource, NewPCG,
//     NewChaCha8 and NewZipf (a seeded *rand.Rand passed in is fine);
//   - goroutines: go statements;
//   - I/O: importing os, os/exec, net, net/http, syscall or io/ioutil;
//   - fresh identifiers: the New* functions of known UUID packages.
//
// Renamed imports are followed (import clock "time" … clock.Now() is caught),
// dot imports of a guarded package are rejected, and a local variable that
// shadows a package name is not mistaken for it.
//
// Ranging over a map is not flagged: it is everywhere and usually harmless.
// The rule instead is that map contents are sorted (core.SortedKeys) before
// they reach an effect, a journal record or an encoded message; table tests
// that run a core twice and compare effects catch a violation.
//
// A line that must do one of these things anyway (a production clock that
// lives beside the contracts, say) carries a comment
//
//	//detguard:allow <reason>
//
// on the same line or the line above; the reason is required.
//
// Usage: go run ./hack/detguard [dirs...]. Directories are walked
// recursively (testdata, vendor and hidden directories are skipped). The
// default directories are core, agent/agentcore, agent/link, operator/opcore,
// operator/runcore and
// sim/kernel; a default directory that does not exist yet is skipped and
// reported. Findings are printed as file:line: message and make the exit
// status 1.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultDirs are the deterministic cores, relative to the repository root.
var DefaultDirs = []string{"core", "agent/agentcore", "agent/link", "operator/opcore", "operator/runcore", "sim/kernel"}

// Finding is one violation.
type Finding struct {
	Pos     token.Position
	Message string
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s", f.Pos.Filename, f.Pos.Line, f.Message)
}

var clockFuncs = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true,
	"Tick":      true, "NewTimer": true, "NewTicker": true,
}

// randAllowed are the names of math/rand and math/rand/v2 a core may use:
// constructors of explicitly seeded generators, and types.
var randAllowed = map[string]bool{
	"New": true, "NewSource": true, "NewPCG": true, "NewChaCha8": true, "NewZipf": true,
	"Rand": true, "Source": true, "Source64": true, "Zipf": true, "PCG": true, "ChaCha8": true,
}

var bannedImports = map[string]string{
	"crypto/rand": "crypto randomness",
	"os":          "I/O (files, environment, processes)",
	"os/exec":     "I/O (subprocesses)",
	"net":         "I/O (network)",
	"net/http":    "I/O (network)",
	"syscall":     "I/O (system calls)",
	"io/ioutil":   "I/O (files)",
}

// uuidPackages are import paths (or prefixes ending in "/") of UUID
// libraries whose New* functions draw fresh randomness or read the clock.
var uuidPackages = []string{
	"github.com/google/uuid",
	"github.com/gofrs/uuid",
	"github.com/satori/go.uuid",
	"github.com/pborman/uuid",
	"github.com/hashicorp/go-uuid",
	"github.com/rs/xid",
	"github.com/oklog/ulid",
}

func isUUIDPackage(p string) bool {
	for _, u := range uuidPackages {
		if p == u || strings.HasPrefix(p, u+"/") {
			return true
		}
	}
	return false
}

// guarded reports whether selectors of the package at path p are checked.
func guarded(p string) bool {
	return p == "time" || p == "math/rand" || p == "math/rand/v2" || isUUIDPackage(p)
}

var majorSuffix = regexp.MustCompile(`^v[0-9]+$`)

// defaultName is the name a package is referred to by when imported without
// a local name: the last path element, skipping a /vN major suffix and a
// "go." or "go-" prefix (github.com/satori/go.uuid is package uuid).
func defaultName(p string) string {
	elems := strings.Split(p, "/")
	name := elems[len(elems)-1]
	if majorSuffix.MatchString(name) && len(elems) > 1 {
		name = elems[len(elems)-2]
	}
	name = strings.TrimPrefix(strings.TrimPrefix(name, "go."), "go-")
	return name
}

// CheckFile parses one file and returns its findings.
func CheckFile(fset *token.FileSet, filename string, src any) ([]Finding, error) {
	f, err := parser.ParseFile(fset, filename, src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	allowed, findings := allowLines(fset, f)
	report := func(pos token.Pos, format string, args ...any) {
		p := fset.Position(pos)
		if allowed[p.Line] {
			return
		}
		findings = append(findings, Finding{Pos: p, Message: fmt.Sprintf(format, args...)})
	}

	names := map[string]string{} // local name -> import path of guarded packages
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			continue
		}
		if why, ok := bannedImports[p]; ok {
			report(imp.Pos(), "import of %q: %s is not allowed in a deterministic core; do it in a shell and pass the result in as an input", p, why)
			continue
		}
		if !guarded(p) {
			continue
		}
		name := defaultName(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		switch name {
		case "_":
			continue
		case ".":
			report(imp.Pos(), "dot import of %q hides clock reads and randomness from the determinism guard; import it by name", p)
			continue
		}
		names[name] = p
	}

	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			report(n.Pos(), "go statement: a deterministic core must not start goroutines; return an effect and let the shell do the work")
		case *ast.SelectorExpr:
			id, ok := n.X.(*ast.Ident)
			if !ok || id.Obj != nil { // id.Obj != nil: a local that shadows the package name
				return true
			}
			p, ok := names[id.Name]
			if !ok {
				return true
			}
			sel := n.Sel.Name
			switch {
			case p == "time" && clockFuncs[sel]:
				report(n.Pos(), "time.%s reads the clock or arms a timer: a deterministic core receives now as an argument and asks for timers with effects", sel)
			case (p == "math/rand" || p == "math/rand/v2") && !randAllowed[sel]:
				report(n.Pos(), "%s.%s uses the global random source: pass in a generator seeded by the caller (%s.New)", path.Base(strings.TrimSuffix(p, "/v2")), sel, id.Name)
			case isUUIDPackage(p) && strings.HasPrefix(sel, "New"):
				report(n.Pos(), "%s.%s (%s) draws a fresh identifier: take ids as inputs (core.IDSource in the shell)", id.Name, sel, p)
			}
		}
		return true
	})
	return findings, nil
}

// allowLines returns the lines exempted by a //detguard:allow comment (its
// own line and the next), and findings for allow comments without a reason.
func allowLines(fset *token.FileSet, f *ast.File) (map[int]bool, []Finding) {
	lines := map[int]bool{}
	var bad []Finding
	for _, cg := range f.Comments {
		for _, c := range cg.List {
			text, ok := strings.CutPrefix(c.Text, "//detguard:allow")
			if !ok {
				continue
			}
			p := fset.Position(c.Pos())
			reason, _, _ := strings.Cut(text, "//")
			if strings.TrimSpace(reason) == "" {
				bad = append(bad, Finding{Pos: p, Message: "//detguard:allow needs a reason"})
				continue
			}
			lines[p.Line] = true
			lines[p.Line+1] = true
		}
	}
	return lines, bad
}

// CheckDir checks every non-test Go file under dir, recursively.
func CheckDir(dir string) ([]Finding, error) {
	fset := token.NewFileSet()
	var findings []Finding
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		fs, err := CheckFile(fset, p, nil)
		if err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
		findings = append(findings, fs...)
		return nil
	})
	slices.SortFunc(findings, func(a, b Finding) int {
		if c := strings.Compare(a.Pos.Filename, b.Pos.Filename); c != 0 {
			return c
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line - b.Pos.Line
		}
		return a.Pos.Column - b.Pos.Column
	})
	return findings, err
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	dirs, explicit := args, true
	if len(dirs) == 0 {
		dirs, explicit = DefaultDirs, false
	}
	var checked, missing []string
	failed := false
	for _, dir := range dirs {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			if explicit {
				fmt.Fprintf(os.Stderr, "detguard: %s: not a directory\n", dir)
				failed = true
			} else {
				missing = append(missing, dir)
			}
			continue
		}
		findings, err := CheckDir(dir)
		for _, f := range findings {
			fmt.Println(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "detguard: %v\n", err)
			failed = true
		}
		if len(findings) > 0 {
			failed = true
		}
		checked = append(checked, dir)
	}
	msg := "detguard: checked " + strings.Join(checked, ", ")
	if len(checked) == 0 {
		msg = "detguard: checked nothing"
	}
	if len(missing) > 0 {
		msg += " (not present yet: " + strings.Join(missing, ", ") + ")"
	}
	if failed {
		fmt.Fprintln(os.Stderr, msg+": FAILED")
		return 1
	}
	fmt.Fprintln(os.Stderr, msg+": ok")
	return 0
}
