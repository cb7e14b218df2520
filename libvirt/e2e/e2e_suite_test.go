//go:build e2e

package e2e

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "libvirt e2e")
}

var _ = BeforeSuite(func(ctx context.Context) {
	E = setupEnv(ctx)
}, NodeTimeout(15*60e9))
