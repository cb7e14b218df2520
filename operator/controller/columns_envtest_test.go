//go:build envtest

package controller_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	"github.com/flotilla-fleet/flotilla/core"
	fleet "github.com/flotilla-fleet/flotilla/operator/api/v1alpha1"
	"github.com/flotilla-fleet/flotilla/operator/opcore"
)

// getTable asks the API server for the same server-side table kubectl get
// prints, and renders it the way kubectl does (upper-case headers,
// priority-0 columns, dates as ages).
func getTable(ns, resource string) string {
	hc, err := rest.HTTPClientFor(restCfg)
	Expect(err).NotTo(HaveOccurred())
	url := fmt.Sprintf("%s/apis/fleet.flotilla.dev/v1alpha1/namespaces/%s/%s", strings.TrimSuffix(restCfg.Host, "/"), ns, resource)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	var t metav1.Table
	Expect(json.Unmarshal(body, &t)).To(Succeed())
	var buf bytes.Buffer
	w := tabwriter.NewWriter(&buf, 0, 8, 3, ' ', 0)
	var idx []int
	var hdr []string
	for i, c := range t.ColumnDefinitions {
		if c.Priority == 0 {
			idx = append(idx, i)
			hdr = append(hdr, strings.ToUpper(c.Name))
		}
	}
	fmt.Fprintln(w, strings.Join(hdr, "\t"))
	for _, r := range t.Rows {
		var cells []string
		for _, i := range idx {
			v := r.Cells[i]
			s := fmt.Sprint(v)
			if v == nil {
				s = "<none>"
			}
			if t.ColumnDefinitions[i].Type == "date" {
				if ts, err := time.Parse(time.RFC3339, s); err == nil {
					s = duration.HumanDuration(time.Since(ts))
				}
			}
			cells = append(cells, s)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	_ = w.Flush()
	return buf.String()
}

var _ = Describe("kubectl get columns", func() {
	It("make devices, deployments and agentrollouts readable at a glance", func() {
		ns := newNamespace()
		startOperator(ns, opcore.Config{OfflineAfter: 3 * time.Second})
		mkDevice(ns, "edge-01", map[string]string{"site": "north", "fleet": ns})
		mkDevice(ns, "edge-02", map[string]string{"site": "north", "fleet": ns})
		startFakeAgent("edge-01", "v1.0.0")
		startFakeAgent("edge-02", "v1.0.0")
		d := mkDeployment(ns, "web", map[string]string{"site": "north"}, fleet.RolloutStrategy{})
		Eventually(desiredFor("web")).Should(HaveLen(2))
		gen := get(ns, "web", d).Generation
		putState("edge-01", "web", gen, core.PhaseRunning, "")
		putState("edge-02", "web", gen, core.PhaseRunning, "")
		r := &fleet.AgentRollout{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agent-v1-1"},
			Spec: fleet.AgentRolloutSpec{Version: "v1.1.0",
				Artifact:       fleet.ArtifactRef{Object: "flotilla-agent/v1.1.0", SHA256: sha, Size: 6 << 20},
				TargetSelector: fleet.LabelSelector{MatchLabels: fleet.MatchLabelsOf(map[string]string{"fleet": ns})},
				Rollout:        fleet.RolloutStrategy{Waves: []intstr.IntOrString{intstr.FromInt32(1)}}}}
		Expect(k8s.Create(suiteCtx, r)).To(Succeed())
		Eventually(func() int32 { return get(ns, "agent-v1-1", &fleet.AgentRollout{}).Status.Counts.Succeeded }).
			WithTimeout(20 * time.Second).Should(Equal(int32(2)))
		Eventually(func() int32 { return get(ns, "web", &fleet.Deployment{}).Status.Counts.Succeeded }).Should(Equal(int32(2)))
		Eventually(func() string { return get(ns, "edge-02", &fleet.Device{}).Status.CurrentVersion }).Should(Equal("v1.1.0"))

		var out strings.Builder
		for _, res := range []string{"devices", "deployments", "agentrollouts"} {
			fmt.Fprintf(&out, "$ kubectl get %s.fleet.flotilla.dev\n%s\n", res, getTable(ns, res))
		}
		fmt.Fprint(GinkgoWriter, out.String())
		writeOut("kubectl-get.txt", out.String())
		Expect(out.String()).To(ContainSubstring("ONLINE"))
		Expect(getTable(ns, "devices")).To(MatchRegexp(`edge-01\s+True\s+v1.1.0\s+Committed\s+v1.1.0\s+false`))
		Expect(getTable(ns, "deployments")).To(MatchRegexp(`web\s+web\s+1.0\s+2\s+2\s+0\s+0\s+True\s+False`))
		Expect(getTable(ns, "agentrollouts")).To(MatchRegexp(`agent-v1-1\s+v1.1.0\s+2\s+2\s+0\s+0\s+True\s+False`))
	})
})
