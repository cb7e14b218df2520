//go:build envtest

package controller_test

import (
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("Generated CRDs", func() {
	It("are up to date with operator/api (run `make manifests` if this fails)", func(ctx SpecContext) {
		out := GinkgoT().TempDir()
		cmd := exec.CommandContext(ctx, "go", "run", "sigs.k8s.io/controller-tools/cmd/controller-gen",
			"crd:crdVersions=v1", "paths=./operator/api/...", "output:crd:artifacts:config="+out)
		cmd.Dir = filepath.Join("..", "..")
		b, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "controller-gen: %s", b)
		fresh, err := filepath.Glob(filepath.Join(out, "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		committed, err := filepath.Glob(filepath.Join("..", "config", "crd", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(len(committed)).To(Equal(len(fresh)), "committed CRD files differ in number from controller-gen's output")
		Expect(fresh).To(HaveLen(3))
		for _, f := range fresh {
			want, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			got, err := os.ReadFile(filepath.Join("..", "config", "crd", filepath.Base(f)))
			Expect(err).NotTo(HaveOccurred(), "%s is not committed; run make manifests", filepath.Base(f))
			Expect(string(got)).To(Equal(string(want)), "%s is stale; run make manifests", filepath.Base(f))
		}
	}, NodeTimeout(10*60e9))
})
