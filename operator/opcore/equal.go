package opcore

import (
	"reflect"
	"time"

	"github.com/flotilla-fleet/flotilla/core"
)

// Equality of statuses. A flush patches an object only when its status
// differs from the last one patched, and it asks that for every dirty
// device: reflect.DeepEqual was a third of the flush. These methods report
// exactly what reflect.DeepEqual reports (nil and empty slices and maps
// differ; times compare by representation, not as instants), so replacing
// it changed no patch. equal_test.go proves the agreement over
// generated values and checks, field by field through reflection, that no
// field (a new one included) is left out.

// Equal reports whether s and o are deeply equal, as reflect.DeepEqual.
func (s *DeviceStatus) Equal(o *DeviceStatus) bool {
	return timeEqual(s.LastSeen, o.LastSeen) && s.Online == o.Online &&
		versionEqual(&s.CurrentVersion, &o.CurrentVersion) &&
		s.Upgrade.Equal(&o.Upgrade) &&
		sliceEqual(s.Deployments, o.Deployments) &&
		sliceEqual(s.Conditions, o.Conditions)
}

// Equal reports whether u and o are deeply equal, as reflect.DeepEqual.
func (u *DeviceUpgrade) Equal(o *DeviceUpgrade) bool {
	return u.Phase == o.Phase && u.Rollout == o.Rollout && u.Attempt == o.Attempt &&
		u.Message == o.Message && u.StopSentAttempt == o.StopSentAttempt &&
		versionEqual(&u.Target, &o.Target)
}

// Equal reports whether s and o are deeply equal, as reflect.DeepEqual.
func (s *DeploymentStatus) Equal(o *DeploymentStatus) bool {
	return s.ObservedGeneration == o.ObservedGeneration && s.Counts == o.Counts &&
		s.LastError == o.LastError &&
		sliceEqual(s.Waves, o.Waves) &&
		sliceEqual(s.Conditions, o.Conditions)
}

// Equal reports whether s and o are deeply equal, as reflect.DeepEqual.
func (s *AgentRolloutStatus) Equal(o *AgentRolloutStatus) bool {
	return s.ObservedGeneration == o.ObservedGeneration && s.Counts == o.Counts &&
		s.LastError == o.LastError &&
		mapEqual(s.ByPhase, o.ByPhase) &&
		sliceEqual(s.Waves, o.Waves) &&
		sliceEqual(s.Conditions, o.Conditions)
}

// timeEqual is reflect.DeepEqual for times: the same wall and monotonic
// readings and deeply equal locations. Times that are == (the location
// pointer too) are; times that are not the same instant are not; between
// them (say the same instant in two *time.Location values with the same
// contents), which flush hardly ever meets, ask reflect.DeepEqual.
func timeEqual(a, b time.Time) bool {
	return a == b || a.Equal(b) && reflect.DeepEqual(a, b)
}

// sliceEqual is reflect.DeepEqual for slices of comparable elements: a nil
// slice differs from an empty one.
func sliceEqual[T comparable](a, b []T) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// mapEqual is reflect.DeepEqual for maps of comparable values: a nil map
// differs from an empty one.
func mapEqual[K, V comparable](a, b map[K]V) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// versionRawField is the index of core.Version's unexported field holding
// the text the version was parsed from (-1 if core.Version has none).
var versionRawField = func() int {
	f, ok := reflect.TypeFor[core.Version]().FieldByName("raw")
	if !ok || f.Type.Kind() != reflect.String || len(f.Index) != 1 {
		return -1
	}
	return f.Index[0]
}()

// versionEqual is reflect.DeepEqual for versions. A parsed version keeps its
// text, a constructed one does not, and String cannot tell "v1.0.0" parsed
// from Version{Major: 1} built, so DeepEqual semantics need that field,
// read through reflection (without an allocation: a and b are pointers).
func versionEqual(a, b *core.Version) bool {
	if a.Major != b.Major || a.Minor != b.Minor || a.Patch != b.Patch || a.Build != b.Build ||
		!sliceEqual(a.Pre, b.Pre) {
		return false
	}
	if versionRawField < 0 {
		return reflect.DeepEqual(a, b)
	}
	return reflect.ValueOf(a).Elem().Field(versionRawField).String() ==
		reflect.ValueOf(b).Elem().Field(versionRawField).String()
}
