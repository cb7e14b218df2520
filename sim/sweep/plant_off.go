//go:build !plantedbugs

package sweep

import "errors"

// PlantedAvailable reports whether this binary was built with the
// plantedbugs tag (Plant works).
const PlantedAvailable = false

// PlantedBugs lists every planted bug: none in a production build.
func PlantedBugs() []string { return nil }

// Plant fails in production builds: planted bugs are compiled out.
func Plant(name string) error {
	if name == "" {
		return nil
	}
	return errors.New("planted bugs are compiled out of this binary: build it with -tags plantedbugs")
}
