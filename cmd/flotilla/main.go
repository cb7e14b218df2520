// Command flotilla is the developer's tool: the simulator (flotilla sim ...)
// and the dashboard in mock mode (flotilla web --mock).
//
// Subcommands register themselves from their own files with register(), so
// each area owns its file.
package main

import "github.com/flotilla-fleet/flotilla/internal/subcmd"

var commands = subcmd.New("flotilla")

// register adds a subcommand; each area calls it from its own file's init.
func register(name, summary string, run subcmd.Run) { commands.Register(name, summary, run) }

func main() { commands.Main() }
