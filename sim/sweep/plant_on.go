//go:build plantedbugs

package sweep

import (
	"fmt"
	"slices"

	"github.com/flotilla-fleet/flotilla/agent/agentcore"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// PlantedAvailable reports whether this binary was built with the
// plantedbugs tag (Plant works).
const PlantedAvailable = true

// PlantedBugs lists every planted bug of the production cores.
func PlantedBugs() []string {
	return append(slices.Clone(agentcore.PlantedBugs), opcore.PlantedBugs...)
}

// Plant switches on one planted bug by name for the whole process ("":
// none). Call it before runs start, never while they run.
func Plant(name string) error {
	switch {
	case name == "":
		_ = agentcore.SetPlantedBug("")
		_ = opcore.SetPlantedBug("")
		return nil
	case slices.Contains(agentcore.PlantedBugs, name):
		_ = opcore.SetPlantedBug("")
		return agentcore.SetPlantedBug(name)
	case slices.Contains(opcore.PlantedBugs, name):
		_ = agentcore.SetPlantedBug("")
		return opcore.SetPlantedBug(name)
	}
	return fmt.Errorf("no planted bug %q (want one of %v)", name, PlantedBugs())
}
