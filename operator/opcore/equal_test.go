package opcore

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"
)

// The Equal methods must report what reflect.DeepEqual reports: flush skips
// a patch on their word. These tests fill values through reflection, so a
// field added to a status type (or to core.Version) is covered without
// editing them, and fail if Equal does not look at it.

var timeType = reflect.TypeFor[time.Time]()

// settable returns v, made settable even where it is an unexported field
// (core.Version keeps the text it was parsed from in one).
func settable(v reflect.Value) reflect.Value {
	if v.CanSet() {
		return v
	}
	return reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem()
}

// filler chooses leaf values. With rnd nil it fills everything (slices and
// maps with two elements) with values derived from seed; with rnd set it
// draws from a small pool (nil, empty, short) so that generated pairs are
// often deeply equal and often differ in one place.
type filler struct {
	rnd  *rand.Rand
	seed int
}

func (f *filler) pick(n int) int {
	if f.rnd == nil {
		return f.seed % n
	}
	return f.rnd.IntN(n)
}

func (f *filler) fill(v reflect.Value) {
	v = settable(v)
	switch {
	case v.Type() == timeType:
		ts := []time.Time{t0.Add(time.Duration(f.seed)), {}, t0, t0.In(time.FixedZone("X", 3600))}
		if f.rnd == nil {
			v.Set(reflect.ValueOf(ts[0]))
		} else {
			v.Set(reflect.ValueOf(ts[f.rnd.IntN(len(ts))]))
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString([]string{"a", "", "b"}[f.pick(3)])
	case reflect.Bool:
		v.SetBool(f.pick(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(1 + f.pick(2)))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(1 + f.pick(2)))
	case reflect.Struct:
		for i := range v.NumField() {
			f.fill(v.Field(i))
		}
	case reflect.Pointer:
		if f.rnd != nil && f.rnd.IntN(3) == 0 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem())
		v.Set(p)
	case reflect.Slice:
		n := 2
		if f.rnd != nil {
			n = f.rnd.IntN(4) - 1 // -1: nil
		}
		if n < 0 {
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		n := 2
		if f.rnd != nil {
			n = f.rnd.IntN(4) - 1
		}
		if n < 0 {
			v.SetZero()
			return
		}
		m := reflect.MakeMap(v.Type())
		for range n {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			f.fill(k)
			f.fill(e)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("equal_test: no filler for " + v.Type().String())
	}
}

// mutate changes the n-th place of v (a leaf, or the shape of a slice or
// map: nil instead of filled) and reports whether v has an n-th place; the
// places are counted in a fixed order.
func mutate(v reflect.Value, n *int) bool {
	v = settable(v)
	leaf := func(change func()) bool {
		if *n == 0 {
			change()
			return true
		}
		*n--
		return false
	}
	if v.Type() == timeType {
		return leaf(func() { v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(1))) })
	}
	switch v.Kind() {
	case reflect.String:
		return leaf(func() { v.SetString(v.String() + "'") })
	case reflect.Bool:
		return leaf(func() { v.SetBool(!v.Bool()) })
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return leaf(func() { v.SetInt(v.Int() + 1) })
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return leaf(func() { v.SetUint(v.Uint() + 1) })
	case reflect.Struct:
		for i := range v.NumField() {
			if mutate(v.Field(i), n) {
				return true
			}
		}
		return false
	case reflect.Pointer:
		if leaf(func() {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			} else {
				v.SetZero()
			}
		}) {
			return true
		}
		return !v.IsNil() && mutate(v.Elem(), n)
	case reflect.Slice:
		nilness := func() {
			if v.IsNil() {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			} else {
				v.SetZero()
			}
		}
		length := func() {
			if v.Len() > 0 {
				v.Set(v.Slice(0, v.Len()-1))
			} else {
				v.Set(reflect.Append(v, reflect.New(v.Type().Elem()).Elem()))
			}
		}
		if leaf(nilness) || leaf(length) {
			return true
		}
		for i := range v.Len() {
			if mutate(v.Index(i), n) {
				return true
			}
		}
		return false
	case reflect.Map:
		if leaf(func() {
			if v.IsNil() {
				v.Set(reflect.MakeMap(v.Type()))
			} else {
				v.SetZero()
			}
		}) {
			return true
		}
		for _, k := range v.MapKeys() {
			if leaf(func() { v.SetMapIndex(k, reflect.Value{}) }) {
				return true
			}
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			if mutate(e, n) {
				v.SetMapIndex(k, e)
				return true
			}
		}
		return false
	}
	panic("equal_test: cannot mutate " + v.Type().String())
}

// equalCase checks one status type's Equal.
type equalCase struct {
	name  string
	typ   reflect.Type
	equal func(a, b any) bool
}

var equalCases = []equalCase{
	{"DeviceStatus", reflect.TypeFor[DeviceStatus](), func(a, b any) bool {
		return a.(*DeviceStatus).Equal(b.(*DeviceStatus))
	}},
	{"DeploymentStatus", reflect.TypeFor[DeploymentStatus](), func(a, b any) bool {
		return a.(*DeploymentStatus).Equal(b.(*DeploymentStatus))
	}},
	{"AgentRolloutStatus", reflect.TypeFor[AgentRolloutStatus](), func(a, b any) bool {
		return a.(*AgentRolloutStatus).Equal(b.(*AgentRolloutStatus))
	}},
}

// TestEqualNoticesEveryField fills a value completely, then changes one
// place at a time in a second, identically filled one: Equal must see
// every difference (DeepEqual does, as a check of the test).
func TestEqualNoticesEveryField(t *testing.T) {
	for _, c := range equalCases {
		t.Run(c.name, func(t *testing.T) {
			full := func() reflect.Value {
				p := reflect.New(c.typ)
				(&filler{seed: 0}).fill(p.Elem())
				return p
			}
			a := full()
			if !c.equal(a.Interface(), full().Interface()) {
				t.Fatal("two identically filled values are not Equal")
			}
			places := 0
			for ; ; places++ {
				b := full()
				n := places
				if !mutate(b.Elem(), &n) {
					break
				}
				if reflect.DeepEqual(a.Interface(), b.Interface()) {
					t.Fatalf("place %d: the mutation changed nothing", places)
				}
				if c.equal(a.Interface(), b.Interface()) || c.equal(b.Interface(), a.Interface()) {
					t.Fatalf("place %d: Equal misses a difference: %+v vs %+v", places, a.Elem(), b.Elem())
				}
			}
			if places < 20 {
				t.Fatalf("only %d places: the walk is broken", places)
			}
		})
	}
}

// TestEqualAgreesWithDeepEqual compares generated pairs, alike more often
// than not.
func TestEqualAgreesWithDeepEqual(t *testing.T) {
	for _, c := range equalCases {
		t.Run(c.name, func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(11, 13))
			same := 0
			for i := range 20000 {
				// Both values from the same seed, then b changed in zero to
				// two places drawn at random, or drawn afresh.
				seed := rnd.Uint64()
				gen := func() reflect.Value {
					p := reflect.New(c.typ)
					(&filler{rnd: rand.New(rand.NewPCG(seed, 1))}).fill(p.Elem())
					return p
				}
				a, b := gen(), gen()
				switch rnd.IntN(4) {
				case 0:
				case 1, 2:
					for range 1 + rnd.IntN(2) {
						n := rnd.IntN(40)
						mutate(b.Elem(), &n)
					}
				case 3:
					b = reflect.New(c.typ)
					(&filler{rnd: rnd}).fill(b.Elem())
				}
				want := reflect.DeepEqual(a.Interface(), b.Interface())
				if want {
					same++
				}
				if got := c.equal(a.Interface(), b.Interface()); got != want {
					t.Fatalf("pair %d: Equal %v, DeepEqual %v:\n%+v\n%+v", i, got, want, a.Elem(), b.Elem())
				}
			}
			if same < 2000 || same > 18000 {
				t.Fatalf("%d of 20000 pairs deeply equal: the generator is not exercising both answers", same)
			}
		})
	}
}

// FuzzStatusEqual: for values generated from the fuzzed seed, Equal agrees
// with reflect.DeepEqual (a pair from one seed, one of them changed in the
// place the fuzzer picks). Seeds under testdata/fuzz run with plain go test.
func FuzzStatusEqual(f *testing.F) {
	f.Fuzz(func(t *testing.T, seed uint64, place uint8) {
		for _, c := range equalCases {
			gen := func() reflect.Value {
				p := reflect.New(c.typ)
				(&filler{rnd: rand.New(rand.NewPCG(seed, 1))}).fill(p.Elem())
				return p
			}
			a, b := gen(), gen()
			n := int(place)
			mutate(b.Elem(), &n) // no change when place is beyond b's places
			if got, want := c.equal(a.Interface(), b.Interface()), reflect.DeepEqual(a.Interface(), b.Interface()); got != want {
				t.Fatalf("%s: Equal %v, DeepEqual %v:\n%+v\n%+v", c.name, got, want, a.Elem(), b.Elem())
			}
		}
	})
}
