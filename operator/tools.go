//go:build tools

// Package operator pins controller-gen (run as `go run
// sigs.k8s.io/controller-tools/cmd/controller-gen`, see mk/operator.mk) so
// that go.mod and go.sum keep every module it needs.
package operator

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
