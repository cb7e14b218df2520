//go:build envtest

package controller_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

var _ = Describe("Generated CRDs", func() {
	It("CRDs and RBAC are up to date with operator/api and operator/controller (run `make manifests` if this fails)", func(ctx SpecContext) {
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
		rbac := GinkgoT().TempDir()
		cmd = exec.CommandContext(ctx, "go", "run", "sigs.k8s.io/controller-tools/cmd/controller-gen",
			"rbac:roleName=flotilla-operator", "paths=./operator/controller/...", "output:rbac:artifacts:config="+rbac)
		cmd.Dir = filepath.Join("..", "..")
		b, err = cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "controller-gen rbac: %s", b)
		want, err := os.ReadFile(filepath.Join(rbac, "role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
		Expect(err).NotTo(HaveOccurred(), "role.yaml is not committed; run make manifests")
		Expect(string(got)).To(Equal(string(want)), "operator/config/rbac/role.yaml is stale; run make manifests")
	}, NodeTimeout(10*60e9))
})

var _ = Describe("Samples", func() {
	It("in operator/config/samples are accepted by the API server", func() {
		ns := newNamespace()
		files, err := filepath.Glob(filepath.Join("..", "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(3))
		for _, f := range files {
			b, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(b, &u.Object)).To(Succeed(), f)
			u.SetNamespace(ns)
			Expect(k8s.Create(suiteCtx, u)).To(Succeed(), f)
		}
	})

	It("operator/config/rbac and operator/config/manager install", func() {
		Expect(k8s.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}})).To(Succeed())
		var created []string
		for _, f := range []string{filepath.Join("..", "config", "rbac", "role.yaml"), filepath.Join("..", "config", "manager", "operator.yaml")} {
			b, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, doc := range strings.Split(string(b), "\n---\n") {
				u := &unstructured.Unstructured{}
				doc = strings.TrimPrefix(strings.TrimSpace(doc), "---")
				Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed(), f)
				if len(u.Object) == 0 {
					continue
				}
				Expect(k8s.Create(suiteCtx, u)).To(Succeed(), "%s: %s %s", f, u.GetKind(), u.GetName())
				created = append(created, u.GetKind()+"/"+u.GetName())
			}
		}
		Expect(created).To(Equal([]string{"ClusterRole/flotilla-operator", "ServiceAccount/flotilla-operator",
			"ClusterRoleBinding/flotilla-operator", "Deployment/flotilla-operator"}))
	})
})
