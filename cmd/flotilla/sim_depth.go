package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/flotilla-fleet/flotilla/sim"
	"github.com/flotilla-fleet/flotilla/sim/report"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
	"github.com/flotilla-fleet/flotilla/sim/shrink"
	"github.com/flotilla-fleet/flotilla/sim/sweep"
)

// `flotilla sim sweep` and `flotilla sim shrink` (docs/sim-depth.md).

var simDepthUsage = `usage:
  flotilla sim sweep FILE --seeds N [--from S] [--parallel P] [--keep-going] [--swarm]
                          [--devices N] [--report FILE.html] [--json]` + plantUsage + `
  flotilla sim shrink FILE --seed N [--swarm] [--devices N] [--out DIR] [--name NAME]
                          [--max-runs N]` + plantUsage + `

sweep    runs seeds S..S+N-1 (default S=1) on P workers (default: all cores),
         each run single-threaded and deterministic, with a progress bar on
         stderr; stops at the first failure unless --keep-going. --swarm draws
         each seed's fault mix and rates from the seed and prints them.
         Exit status 0 only when every seed passed.
shrink   reduces a failing seed (devices, faults, steps, deployments, fault
         strength, artifact behaviour, horizon, expectations) while it still
         fails the same invariant, and writes the smallest scenario to
         DIR/NAME.yaml (default scenarios/regressions/<scenario>-seed<N>.yaml).
`

var plantUsage = map[bool]string{true: " [--plant BUG]"}[sweep.PlantedAvailable]

type depthFlags struct {
	seeds, from, seed        uint64
	seedSet                  bool
	parallel, devices, maxRn int
	keepGoing, swarm, json   bool
	report, plant, out, name string
	files                    []string
}

func parseDepthArgs(args []string) (depthFlags, error) {
	f := depthFlags{from: 1}
	s := argScan{args: args}
	for s.next(&f.files) {
		var err error
		switch s.name {
		case "seeds":
			err = s.u64(&f.seeds)
			if err == nil && f.seeds == 0 {
				err = errors.New("--seeds: want at least 1")
			}
		case "from":
			err = s.u64(&f.from)
		case "seed":
			err = s.u64(&f.seed)
			f.seedSet = true
		case "parallel":
			err = s.positive(&f.parallel)
		case "devices":
			err = s.positive(&f.devices)
		case "max-runs":
			err = s.positive(&f.maxRn)
		case "keep-going":
			f.keepGoing = true
		case "swarm":
			f.swarm = true
		case "json":
			f.json = true
		case "report":
			err = s.str(&f.report)
		case "plant":
			if !sweep.PlantedAvailable {
				return f, errors.New("--plant: planted bugs are compiled out of this binary (build with -tags plantedbugs)")
			}
			err = s.str(&f.plant)
		case "out":
			err = s.str(&f.out)
		case "name":
			err = s.str(&f.name)
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

// runSimDepth dispatches `sim sweep` and `sim shrink`.
func runSimDepth(ctx context.Context, sub string, args []string) int {
	f, err := parseDepthArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprint(os.Stdout, simDepthUsage)
		return 0
	}
	if err == nil && len(f.files) != 1 {
		err = errors.New("want exactly one scenario FILE")
	}
	if err == nil && sub == "sweep" && f.seeds == 0 {
		err = errors.New("--seeds N is required")
	}
	if err == nil && sub == "shrink" && !f.seedSet {
		err = errors.New("--seed N is required")
	}
	if err == nil && f.plant != "" {
		err = sweep.Plant(f.plant)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla sim %s: %v\n\n%s", sub, err, simDepthUsage)
		return 2
	}
	data, err := os.ReadFile(f.files[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "flotilla sim %s: %v\n", sub, err)
		return 2
	}
	if sub == "shrink" {
		return simShrink(ctx, f, data)
	}
	return simSweep(ctx, f, data)
}

func simSweep(ctx context.Context, f depthFlags, data []byte) int {
	cfg := sweep.Config{File: f.files[0], Data: data, From: f.from, Seeds: f.seeds, Parallel: f.parallel,
		KeepGoing: f.keepGoing, Swarm: f.swarm, Devices: f.devices, Plant: f.plant}
	if !f.json {
		cfg.Progress = os.Stderr
	}
	if f.swarm && !f.json {
		cfg.OnResult = func(sr sweep.SeedResult) {
			// Above the progress bar: clear the line first.
			fmt.Fprintf(os.Stderr, "\r\033[K  seed %d %s: %s\n", sr.Seed, passWord(!sr.Failed()), sr.Swarm)
		}
	}
	if f.json {
		cfg.OnResult = func(sr sweep.SeedResult) {
			out := map[string]any{"seed": sr.Seed, "passed": !sr.Failed(), "signature": sr.Signature(), "swarm": sr.Swarm,
				"wall_seconds": sr.CPU.Seconds()}
			if sr.Result != nil {
				out["events"], out["trace_sha256"], out["replay"] = sr.Result.Events, sr.Result.TraceSHA256, sr.Result.Replay
			}
			if sr.Err != nil {
				out["error"] = sr.Err.Error()
			}
			b, _ := json.Marshal(out)
			fmt.Println(string(b))
		}
	}
	cfg.Report = f.report != ""
	sum, err := sweep.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla sim sweep:", err)
		return 2
	}
	if f.report != "" {
		title := fmt.Sprintf("flotilla sim sweep %s: seeds %d–%d, %d failed", cfg.File, cfg.From, cfg.From+cfg.Seeds-1, len(sum.Failures))
		if err := simWriteReport(f.report, report.Report{Title: title, Runs: sum.Reports()}); err != nil {
			fmt.Fprintln(os.Stderr, "flotilla sim sweep: report:", err)
			return 2
		}
	}
	if !f.json {
		printSweepSummary(cfg, sum)
	}
	if ctx.Err() != nil {
		return 130
	}
	if len(sum.Failures) > 0 {
		return 1
	}
	return 0
}

func printSweepSummary(cfg sweep.Config, s *sweep.Summary) {
	workers := cfg.Parallel
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	perCPUHour := 0.0
	if s.CPU > 0 {
		perCPUHour = float64(s.Runs) / s.CPU.Hours()
	}
	fmt.Printf("sweep %s: %d/%d seeds run (from %d), %d passed, %d failed", s.Scenario, s.Runs, cfg.Seeds, cfg.From, s.Passed, len(s.Failures))
	if s.Stopped && uint64(s.Runs) < cfg.Seeds {
		fmt.Printf(" (stopped at the first failure; --keep-going runs all)")
	}
	fmt.Println()
	fmt.Printf("  %d events, %s simulated, %.1fs wall on %d workers, %.3f CPU-s per seed, %.0f seeds per CPU-hour\n",
		s.Events, fmtSimDur(s.SimSeconds), s.Wall.Seconds(), workers, s.CPU.Seconds()/max(1, float64(s.Runs)), perCPUHour)
	for _, fl := range s.Failures {
		fmt.Printf("FAILED seed %d: %s\n", fl.Seed, fl.Signature())
		if fl.Swarm != "" {
			fmt.Printf("  faults: %s\n", fl.Swarm)
		}
		if fl.Err != nil {
			fmt.Printf("  error: %v\n", fl.Err)
			continue
		}
		for i, v := range fl.Result.Violations {
			if i == 3 {
				fmt.Printf("  … %d more\n", len(fl.Result.Violations)-3)
				break
			}
			fmt.Printf("  %s\n", v)
		}
		for _, e := range fl.Result.Expectations {
			if !e.Pass {
				fmt.Printf("  expectation %s: want %s, got %s\n", e.Name, e.Want, e.Got)
			}
		}
		fmt.Printf("  replay: %s\n", cfg.Replay(fl.Seed))
		shr := fmt.Sprintf("flotilla sim shrink %s --seed %d", cfg.File, fl.Seed)
		if cfg.Swarm {
			shr += " --swarm"
		}
		if cfg.Devices > 0 {
			shr += fmt.Sprintf(" --devices %d", cfg.Devices)
		}
		if cfg.Plant != "" {
			shr += " --plant " + cfg.Plant
		}
		fmt.Printf("  shrink: %s\n", shr)
	}
}

func simShrink(ctx context.Context, f depthFlags, data []byte) int {
	t0 := time.Now()
	out, err := shrink.Shrink(ctx, shrink.Config{File: f.files[0], Data: data, Seed: f.seed, Devices: f.devices,
		Swarm: f.swarm, MaxRuns: f.maxRn, Log: os.Stderr, Name: f.name})
	if err != nil {
		fmt.Fprintln(os.Stderr, "flotilla sim shrink:", err)
		return 1
	}
	dir := f.out
	if dir == "" {
		dir = filepath.Join("scenarios", "regressions")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla sim shrink:", err)
		return 2
	}
	path := filepath.Join(dir, out.Scenario.Name+".yaml")
	if err := os.WriteFile(path, out.YAML, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "flotilla sim shrink:", err)
		return 2
	}
	sc := out.Scenario
	fmt.Printf("shrunk %s seed %d in %d runs (%.1fs): still fails with %s\n", f.files[0], f.seed, out.Runs, time.Since(t0).Seconds(), out.Signature)
	fmt.Printf("  from %d devices, %d faults, %d steps, %d deployments, %s horizon\n", out.From.Fleet.Devices, len(out.From.Faults),
		len(out.From.Steps), len(out.From.Deployments), out.From.Duration.D)
	fmt.Printf("  to   %d devices, %d faults, %d steps, %d deployments, %s horizon\n", sc.Fleet.Devices, len(sc.Faults), len(sc.Steps), len(sc.Deployments), sc.Duration.D)
	if len(out.Result.Violations) > 0 {
		fmt.Printf("  %s\n", out.Result.Violations[0])
	}
	fmt.Printf("wrote %s\n  replay: flotilla sim run %s\n", path, path)
	return 0
}

// ---- --report for `sim run` (and `sim replay`) ------------------------------

// simReportRuns collects one report run per scenario run when --report is set.
var simReportRuns []report.Run

// simRunWorld runs w, recording report curves when f.report is set.
func simRunWorld(w *sim.World, sc *scenario.Scenario, file string, f simFlags) *sim.Result {
	if f.report == "" {
		return w.Run()
	}
	seed := sc.Seed
	if f.seedSet {
		seed = f.seed
	}
	r, run := sweep.RunWithReport(w, sc, file, seed, sim.ReplayCommand(file, seed))
	simReportRuns = append(simReportRuns, run)
	return r
}

// simWriteReport writes FILE.html and, next to it, FILE.png (same base name).
func simWriteReport(path string, r report.Report) error {
	if len(r.Runs) == 0 {
		return errors.New("no runs to report")
	}
	if err := writeFileWith(path, func(w *os.File) error { return report.WriteHTML(w, r) }); err != nil {
		return err
	}
	png := strings.TrimSuffix(path, filepath.Ext(path)) + ".png"
	if err := writeFileWith(png, func(w *os.File) error { return report.WritePNG(w, r) }); err != nil {
		return err
	}
	svg := strings.TrimSuffix(path, filepath.Ext(path)) + ".svg"
	if err := writeFileWith(svg, func(w *os.File) error { return report.WriteSVG(w, r) }); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report: %s (%d runs), %s, %s\n", path, len(r.Runs), png, svg)
	return nil
}

func writeFileWith(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
