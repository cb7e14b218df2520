package opcore

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// refDeadlines is the container/heap queue the typed heap replaced, with
// the original order (time.Time Equal/Before, then name, then kind).
type refDeadlines []deadline

func (h refDeadlines) Len() int { return len(h) }
func (h refDeadlines) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	if h[i].name != h[j].name {
		return h[i].name < h[j].name
	}
	return h[i].kind < h[j].kind
}
func (h refDeadlines) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *refDeadlines) Push(x any)   { *h = append(*h, x.(deadline)) }
func (h *refDeadlines) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// TestDeadlineHeapPopsInTheOriginalOrder pushes and pops random deadlines
// (many equal times and names, wall-clock and monotonic times, times
// centuries apart) into the typed heap and into container/heap, and
// requires the same sequence of (time, name, kind, attempt).
func TestDeadlineHeapPopsInTheOriginalOrder(t *testing.T) {
	mono := time.Now() // carries a monotonic reading
	bases := []struct {
		name string
		t    time.Time
	}{
		{"wall", t0},
		{"monotonic", mono},
		{"zero", time.Time{}},
	}
	for _, base := range bases {
		for seed := uint64(1); seed <= 20; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", base.name, seed), func(t *testing.T) {
				rnd := rand.New(rand.NewPCG(seed, 7))
				var keys timeKeys
				var got deadlineHeap
				var want refDeadlines
				instant := func() time.Time {
					at := base.t.Add(time.Duration(rnd.IntN(20)) * time.Second)
					switch rnd.IntN(12) {
					case 0:
						if base.name != "monotonic" {
							// Beyond a Duration from the epoch: compared as
							// times. (With a monotonic base this would mix
							// clock kinds, for which time.Time's order is
							// not transitive and no heap is well defined.)
							at = at.AddDate(400, 0, 0)
						}
					case 1:
						at = at.In(time.FixedZone("X", 3600))
					}
					return at
				}
				for range 2000 {
					if rnd.IntN(3) > 0 || len(want) == 0 {
						at := instant()
						key, exact := keys.key(at)
						d := deadline{at: at, key: key, exact: exact, kind: deadlineKind(rnd.IntN(2)),
							name: fmt.Sprintf("dev-%d", rnd.IntN(30)), attempt: uint32(rnd.IntN(3))}
						got.push(d)
						heap.Push(&want, d)
						continue
					}
					g, w := got.pop(), heap.Pop(&want).(deadline)
					if !g.at.Equal(w.at) || g.name != w.name || g.kind != w.kind {
						t.Fatalf("popped %v %s %d, container/heap popped %v %s %d", g.at, g.name, g.kind, w.at, w.name, w.kind)
					}
				}
				for len(want) > 0 {
					g, w := got.pop(), heap.Pop(&want).(deadline)
					if !g.at.Equal(w.at) || g.name != w.name || g.kind != w.kind {
						t.Fatalf("popped %v %s %d, container/heap popped %v %s %d", g.at, g.name, g.kind, w.at, w.name, w.kind)
					}
				}
				if got.Len() != 0 {
					t.Fatalf("%d deadlines left", got.Len())
				}
			})
		}
	}
}

func TestTimeKeysOrderAsTimes(t *testing.T) {
	mono := time.Now()
	times := []time.Time{t0, t0.Add(time.Nanosecond), t0.Add(-time.Hour), mono, mono.Add(time.Second),
		mono.Round(0), time.Time{}, t0.AddDate(500, 0, 0), t0.In(time.FixedZone("X", -7200))}
	for _, first := range times {
		var k timeKeys
		k.key(first)
		for _, a := range times {
			for _, b := range times {
				ka, ea := k.key(a)
				kb, eb := k.key(b)
				if !ea || !eb {
					continue
				}
				if want, got := a.Compare(b), cmpInt64(ka, kb); want != got {
					t.Fatalf("epoch %v: keys of %v and %v compare %d, the times %d", first, a, b, got, want)
				}
			}
		}
	}
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestNameHeapPopsSorted(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var h nameHeap
	var all []string
	in := map[string]bool{}
	for range 5000 {
		if rnd.IntN(3) > 0 || h.Len() == 0 {
			n := fmt.Sprintf("dev-%04d", rnd.IntN(3000))
			if !in[n] {
				in[n] = true
				h.push(n)
				all = append(all, n)
			}
			continue
		}
		slices.Sort(all)
		if got := h.pop(); got != all[0] {
			t.Fatalf("popped %s, want %s", got, all[0])
		}
		delete(in, all[0])
		all = all[1:]
	}
}
