package runner

import (
	"context"
	"slices"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// engine is what Processes needs of what it runs: a single flow, or a
// versions.Registry that runs several versions of one flow and migrates
// states between them.
type engine[S any] interface {
	// name of the flow (the part of its versions before '/').
	flowName() string
	// latest is the version new processes start at.
	latest() string
	// claims lists the versions this engine applies; the runner claims
	// only processes of these versions.
	claims() []string
	start(data S) stepflow.State[S]
	apply(ctx context.Context, st stepflow.State[S]) (stepflow.State[S], error)
	signal(st stepflow.State[S], name string, payload []byte) (stepflow.State[S], error)
	cancel(st stepflow.State[S], reason string) (stepflow.State[S], error)
	redrive(st stepflow.State[S]) (stepflow.State[S], error)
	resolve(st stepflow.State[S], how stepflow.Resolution) (stepflow.State[S], error)
	describe(st stepflow.State[S]) (stepflow.Description, error)
	validate(st stepflow.State[S]) error
	// migrate brings st to the latest version (st itself when it is).
	migrate(st stepflow.State[S]) (stepflow.State[S], error)
	// flow returns the definition of a version, when the engine has it.
	flow(version string) (*stepflow.Flow[S], bool)
}

// oneFlow is the engine of a single flow version.
type oneFlow[S any] struct{ f *stepflow.Flow[S] }

func (e oneFlow[S]) flowName() string                    { return flowName(e.f.Version()) }
func (e oneFlow[S]) latest() string                      { return e.f.Version() }
func (e oneFlow[S]) claims() []string                    { return []string{e.f.Version()} }
func (e oneFlow[S]) start(data S) stepflow.State[S]      { return e.f.Start(data) }
func (e oneFlow[S]) validate(st stepflow.State[S]) error { return e.f.Validate(st) }
func (e oneFlow[S]) apply(ctx context.Context, st stepflow.State[S]) (stepflow.State[S], error) {
	return e.f.Apply(ctx, st)
}
func (e oneFlow[S]) signal(st stepflow.State[S], name string, payload []byte) (stepflow.State[S], error) {
	return e.f.Signal(st, name, payload)
}
func (e oneFlow[S]) cancel(st stepflow.State[S], reason string) (stepflow.State[S], error) {
	return e.f.Cancel(st, reason)
}
func (e oneFlow[S]) redrive(st stepflow.State[S]) (stepflow.State[S], error) { return e.f.Redrive(st) }
func (e oneFlow[S]) resolve(st stepflow.State[S], how stepflow.Resolution) (stepflow.State[S], error) {
	return e.f.Resolve(st, how)
}
func (e oneFlow[S]) describe(st stepflow.State[S]) (stepflow.Description, error) {
	return e.f.Describe(st)
}
func (e oneFlow[S]) migrate(st stepflow.State[S]) (stepflow.State[S], error) {
	if err := e.f.Validate(st); err != nil {
		return st, err
	}
	return st, nil
}
func (e oneFlow[S]) flow(version string) (*stepflow.Flow[S], bool) {
	return e.f, version == e.f.Version()
}

// registry is the engine of a versions.Registry.
type registry[S any] struct{ r *versions.Registry[S] }

func (e registry[S]) flowName() string { return flowName(e.r.Latest().Version()) }
func (e registry[S]) latest() string   { return e.r.Latest().Version() }

// claims are the versions the registry can apply under its policy: every
// version it knows, except under PolicyRefuse, which applies the latest
// only (older processes wait for a runner that still runs their version).
func (e registry[S]) claims() []string {
	if e.r.Policy() == versions.PolicyRefuse {
		return []string{e.latest()}
	}
	return slices.Clone(e.r.Versions())
}
func (e registry[S]) start(data S) stepflow.State[S]      { return e.r.Start(data) }
func (e registry[S]) validate(st stepflow.State[S]) error { return e.r.Validate(st) }
func (e registry[S]) apply(ctx context.Context, st stepflow.State[S]) (stepflow.State[S], error) {
	return e.r.Apply(ctx, st)
}
func (e registry[S]) signal(st stepflow.State[S], name string, payload []byte) (stepflow.State[S], error) {
	return e.r.Signal(st, name, payload)
}
func (e registry[S]) cancel(st stepflow.State[S], reason string) (stepflow.State[S], error) {
	return e.r.Cancel(st, reason)
}
func (e registry[S]) redrive(st stepflow.State[S]) (stepflow.State[S], error) {
	return e.r.Redrive(st)
}

// resolve resolves on the state's own version: the intent was recorded
// there, and Resolve never migrates.
func (e registry[S]) resolve(st stepflow.State[S], how stepflow.Resolution) (stepflow.State[S], error) {
	f, ok := e.r.Flow(st.Version)
	if !ok {
		return st, &stepflow.VersionError{Want: e.latest(), Got: st.Version}
	}
	return f.Resolve(st, how)
}
func (e registry[S]) describe(st stepflow.State[S]) (stepflow.Description, error) {
	return e.r.Describe(st)
}
func (e registry[S]) migrate(st stepflow.State[S]) (stepflow.State[S], error) { return e.r.Migrate(st) }
func (e registry[S]) flow(version string) (*stepflow.Flow[S], bool)           { return e.r.Flow(version) }

// flowName is the part of a version before its first '/'.
func flowName(version string) string {
	for i := range len(version) {
		if version[i] == '/' {
			return version[:i]
		}
	}
	return version
}
