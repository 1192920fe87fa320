package stepflowtest

import (
	"slices"

	"pgregory.net/rapid"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Leaves returns the paths of the nodes of flow that call user code (steps
// and predicates), in flow order: the paths a Script can usefully name.
func Leaves[S any](flow *stepflow.Flow[S]) []string {
	var out []string
	for _, n := range flow.Nodes() {
		if n.Leaf {
			out = append(out, n.Path)
		}
	}
	return out
}

// ScriptOptions configures OutcomeScriptWithOptions. A nil *ScriptOptions
// means all defaults.
type ScriptOptions struct {
	// Outcomes are the outcomes drawn for scripted calls. Nil: every outcome
	// (Normal, Fail, FailAfter, FailPermanent, False, Panic, Crash).
	Outcomes []Outcome
	// MaxCalls is the most calls scripted per path; the calls after them
	// run normally, so a flow whose steps eventually succeed can complete.
	// Zero: DefaultMaxCalls.
	MaxCalls int
}

// DefaultMaxCalls is the default of ScriptOptions.MaxCalls.
const DefaultMaxCalls = 4

// OutcomeScript returns a rapid generator of scripts over paths: for each
// path, up to DefaultMaxCalls calls with any outcome, then normal calls.
// Failing examples shrink towards fewer scripted calls and towards Normal.
//
//	rapid.Check(t, func(t *rapid.T) {
//		script := stepflowtest.OutcomeScript(stepflowtest.Leaves(flow)).Draw(t, "script")
//		tr, err := stepflowtest.Run(ctx, flow, flow.Start(data), &stepflowtest.RunOptions[D]{Script: script})
//		...
//	})
func OutcomeScript(paths []string) *rapid.Generator[Script] {
	return OutcomeScriptWithOptions(paths, nil)
}

// OutcomeScriptWithOptions is OutcomeScript with options; opts may be nil.
func OutcomeScriptWithOptions(paths []string, opts *ScriptOptions) *rapid.Generator[Script] {
	outcomes := []Outcome{Normal, Fail, FailAfter, FailPermanent, False, Panic, Crash}
	maxCalls := DefaultMaxCalls
	if opts != nil {
		if len(opts.Outcomes) > 0 {
			outcomes = opts.Outcomes
		}
		if opts.MaxCalls > 0 {
			maxCalls = opts.MaxCalls
		}
	}
	// Normal first, so that shrinking moves towards calls that run normally.
	outcomes = slices.Clone(outcomes)
	if i := slices.Index(outcomes, Normal); i > 0 {
		outcomes[0], outcomes[i] = outcomes[i], outcomes[0]
	}
	paths = slices.Clone(paths)
	slices.Sort(paths)
	paths = slices.Compact(paths)
	if len(paths) == 0 {
		// A flow without user code: the only script is the empty one.
		return rapid.Just(Script{})
	}
	each := rapid.SliceOfN(rapid.SampledFrom(outcomes), 0, maxCalls)
	return rapid.Custom(func(t *rapid.T) Script {
		s := Script{}
		// Draw in sorted path order so that a seed always gives the same
		// script.
		for _, p := range paths {
			if os := each.Draw(t, p); len(os) > 0 {
				s[p] = Plan{Outcomes: os}
			}
		}
		return s
	})
}
