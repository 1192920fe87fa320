package versions

import (
	"slices"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// TB is the part of testing.TB that the pin helpers use.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Fingerprinted is a flow (any *stepflow.Flow) as the pin helpers see it.
type Fingerprinted interface {
	Version() string
	Fingerprint() string
}

// Pin fails the test when the flow's fingerprint is not want. Pin every
// released version in a test: once processes run on a version, editing its
// definition in place changes what their states mean, and the test fails
// with a message saying to add a new version with a migration instead.
// It returns whether the fingerprint matched.
func Pin(t TB, f Fingerprinted, want string) bool {
	t.Helper()
	got := f.Fingerprint()
	if got == want {
		return true
	}
	t.Errorf("%s", pinMessage(f.Version(), got, want))
	return false
}

func pinMessage(version, got, want string) string {
	return "flow " + version + " has fingerprint " + got + " but " + want + " is pinned: " +
		"the structure of a released version changed. Restore it and add the change as a new version " +
		"with a migration; if " + version + " was never released, update the pin to " + got
}

// Fingerprints returns the fingerprint of every version the registry knows,
// by version: of the definition when the registry has it, otherwise of the
// recorded structure. Print it once to write the pins of Registry.Pin.
func (r *Registry[S]) Fingerprints() map[string]string {
	out := make(map[string]string, len(r.shapes))
	for v, s := range r.shapes {
		if f := r.flows[v]; f != nil {
			out[v] = f.Fingerprint()
		} else {
			out[v] = Fingerprint(s.nodes)
		}
	}
	return out
}

// Pin checks, in one call, the fingerprint of every version the registry
// knows against pins (version to fingerprint). A version without a pin
// fails the test too, so a new release cannot go out unpinned, and so does
// a pin naming a version the registry does not know. A version known only
// by its recorded structure is checked through Fingerprint of that
// structure, which keeps the record honest after the code is deleted.
// It returns whether everything matched.
func (r *Registry[S]) Pin(t TB, pins map[string]string) bool {
	t.Helper()
	ok := true
	got := r.Fingerprints()
	for _, v := range r.order {
		want, pinned := pins[v]
		switch {
		case !pinned:
			t.Errorf("flow %s (fingerprint %s) has no pin: add %q: %q", v, got[v], v, got[v])
			ok = false
		case got[v] != want:
			t.Errorf("%s", pinMessage(v, got[v], want))
			ok = false
		}
	}
	var extra []string
	for v := range pins {
		if _, known := got[v]; !known {
			extra = append(extra, v)
		}
	}
	slices.Sort(extra)
	for _, v := range extra {
		t.Errorf("pin for %s, a version the registry does not know", v)
		ok = false
	}
	return ok
}

var _ Fingerprinted = (*stepflow.Flow[stepflow.None])(nil)
