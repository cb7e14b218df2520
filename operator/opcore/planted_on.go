//go:build plantedbugs

package opcore

import (
	"fmt"
	"slices"
)

// plantedBuild is true only with the plantedbugs build tag.
const plantedBuild = true

// plantedBug is the active planted bug ("" = none). It is set before any
// simulation starts and only read while they run.
var plantedBug string

func planted(name string) bool { return plantedBug == name }

// SetPlantedBug switches on one planted bug by name ("" switches all off).
// Only in builds with the plantedbugs tag.
func SetPlantedBug(name string) error {
	if name != "" && !slices.Contains(PlantedBugs, name) {
		return fmt.Errorf("opcore: no planted bug %q", name)
	}
	plantedBug = name
	return nil
}
