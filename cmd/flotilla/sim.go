package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/report"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

func init() {
	register("sim", "deterministic simulator: sim run FILE... | sim replay FILE --seed N", runSim)
}

const simUsage = `usage:
  flotilla sim run FILE... [--seed N] [--devices N] [--json] [--trace FILE] [--keep-going] [--report FILE.html]
  flotilla sim replay FILE --seed N [--devices N] [--trace FILE]
  flotilla sim check FILE...          validate scenario files only
  flotilla sim sweep FILE --seeds N ... | sim shrink FILE --seed N ...   (sim sweep --help)

run      runs each scenario (its own seed unless --seed); with several files it
         prints progress and a table. Exit status 0 only when every invariant
         and every expectation held.
replay   runs one scenario with a seed and prints the full trace (to stdout,
         or to --trace FILE).
`

type simFlags struct {
	seed      uint64
	seedSet   bool
	devices   int
	json      bool
	trace     string
	keepGoing bool
	report    string // --report FILE.html (sim_depth.go)
	files     []string
}

// parseSimArgs accepts flags before or after the positional arguments.
func parseSimArgs(args []string) (simFlags, error) {
	var f simFlags
	s := argScan{args: args}
	for s.next(&f.files) {
		var err error
		switch s.name {
		case "seed":
			err = s.u64(&f.seed)
			f.seedSet = true
		case "devices":
			err = s.positive(&f.devices)
		case "trace":
			err = s.str(&f.trace)
		case "report":
			err = s.str(&f.report)
		case "json":
			f.json = true
		case "keep-going":
			f.keepGoing = true
		case "h", "help":
			return f, errHelp
		default:
			return f, s.unknown()
		}
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

var errHelp = errors.New("help")

func runSim(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, simUsage)
		return 2
	}
	sub := args[0]
	// GOGC=400 under a soft memory limit, unless the environment says
	// otherwise.
	sim.UseBatchGC()
	if sub == "sweep" || sub == "shrink" { // own flags: sim_depth.go
		return runSimDepth(ctx, sub, args[1:])
	}
	f, err := parseSimArgs(args[1:])
	if errors.Is(err, errHelp) {
		fmt.Fprint(os.Stdout, simUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla sim %s: %v\n\n%s", sub, err, simUsage)
		return 2
	}
	switch sub {
	case "run":
		return simRun(ctx, f)
	case "replay":
		if len(f.files) != 1 || !f.seedSet {
			fmt.Fprintf(os.Stderr, "flotilla sim replay: want exactly one FILE and --seed N\n\n%s", simUsage)
			return 2
		}
		return simReplay(f)
	case "check":
		return simCheck(f)
	case "sweep", "shrink":
		return runSimDepth(ctx, sub, args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, simUsage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "flotilla sim: unknown subcommand %q\n\n%s", sub, simUsage)
	return 2
}

func simExpand(files []string) ([]string, error) {
	var out []string
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		if st.IsDir() {
			m, _ := filepath.Glob(filepath.Join(f, "*.yaml"))
			sort.Strings(m)
			out = append(out, m...)
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

func simCheck(f simFlags) int {
	files, err := simExpand(f.files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla sim check:", err)
		return 2
	}
	bad := 0
	for _, file := range files {
		if _, err := scenario.Load(file); err != nil {
			fmt.Fprintln(os.Stderr, err)
			bad++
			continue
		}
		fmt.Printf("ok  %s\n", file)
	}
	if bad > 0 {
		return 1
	}
	return 0
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type simOutcome struct {
	*sim.Result
	CPUSeconds float64 `json:"cpu_seconds"`
}

func simOne(file string, f simFlags, trace io.Writer) (*simOutcome, error) {
	sc, err := scenario.Load(file)
	if err != nil {
		return nil, err
	}
	opt := sim.Options{Seed: f.seed, SeedSet: f.seedSet, Devices: f.devices, KeepGoing: f.keepGoing}
	var tw *bufio.Writer
	if trace != nil {
		tw = bufio.NewWriterSize(trace, 1<<16)
		opt.Trace = simTextSink{tw}
	}
	w, err := sim.New(sc, opt)
	if err != nil {
		return nil, err
	}
	c0, t0 := cpuTime(), time.Now()
	r := simRunWorld(w, sc, file, f)
	wall, cpu := time.Since(t0), cpuTime()-c0
	if tw != nil {
		tw.Flush()
	}
	r.WallSeconds = wall.Seconds()
	if wall > 0 {
		r.EventsPerS = float64(r.Events) / wall.Seconds()
	}
	return &simOutcome{Result: r, CPUSeconds: cpu.Seconds()}, nil
}

type simTextSink struct{ w *bufio.Writer }

func (s simTextSink) TraceLine(at time.Duration, line string) {
	fmt.Fprintf(s.w, "%12.3fs %s\n", at.Seconds(), line)
}

func simRun(ctx context.Context, f simFlags) int {
	files, err := simExpand(f.files)
	if err != nil || len(files) == 0 {
		fmt.Fprintf(os.Stderr, "flotilla sim run: no scenario files (%v)\n", err)
		return 2
	}
	var trace io.Writer
	if f.trace != "" {
		tf, err := os.Create(f.trace)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flotilla sim run:", err)
			return 2
		}
		defer tf.Close()
		trace = tf
	}
	table := len(files) > 1
	var rows []*simOutcome
	code := 0
	for i, file := range files {
		if ctx.Err() != nil {
			return 130
		}
		if table && !f.json {
			fmt.Fprintf(os.Stderr, "[%d/%d] %s ...\n", i+1, len(files), file)
		}
		out, err := simOne(file, f, trace)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 2
			continue
		}
		rows = append(rows, out)
		if !out.Passed && code == 0 {
			code = 1
		}
		switch {
		case f.json:
			b, _ := json.Marshal(out)
			fmt.Println(string(b))
		case table:
			fmt.Fprintf(os.Stderr, "      %s in %.2fs wall, %d events\n", passWord(out.Passed), out.WallSeconds, out.Events)
			if !out.Passed {
				simExplain(os.Stderr, out)
			}
		default:
			simSummary(os.Stdout, out)
		}
	}
	if table && !f.json {
		simTable(os.Stdout, rows)
	}
	if f.report != "" {
		if err := simWriteReport(f.report, report.Report{Runs: simReportRuns}); err != nil {
			fmt.Fprintln(os.Stderr, "flotilla sim run: report:", err)
			return 2
		}
	}
	return code
}

func passWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func simSummary(w io.Writer, r *simOutcome) {
	fmt.Fprintf(w, "%s %s seed=%d devices=%d events=%d simulated=%s wall=%.2fs cpu=%.2fs events/s=%.0f\n",
		passWord(r.Passed), r.Scenario, r.Seed, r.Devices, r.Events, fmtSimDur(r.SimSeconds), r.WallSeconds, r.CPUSeconds, r.EventsPerS)
	fmt.Fprintf(w, "trace sha256 %s\n", r.TraceSHA256)
	for _, e := range r.Expectations {
		fmt.Fprintf(w, "  expect %-24s want %-10s got %-28s %s\n", e.Name, e.Want, e.Got, passWord(e.Pass))
	}
	if len(r.FaultsFired) > 0 {
		keys := make([]string, 0, len(r.FaultsFired))
		for k := range r.FaultsFired {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, r.FaultsFired[k]))
		}
		fmt.Fprintf(w, "  faults fired: %s\n", strings.Join(parts, " "))
	}
	vers := make([]string, 0, len(r.FinalAgentVersions))
	for v := range r.FinalAgentVersions {
		vers = append(vers, v)
	}
	sort.Strings(vers)
	var vp []string
	for _, v := range vers {
		vp = append(vp, fmt.Sprintf("%s=%d", v, r.FinalAgentVersions[v]))
	}
	fmt.Fprintf(w, "  agent versions: %s\n", strings.Join(vp, " "))
	if len(r.UpgradeOutcomes) > 0 {
		keys := make([]string, 0, len(r.UpgradeOutcomes))
		for k := range r.UpgradeOutcomes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var op []string
		for _, k := range keys {
			op = append(op, fmt.Sprintf("%s=%d", k, r.UpgradeOutcomes[k]))
		}
		fmt.Fprintf(w, "  upgrade status: %s\n", strings.Join(op, " "))
	}
	if !r.Passed {
		simExplain(w, r)
	}
}

func simExplain(w io.Writer, r *simOutcome) {
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  VIOLATION %s\n", v)
	}
	for _, e := range r.Expectations {
		if !e.Pass {
			fmt.Fprintf(w, "  EXPECTATION FAILED %s: want %s, got %s\n", e.Name, e.Want, e.Got)
		}
	}
	fmt.Fprintf(w, "  seed: %d\n  replay: %s\n", r.Seed, r.Replay)
}

func fmtSimDur(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}

func simTable(w io.Writer, rows []*simOutcome) {
	fmt.Fprintf(w, "\n%-34s %8s %11s %10s %8s %8s %11s  %s\n", "scenario", "devices", "events", "simulated", "wall", "cpu", "events/s", "result")
	fmt.Fprintln(w, strings.Repeat("-", 104))
	pass := 0
	var events uint64
	var wall float64
	for _, r := range rows {
		fmt.Fprintf(w, "%-34s %8d %11d %10s %7.2fs %7.2fs %11.0f  %s\n", r.Scenario, r.Devices, r.Events,
			fmtSimDur(r.SimSeconds), r.WallSeconds, r.CPUSeconds, r.EventsPerS, passWord(r.Passed))
		if r.Passed {
			pass++
		}
		events += r.Events
		wall += r.WallSeconds
	}
	fmt.Fprintln(w, strings.Repeat("-", 104))
	fmt.Fprintf(w, "%d/%d scenarios passed, %d events in %.1fs wall\n", pass, len(rows), events, wall)
	for _, r := range rows {
		if !r.Passed {
			fmt.Fprintf(w, "FAILED %s seed %d: %s\n", r.Scenario, r.Seed, r.Replay)
		}
	}
}

func simReplay(f simFlags) int {
	out := io.Writer(os.Stdout)
	if f.trace != "" {
		tf, err := os.Create(f.trace)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flotilla sim replay:", err)
			return 2
		}
		defer tf.Close()
		out = tf
	}
	r, err := simOne(f.files[0], f, out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	simSummary(os.Stdout, r)
	if !r.Passed {
		return 1
	}
	return 0
}
