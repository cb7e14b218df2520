// Package subcmd is the subcommand dispatcher shared by the flotilla and
// flotilla-operator binaries: each area registers its subcommand from its
// own file, and Main dispatches on os.Args[1] with a signal-aware context.
package subcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Run gets the arguments after the subcommand name and returns the process
// exit status.
type Run func(ctx context.Context, args []string) int

type command struct {
	summary string
	run     Run
}

// Set is one program's subcommands.
type Set struct {
	prog     string
	commands map[string]command
}

// New returns an empty set for the program named prog.
func New(prog string) *Set { return &Set{prog: prog, commands: map[string]command{}} }

// Register adds a subcommand; a duplicate name is a programming error.
func (s *Set) Register(name, summary string, run Run) {
	if _, dup := s.commands[name]; dup {
		panic("duplicate subcommand " + name)
	}
	s.commands[name] = command{summary: summary, run: run}
}

// Usage lists the subcommands, sorted.
func (s *Set) Usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s <command> [arguments]\n\ncommands:\n", s.prog)
	names := make([]string, 0, len(s.commands))
	for n := range s.commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, s.commands[n].summary)
	}
}

// Main dispatches os.Args and exits with the subcommand's status (2 for
// usage errors). SIGINT and SIGTERM cancel the subcommand's context.
func (s *Set) Main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		s.Usage(os.Stderr)
		os.Exit(2)
	}
	c, ok := s.commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: unknown command %q\n\n", s.prog, os.Args[1])
		s.Usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := c.run(ctx, os.Args[2:])
	stop()
	os.Exit(code)
}
