//go:build simreal

package simreal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/flotilla-fleet/flotilla/core"
	"github.com/flotilla-fleet/flotilla/internal/agenttest"
	"github.com/flotilla-fleet/flotilla/sim/scenario"
)

func TestSimReal(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "sim versus real")
}

// The agent versions the scenarios name; built once per suite.
var versions = []string{"v1.0.0", "v2.0.0"}

var (
	root   string
	builds = map[string]agenttest.Build{}
)

var _ = BeforeSuite(func(_ SpecContext) {
	var err error
	root, err = os.MkdirTemp("", "flotilla-simreal-")
	Expect(err).NotTo(HaveOccurred())
	if os.Getenv("SIMREAL_KEEP") == "" {
		DeferCleanup(os.RemoveAll, root)
	} else {
		fmt.Fprintf(GinkgoWriter, "keeping %s\n", root)
	}
	// Built into a cache dir when given (make test-simreal), so a second
	// run does not build again.
	bdir := os.Getenv("SIMREAL_BUILD_DIR")
	if bdir == "" {
		bdir = filepath.Join(root, "builds")
	}
	By("building flotilla-agent " + strings.Join(versions, ", "))
	for _, v := range versions {
		b, err := agenttest.BuildAgent(bdir, v, "")
		Expect(err).NotTo(HaveOccurred())
		builds[v] = b
	}
}, NodeTimeout(10*time.Minute))

// scenarioFiles are the suite's scenarios; SIMREAL_SCENARIOS (a glob)
// runs others, e.g. testdata/findings/*.yaml.
func scenarioFiles() []string {
	glob := os.Getenv("SIMREAL_SCENARIOS")
	if glob == "" {
		glob = "testdata/*.yaml"
	}
	files, _ := filepath.Glob(glob)
	return files
}

var _ = Describe("scenarios in the simulator and for real", func() {
	for _, file := range scenarioFiles() {
		It(filepath.Base(file), func(ctx SpecContext) {
			sc, err := scenario.Load(file)
			Expect(err).NotTo(HaveOccurred())

			By("running " + sc.Name + " in the simulator")
			simO, res, err := RunSim(sc)
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Passed).To(BeTrue(), "the simulator run itself fails: %+v %v", res.Expectations, res.Violations)

			By("running " + sc.Name + " for real")
			var realO *Outcome
			start := time.Now()
			// A real run whose phase fault landed after its phase (real agents
			// move on in milliseconds) did not test the scenario: run it again.
			for try := 1; ; try++ {
				start = time.Now()
				realO, err = RunReal(ctx, Env{TB: GinkgoT(), Cleanup: func(f func()) { DeferCleanup(f) },
					Root: filepath.Join(root, fmt.Sprintf("try%d", try)), Builds: builds, Settle: 60 * time.Second,
					Log: GinkgoWriter}, sc)
				Expect(err).NotTo(HaveOccurred())
				if len(realO.Missed) == 0 {
					break
				}
				Expect(try).To(BeNumerically("<", 4), "every real run missed a phase fault: %v", realO.Missed)
				fmt.Fprintf(GinkgoWriter, "real run %d missed its phase: %v; again\n", try, realO.Missed)
			}
			AddReportEntry(sc.Name, fmt.Sprintf("real run %.1fs (%s)\n%sobserved: %v", time.Since(start).Seconds(),
				strings.Join(append(simO.Notes, realO.Notes...), "; "), Table(simO, realO), realO.Observed))

			By("the observer saw the rollout it judged")
			committed, started := 0, 0
			for _, d := range realO.Devices {
				if d.Phase == core.UpgradeCommitted {
					committed++
				}
				if d.Attempt > 0 {
					started++
				}
			}
			obs := realO.Observed
			Expect(obs["heartbeat"]).To(BeNumerically(">", 0), "observed: %v", obs)
			Expect(obs["marker"]).To(BeNumerically(">=", started), "observed: %v", obs)
			Expect(obs["upgrade-stop"]).To(BeNumerically(">=", committed), "observed: %v", obs)
			if committed > 0 { // a reply sent as the server goes down is lost to the observer too
				Expect(obs["upgrade-stop reply"]).To(BeNumerically(">", 0), "observed: %v", obs)
			}
			Expect(obs["agent exit"]).To(BeNumerically(">=", committed), "observed: %v", obs)

			diff := Diff(simO, realO)
			Expect(diff).To(BeEmpty(), "sim and real disagree:\n%s\n%s\n%s", strings.Join(diff, "\n"),
				Table(simO, realO), strings.Join(realO.Notes, "\n"))
		}, SpecTimeout(4*time.Minute))
	}
})
