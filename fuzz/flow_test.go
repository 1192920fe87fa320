package fuzz

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Data is the process data of the flows below. Its msgpack and JSON shape
// is part of the stored corpus: change it only together with a new corpus.
type Data struct {
	Name   string            `json:"name,omitempty" msgpack:"name,omitempty"`
	Count  int               `json:"count,omitempty" msgpack:"count,omitempty"`
	Tags   []string          `json:"tags,omitempty" msgpack:"tags,omitempty"`
	Labels map[string]string `json:"labels,omitempty" msgpack:"labels,omitempty"`
}

// Clone returns a deep copy, so that steps may change the tags and labels
// in place without touching the state Apply was given.
func (d Data) Clone() Data {
	d.Tags = slices.Clone(d.Tags)
	d.Labels = maps.Clone(d.Labels)
	return d
}

// Names that make steps of the flows below misbehave.
const (
	nameFail  = "fail"  // finish fails permanently
	nameError = "error" // init returns an error
	namePanic = "panic" // tag panics
)

var errRefused = errors.New("finish refused")

// storedFlow is version stored/v1: the flow whose states make up the stored
// corpus. It must never change; add a new version instead.
func storedFlow() *stepflow.Flow[Data] {
	return stepflow.Must(stepflow.NewWithOptions("stored/v1", &stepflow.Options{Record: 8}, storedNodes()...))
}

func storedNodes() []stepflow.Node[Data] {
	return []stepflow.Node[Data]{
		combinators.Do("init", func(ctx context.Context, d *Data) error {
			if d.Name == nameError {
				return errors.New("init failed")
			}
			d.Count++
			return nil
		}),
		combinators.Sequence("prepare",
			combinators.Do("tag", func(ctx context.Context, d *Data) error {
				if d.Name == namePanic {
					panic("tag panicked")
				}
				d.Tags = append(d.Tags, "prepared")
				return nil
			}),
			combinators.Case("labelled", func(ctx context.Context, d *Data) (bool, error) { return len(d.Labels) > 0, nil },
				combinators.Do("keep", func(ctx context.Context, d *Data) error { return nil }),
			).Else(
				combinators.Do("label", func(ctx context.Context, d *Data) error {
					d.Labels = map[string]string{"by": "stepflow", "name": d.Name}
					return nil
				}),
			),
		),
		combinators.WaitFor("ready", func(ctx context.Context, d *Data) (bool, error) {
			d.Count++
			return d.Count >= 4, nil
		}, combinators.Backoff(time.Minute, 8*time.Minute), combinators.Timeout(time.Hour)),
		combinators.Switch("route", func(ctx context.Context, d *Data) (string, error) {
			switch d.Name {
			case "a":
				return "alpha", nil
			case "b":
				return "beta", nil
			}
			return "none", nil
		},
			combinators.On("alpha",
				combinators.Do("a1", func(ctx context.Context, d *Data) error { d.Count += 10; return nil }),
				combinators.Do("a2", func(ctx context.Context, d *Data) error { d.Count += 20; return nil }),
			),
			combinators.On("beta",
				combinators.Do("b1", func(ctx context.Context, d *Data) error { d.Count += 100; return nil }),
			),
			combinators.On[Data]("none"),
		),
		combinators.Do("finish", func(ctx context.Context, d *Data) error {
			if d.Name == nameFail {
				return stepflow.Permanent(errRefused)
			}
			return nil
		}),
	}
}

// nextFlow is stored/v2: prepare/tag renamed to prepare/mark, the wait
// moved into a new "gate" sequence, route/b1 removed (its processes go on
// at finish).
func nextFlow() *stepflow.Flow[Data] {
	old := storedNodes()
	mark := combinators.Do("mark", func(ctx context.Context, d *Data) error {
		d.Tags = append(d.Tags, "marked")
		return nil
	})
	prepare := combinators.Sequence("prepare", mark, old[1].Children()[1])
	route := combinators.Switch("route", func(ctx context.Context, d *Data) (string, error) {
		if d.Name == "a" {
			return "alpha", nil
		}
		return "none", nil
	},
		combinators.On("alpha", old[3].Children()[0], old[3].Children()[1]),
		combinators.On[Data]("none"),
	)
	return stepflow.Must(stepflow.NewWithOptions("stored/v2", &stepflow.Options{Record: 8},
		old[0], prepare, combinators.Sequence("gate", old[2]), route, old[4]))
}

// registry knows both versions and migrates v1 states lazily.
func registry() *versions.Registry[Data] {
	m := versions.NewMigration[Data]("stored/v1", "stored/v2").
		Rename("prepare/tag", "prepare/mark").
		Rename("ready", "gate/ready").
		Continue("route/b1", "finish")
	r, err := versions.New([]*stepflow.Flow[Data]{storedFlow(), nextFlow()}, nil, m)
	if err != nil {
		panic(err)
	}
	return r
}

// richFlow is version rich/v1: every kind of node, nested, for FuzzApply
// and the stored corpus. Like stored/v1 it must never change.
func richFlow() *stepflow.Flow[Data] {
	return stepflow.Must(stepflow.NewWithOptions("rich/v1", &stepflow.Options{Record: 6, MaxSignals: 4}, richNodes()...))
}

// richNextFlow is rich/v2: the download renamed, the approval removed (its
// processes go on at release), the loop wrapped in a Retry, an audit step
// added at the end.
func richNextFlow() *stepflow.Flow[Data] {
	n := richNodes()
	fetch := combinators.Retry("fetch", combinators.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Minute, Jitter: 0.2},
		combinators.Do("get", func(ctx context.Context, d *Data) error { d.Count++; return nil }))
	converge := combinators.Retry("retry-converge", combinators.RetryPolicy{MaxAttempts: 2}, n[3])
	audit := combinators.Do("audit", func(ctx context.Context, d *Data) error { d.Tags = append(d.Tags, "audited"); return nil })
	return stepflow.Must(stepflow.NewWithOptions("rich/v2", &stepflow.Options{Record: 6, MaxSignals: 4},
		fetch, n[1], n[2], converge, n[5], n[6], n[7], n[8], audit))
}

// richRegistry migrates rich/v1 states to rich/v2.
func richRegistry() *versions.Registry[Data] {
	m := versions.NewMigration[Data]("rich/v1", "rich/v2").
		Rename("fetch/download", "fetch/get").
		Rename("converge", "retry-converge/converge").
		Continue("guarded", "release")
	r, err := versions.New([]*stepflow.Flow[Data]{richFlow(), richNextFlow()}, nil, m)
	if err != nil {
		panic(err)
	}
	return r
}

func richNodes() []stepflow.Node[Data] {
	do := func(name string, fn func(d *Data) error) stepflow.Node[Data] {
		return combinators.Do(name, func(ctx context.Context, d *Data) error { return fn(d) })
	}
	count := func(d *Data) error { d.Count++; return nil }
	return []stepflow.Node[Data]{
		combinators.Retry("fetch", combinators.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Minute, Jitter: 0.2},
			combinators.Do("download", func(ctx context.Context, d *Data) error {
				call, _ := stepflow.CallFrom(ctx)
				if d.Name == "flaky" && call.Attempt < 2 {
					return errors.New("connection reset")
				}
				d.Count++
				return nil
			}),
		),
		combinators.Parallel("checks",
			combinators.Sequence("lint", do("lint1", count), combinators.Sleep[Data]("cool", 5*time.Minute)),
			combinators.WaitFor("scan", func(ctx context.Context, d *Data) (bool, error) {
				d.Count++
				return d.Count%3 == 0, nil
			}, combinators.Every(2*time.Minute), combinators.Timeout(30*time.Minute)),
		),
		combinators.ForEach("regions", func(ctx context.Context, d *Data) ([]string, error) {
			if d.Tags != nil {
				return d.Tags, nil // no regions: the loop ends at once
			}
			return []string{"eu", "us"}, nil
		}, combinators.Do("rollout", func(ctx context.Context, d *Data) error {
			region, err := combinators.Item[string](ctx)
			if err != nil {
				return err
			}
			if d.Labels == nil {
				d.Labels = map[string]string{}
			}
			d.Labels["region-"+region] = "done"
			return nil
		})).Concurrency(2),
		combinators.LoopUntil("converge", func(ctx context.Context, d *Data) (bool, error) { return d.Count >= 6, nil },
			[]stepflow.Node[Data]{do("nudge", count)}, combinators.MaxIterations(20)),
		combinators.Catch("guarded",
			combinators.TimeLimit("approval", time.Hour,
				combinators.WaitSignal("approve", "approve", func(d *Data, p []byte) error {
					if d.Labels == nil {
						d.Labels = map[string]string{}
					}
					d.Labels["approved-by"] = string(p)
					return nil
				}),
			),
			do("escalate", func(d *Data) error { d.Tags = append(d.Tags, "escalated"); return nil }),
		),
		combinators.Finally("release",
			combinators.Do("charge", func(ctx context.Context, d *Data) error {
				if d.Name == nameFail {
					return stepflow.Permanent(errRefused)
				}
				return nil
			}, combinators.AtMostOnce(combinators.AskPerson)),
			do("unlock", count),
		),
		combinators.When("early", func(ctx context.Context, d *Data) (bool, error) { return d.Name == "exit", nil },
			combinators.Succeed[Data]("exit")),
		combinators.Optional("extra", do("bonus", func(d *Data) error {
			if d.Name == "bonus" {
				return errors.New("no bonus")
			}
			return nil
		})),
		combinators.Do("finish", func(ctx context.Context, d *Data) error { return nil }),
	}
}
