package versions

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Policy says what a registry does with a state of an older version.
type Policy uint8

const (
	// PolicyLazy (the default) migrates an older state to the newest version
	// on its next Apply, which returns a state of the newest version.
	PolicyLazy Policy = iota
	// PolicyPinned runs an older state on its own version until it ends, so
	// a process never changes version midway. A version whose definition
	// was deleted cannot run: its states migrate to the nearest newer
	// version that the registry has a definition for, and stay there.
	PolicyPinned
	// PolicyRefuse returns an *OutdatedError for an older state; the caller
	// migrates it explicitly with Registry.Migrate (for example in a batch
	// job) or keeps an older build running for it.
	PolicyRefuse
)

var policyNames = [...]string{"lazy", "pinned", "refuse"}

func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// Options configures a registry. The zero value is ready to use.
type Options struct {
	// Policy for states of older versions. Zero means PolicyLazy.
	Policy Policy
}

// Registry holds the versions of one flow, e.g. deploy/v1, deploy/v2 and
// deploy/v3, with the migrations between consecutive versions. It applies
// a state with the version the state names, according to its Policy, and
// moves states forward to the newest version. It is immutable and safe for
// concurrent use.
type Registry[S any] struct {
	latest *stepflow.Flow[S]
	policy Policy
	flows  map[string]*stepflow.Flow[S]
	// plans holds the compiled migration out of each older version.
	plans map[string]*plan[S]
	// order lists every known version, oldest first.
	order  []string
	shapes map[string]*shape
}

// New builds a registry from the flows whose definitions the program still
// has (the newest last: it runs new processes) and the migrations between
// consecutive versions, and checks everything at once: the chain of
// migrations from every older version to the newest, every rule against
// the structures of its two versions, and every position of every older
// version (the static check). A version whose definition was deleted is
// known by the structure recorded with Migration.Source.
//
// The error joins every problem found: *NoTargetError for positions
// without a target, *MigrationError for the rest. Call New when the program
// starts so that an incompatible deploy fails there.
//
// With PolicyPinned, an older version whose definition is given needs no
// migration; every other older version does.
func New[S any](flows []*stepflow.Flow[S], opts *Options, migrations ...*Migration[S]) (*Registry[S], error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if len(flows) == 0 || flows[len(flows)-1] == nil {
		return nil, &MigrationError{Reason: "a registry needs at least one flow, the newest last"}
	}
	r := &Registry[S]{
		latest: flows[len(flows)-1], policy: o.Policy,
		flows: map[string]*stepflow.Flow[S]{}, plans: map[string]*plan[S]{}, shapes: map[string]*shape{},
	}
	var probs []error
	bad := func(m *Migration[S], format string, args ...any) {
		e := &MigrationError{Reason: fmt.Sprintf(format, args...)}
		if m != nil {
			e.From, e.To = m.from, m.to
		}
		probs = append(probs, e)
	}
	if o.Policy > PolicyRefuse {
		bad(nil, "unknown policy %d", uint8(o.Policy))
	}
	for _, f := range flows {
		switch {
		case f == nil:
			bad(nil, "nil flow")
		case r.flows[f.Version()] != nil:
			bad(nil, "version %q given twice", f.Version())
		default:
			r.flows[f.Version()] = f
			r.shapes[f.Version()] = newShape(f.Version(), f.Nodes())
		}
	}
	next := map[string]*Migration[S]{}
	for _, m := range migrations {
		switch {
		case m == nil:
			bad(nil, "nil migration")
			continue
		case m.from == r.latest.Version():
			bad(m, "migrates out of the newest version %q", m.from)
			continue
		case next[m.from] != nil:
			bad(m, "a second migration out of %q", m.from)
			continue
		}
		next[m.from] = m
		if m.source == nil {
			continue
		}
		if f := r.flows[m.from]; f != nil {
			if got, want := Fingerprint(m.source), f.Fingerprint(); got != want {
				bad(m, "the structure recorded with Source (fingerprint %s) differs from the definition of %s (fingerprint %s)", got, m.from, want)
			}
			continue
		}
		r.shapes[m.from] = newShape(m.from, m.source)
	}
	// Every older version must reach the newest one, one migration at a time.
	dist := map[string]int{r.latest.Version(): 0}
	var reach func(v string, seen map[string]bool) (int, bool)
	reach = func(v string, seen map[string]bool) (int, bool) {
		if d, ok := dist[v]; ok {
			return d, true
		}
		m := next[v]
		if m == nil || seen[v] {
			return 0, false
		}
		seen[v] = true
		d, ok := reach(m.to, seen)
		if ok {
			dist[v] = d + 1
		}
		return d + 1, ok
	}
	for _, f := range flows {
		if f == nil {
			continue
		}
		v := f.Version()
		if _, ok := reach(v, map[string]bool{}); !ok && next[v] == nil && o.Policy != PolicyPinned {
			bad(nil, "no migration out of %q; add one to %s, or use PolicyPinned to keep it on its own version", v, r.latest.Version())
		}
	}
	for _, m := range migrations {
		if m == nil || next[m.from] != m {
			continue
		}
		if _, ok := reach(m.from, map[string]bool{}); !ok {
			bad(m, "the chain from %q does not reach the newest version %q", m.from, r.latest.Version())
			continue
		}
		src, dst := r.shapes[m.from], r.shapes[m.to]
		if src == nil {
			bad(m, "the structure of %s is unknown: keep its flow in the registry or record it with Source", m.from)
			continue
		}
		if dst == nil {
			bad(m, "the structure of %s is unknown: keep its flow in the registry or record it with Source on the migration out of it", m.to)
			continue
		}
		p, err := compile(m, src, dst)
		if err != nil {
			probs = append(probs, problems(err)...)
			continue
		}
		probs = append(probs, problems(p.check())...)
		r.plans[m.from] = p
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	for v := range r.shapes {
		r.order = append(r.order, v)
	}
	// Oldest first: the longest chain to the newest version first; versions
	// kept pinned without a migration come before all others.
	slices.SortFunc(r.order, func(a, b string) int {
		da, oka := dist[a]
		db, okb := dist[b]
		switch {
		case oka != okb:
			if !oka {
				return -1
			}
			return 1
		case da != db:
			return db - da
		}
		if a < b {
			return -1
		}
		return 1
	})
	return r, nil
}

// Latest returns the newest flow, the one that starts new processes.
func (r *Registry[S]) Latest() *stepflow.Flow[S] { return r.latest }

// Flow returns the definition of a version, if the registry has it.
func (r *Registry[S]) Flow(version string) (*stepflow.Flow[S], bool) {
	f, ok := r.flows[version]
	return f, ok
}

// Versions lists every version the registry knows (with a definition or a
// recorded structure), oldest first.
func (r *Registry[S]) Versions() []string { return slices.Clone(r.order) }

// Policy returns the registry's policy for older states.
func (r *Registry[S]) Policy() Policy { return r.policy }

// Start returns the initial state of a new process, on the newest version.
func (r *Registry[S]) Start(data S) stepflow.State[S] { return r.latest.Start(data) }

// Apply advances a state by one step, choosing the version by the state's
// Version and the registry's Policy:
//   - the newest version, or an older one under PolicyPinned whose
//     definition the registry has: that flow's Apply;
//   - an older version under PolicyLazy: the state is migrated to the
//     newest version, then advanced; the returned state is of the newest
//     version even when Apply had nothing to do (a wait not yet due), so
//     persist it;
//   - an older version under PolicyRefuse: st and an *OutdatedError;
//   - a version the registry does not know: st and an *UnknownVersionError.
//
// A terminal state is returned unchanged, whatever its version. Under
// PolicyLazy, a state holding the recorded intent of an at-most-once step
// (State.Intent) runs that step on its own version first when the registry
// has its definition, so that the authorization given with
// stepflow.WithIntentSaved still matches; the next Apply migrates it. When the
// migration fails, Apply returns st and the migration's error (every
// position without a target is a *NoTargetError): a process is never reset
// silently. Otherwise the results are those of stepflow.Flow.Apply.
func (r *Registry[S]) Apply(ctx context.Context, st stepflow.State[S]) (stepflow.State[S], error) {
	if st.Version != r.latest.Version() && st.Terminal() {
		if _, ok := r.shapes[st.Version]; !ok {
			return st, r.unknown(st.Version)
		}
		return st, nil
	}
	f, moved := r.flows[st.Version], st
	if f == nil || st.Intent == "" || st.Status == stepflow.NeedsAttention || r.policy != PolicyLazy {
		var err error
		if f, moved, err = r.resolve(st); err != nil {
			return st, err
		}
	}
	// Otherwise the caller authorized the at-most-once step for this very
	// state (stepflow.WithIntentSaved), and a migrated copy would not match
	// the authorization: the step runs on its own version first.
	next, err := f.Apply(ctx, moved)
	var se *stepflow.StepError
	if err != nil && !errors.As(err, &se) {
		// Apply returned its input unchanged; so do we.
		return st, err
	}
	return next, err
}

// resolve returns the flow that handles st under the policy, and st
// migrated to that flow's version if needed.
func (r *Registry[S]) resolve(st stepflow.State[S]) (*stepflow.Flow[S], stepflow.State[S], error) {
	if st.Version == r.latest.Version() {
		return r.latest, st, nil
	}
	if _, ok := r.shapes[st.Version]; !ok {
		return nil, st, r.unknown(st.Version)
	}
	switch r.policy {
	case PolicyRefuse:
		return nil, st, &OutdatedError{Version: st.Version, Latest: r.latest.Version()}
	case PolicyPinned:
		if f := r.flows[st.Version]; f != nil {
			return f, st, nil
		}
	}
	moved, err := r.migrate(st, r.policy == PolicyPinned)
	if err != nil {
		return nil, st, err
	}
	f := r.flows[moved.Version]
	if f == nil {
		return nil, st, r.unknown(moved.Version)
	}
	return f, moved, nil
}

// Signal delivers a signal to a process (see stepflow.Flow.Signal),
// choosing the version as Apply does: under PolicyLazy an older state is
// migrated first. On error it returns st unchanged.
func (r *Registry[S]) Signal(st stepflow.State[S], name string, payload []byte) (stepflow.State[S], error) {
	f, moved, err := r.resolve(st)
	if err != nil {
		return st, err
	}
	next, err := f.Signal(moved, name, payload)
	if err != nil {
		return st, err
	}
	return next, nil
}

// Cancel cancels a process (see stepflow.Flow.Cancel), choosing the
// version as Apply does. On error it returns st unchanged.
func (r *Registry[S]) Cancel(st stepflow.State[S], reason string) (stepflow.State[S], error) {
	f, moved, err := r.resolve(st)
	if err != nil {
		return st, err
	}
	next, err := f.Cancel(moved, reason)
	if err != nil {
		return st, err
	}
	return next, nil
}

// Redrive resumes a failed process (see stepflow.Flow.Redrive), choosing
// the version as Apply does: under PolicyLazy a failed process of an older
// version is redriven on the newest one. On error it returns st unchanged.
func (r *Registry[S]) Redrive(st stepflow.State[S]) (stepflow.State[S], error) {
	f, moved, err := r.resolve(st)
	if err != nil {
		return st, err
	}
	next, err := f.Redrive(moved)
	if err != nil {
		return st, err
	}
	return next, nil
}

// Describe explains a state with the definition of its own version when
// the registry has it, otherwise with the nearest newer definition (the
// state is migrated for the description only).
func (r *Registry[S]) Describe(st stepflow.State[S]) (stepflow.Description, error) {
	if f := r.flows[st.Version]; f != nil {
		return f.Describe(st)
	}
	if _, ok := r.shapes[st.Version]; !ok {
		return stepflow.Description{}, r.unknown(st.Version)
	}
	moved, err := r.migrate(st, true)
	if err != nil {
		return stepflow.Description{}, err
	}
	f := r.flows[moved.Version]
	if f == nil {
		return stepflow.Description{}, r.unknown(moved.Version)
	}
	return f.Describe(moved)
}

// Migrate moves a state of any known version to the newest version through
// the chain of migrations, and validates the result against the newest
// flow. A state of the newest version is returned as it is. On error it
// returns st unchanged; every position without a target is reported as a
// *NoTargetError, joined with errors.Join.
//
// Terminal states migrate too (their frames map like any other), so that a
// failed process can be redriven on the newest version.
func (r *Registry[S]) Migrate(st stepflow.State[S]) (stepflow.State[S], error) {
	if _, ok := r.shapes[st.Version]; !ok {
		return st, r.unknown(st.Version)
	}
	return r.migrate(st, false)
}

// migrate follows the chain; with nearest it stops at the first version
// that has a definition.
func (r *Registry[S]) migrate(st stepflow.State[S], nearest bool) (stepflow.State[S], error) {
	cur := st
	for cur.Version != r.latest.Version() {
		if nearest && r.flows[cur.Version] != nil {
			break
		}
		p := r.plans[cur.Version]
		if p == nil {
			// Every version with a known structure has a plan, except
			// the pinned ones that have no migration out.
			return st, fmt.Errorf("%w %q: it is pinned; the newest version is %q", ErrNoMigration, cur.Version, r.latest.Version())
		}
		next, err := p.migrate(cur)
		if err != nil {
			return st, err
		}
		cur = next
	}
	if f := r.flows[cur.Version]; f != nil {
		if err := f.Validate(cur); err != nil {
			return st, err
		}
	}
	return cur, nil
}

// Validate checks a state against the structure of the version it names:
// its flow's Validate when the registry has the definition, otherwise the
// same check against the recorded structure.
func (r *Registry[S]) Validate(st stepflow.State[S]) error {
	if f := r.flows[st.Version]; f != nil {
		return f.Validate(st)
	}
	s, ok := r.shapes[st.Version]
	if !ok {
		return r.unknown(st.Version)
	}
	if !st.Status.Valid() {
		return &stepflow.StateError{Reason: fmt.Sprintf("unknown status %d", uint8(st.Status))}
	}
	return s.validate(&st.Root)
}

func (r *Registry[S]) unknown(v string) error {
	known := r.order
	if known == nil {
		known = []string{r.latest.Version()}
	}
	return &UnknownVersionError{Version: v, Known: slices.Clone(known)}
}
