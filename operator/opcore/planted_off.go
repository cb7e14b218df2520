//go:build !plantedbugs

package opcore

// plantedBuild is false in production builds: planted-bug branches are
// compiled out.
const plantedBuild = false

func planted(string) bool { return false }
