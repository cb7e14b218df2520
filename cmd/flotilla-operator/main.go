// Command flotilla-operator is the Flotilla operator: it turns Deployment,
// Device and AgentRollout objects into per-device desired state and upgrade
// markers in NATS JetStream KV, and folds what devices report back into
// their status.
//
// Subcommands register themselves from their own files with register(), so
// each area owns its file (run.go: the operator; serve_web.go: the
// dashboard).
package main

import "github.com/flotilla-fleet/flotilla/internal/subcmd"

var commands = subcmd.New("flotilla-operator")

// register adds a subcommand; each area calls it from its own file's init.
func register(name, summary string, run subcmd.Run) { commands.Register(name, summary, run) }

func main() { commands.Main() }
