package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	c "github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
)

// Deploy is the data of one deployment process.
type Deploy struct {
	// App to deploy and the version to deploy.
	App    string `json:"app" msgpack:"app"`
	Target string `json:"target" msgpack:"target"`
	// Before and After are the versions observed before and after.
	Before string `json:"before,omitempty" msgpack:"before,omitempty"`
	After  string `json:"after,omitempty" msgpack:"after,omitempty"`
	// Change is the pull request opened for the deployment, if any.
	Change *PullRequest `json:"change,omitempty" msgpack:"change,omitempty"`
}

// Clone returns a deep copy, so that Apply never shares the pull request
// between the previous and the next state.
func (d Deploy) Clone() Deploy {
	if d.Change != nil {
		pr := *d.Change
		d.Change = &pr
	}
	return d
}

// ErrValidation fails a deployment whose result is not what was asked.
var ErrValidation = errors.New("deployment validation failed")

// DeployFlow is the continuous-deployment pipeline against w:
//
//	preActualState   read the version running now (retried on API errors)
//	waitPreState     wait until the app is synced and healthy
//	shouldDeploy     only if it does not run the target version yet:
//	  createDeployRequest   open a GitOps pull request (retried; the
//	                        idempotency key makes a re-run harmless)
//	  waitMerged            wait for reviewers to merge it
//	  rollout               monitor the rollout, for at most a time limit
//	postActualState  read the version running now
//	waitPostState    wait until synced and healthy again
//	validate         fail unless the target version runs
func DeployFlow(w *World) (*stepflow.Flow[Deploy], error) { return deployFlow(w, "deploy/v1") }

// DeployFlowV2 is deploy/v2, the next release of the pipeline: the final
// check is renamed (validate is now verifyVersion) and a step is added
// after it that records the deployment in the world's release log
// (announce). Processes of deploy/v1 move to it by the migration of
// DeployVersions.
func DeployFlowV2(w *World) (*stepflow.Flow[Deploy], error) { return deployFlow(w, "deploy/v2") }

// DeployVersions is the registry a runner of the next release hosts:
// deploy/v1 and deploy/v2, and the migration between them. It uses the
// default policy, PolicyLazy: a deploy/v1 process moves to deploy/v2 at
// its next step.
func DeployVersions(w *World) (*versions.Registry[Deploy], error) {
	v1, err := DeployFlow(w)
	if err != nil {
		return nil, err
	}
	v2, err := DeployFlowV2(w)
	if err != nil {
		return nil, err
	}
	return versions.New([]*stepflow.Flow[Deploy]{v1, v2}, nil,
		versions.NewMigration[Deploy]("deploy/v1", "deploy/v2").Rename("validate", "verifyVersion"))
}

func deployFlow(w *World, version string) (*stepflow.Flow[Deploy], error) {
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * max(w.Scale, 0.001)) }
	api := c.RetryPolicy{MaxAttempts: 5, InitialInterval: scale(50 * time.Millisecond), MaxInterval: scale(time.Second), Jitter: 0.2}
	poll := c.Backoff(scale(50*time.Millisecond), scale(400*time.Millisecond))

	readActual := func(into func(*Deploy) *string) func(context.Context, *Deploy) error {
		return func(ctx context.Context, d *Deploy) error {
			st, err := w.Status(ctx, d.App, w.InitialVersion(d.App, d.Target), d.Change)
			if err != nil {
				return err
			}
			*into(d) = st.Version
			return nil
		}
	}
	// A failed poll is only a poll: the wait goes on.
	settled := func(ctx context.Context, d *Deploy) (bool, error) {
		st, err := w.Status(ctx, d.App, w.InitialVersion(d.App, d.Target), d.Change)
		if errors.Is(err, ErrUnavailable) {
			return false, nil
		}
		return err == nil && st.Synced && st.Healthy, err
	}

	validate := func(_ context.Context, d *Deploy) error {
		if d.After != d.Target {
			return stepflow.Permanent(fmt.Errorf("%w: %s runs %s, want %s", ErrValidation, d.App, d.After, d.Target))
		}
		return nil
	}
	last := []stepflow.Node[Deploy]{c.Do("validate", validate)}
	if version == "deploy/v2" {
		last = []stepflow.Node[Deploy]{
			c.Do("verifyVersion", validate),
			c.Do("announce", func(ctx context.Context, d *Deploy) error {
				call, _ := stepflow.CallFrom(ctx)
				return w.Announce(ctx, d.App, d.Target, call.IdempotencyKey())
			}),
		}
	}
	nodes := []stepflow.Node[Deploy]{
		c.Retry("preActualState", api,
			c.Do("readActualState", readActual(func(d *Deploy) *string { return &d.Before }))),
		c.WaitFor("waitPreState", settled, poll, c.Timeout(scale(30*time.Second))),
		c.Case("shouldDeploy", func(_ context.Context, d *Deploy) (bool, error) { return d.Before != d.Target, nil },
			c.Retry("createDeployRequest", api,
				c.Do("openPullRequest", func(ctx context.Context, d *Deploy) error {
					call, _ := stepflow.CallFrom(ctx)
					pr, err := w.CreatePullRequest(ctx, d.App, d.Target, call.IdempotencyKey())
					if err != nil {
						return err
					}
					d.Change = &pr
					return nil
				})),
			c.WaitFor("waitMerged", func(ctx context.Context, d *Deploy) (bool, error) {
				ok, err := w.Merged(ctx, *d.Change)
				if errors.Is(err, ErrUnavailable) {
					return false, nil
				}
				return ok, err
			}, poll, c.Timeout(scale(30*time.Second))),
			c.TimeLimit("rollout", scale(6*time.Second),
				c.WaitFor("monitorRollout", func(ctx context.Context, d *Deploy) (bool, error) {
					st, err := w.Status(ctx, d.App, w.InitialVersion(d.App, d.Target), d.Change)
					if errors.Is(err, ErrUnavailable) {
						return false, nil
					}
					return err == nil && st.Version == d.Target && st.Synced && st.Healthy, err
				}, poll)),
		),
		c.Retry("postActualState", api,
			c.Do("readActualState", readActual(func(d *Deploy) *string { return &d.After }))),
		c.WaitFor("waitPostState", settled, poll, c.Timeout(scale(30*time.Second))),
	}
	return stepflow.New(version, append(nodes, last...)...)
}

// Rollback is the data of one rollback process: the app whose deployment
// failed, and the version to go back to.
type Rollback struct {
	App string `json:"app" msgpack:"app"`
	To  string `json:"to" msgpack:"to"`
	// Change is the pull request that reverts the deployment.
	Change *PullRequest `json:"change,omitempty" msgpack:"change,omitempty"`
}

// Clone returns a deep copy (see Deploy.Clone).
func (r Rollback) Clone() Rollback {
	if r.Change != nil {
		pr := *r.Change
		r.Change = &pr
	}
	return r
}

// RollbackFlow is rollback/v1, the second flow of the example: started for
// each deployment that failed, it opens a pull request that puts the
// version observed before the deployment back, and waits for the merge.
// It runs in the same store and the same runner as the deployments.
func RollbackFlow(w *World) (*stepflow.Flow[Rollback], error) {
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * max(w.Scale, 0.001)) }
	api := c.RetryPolicy{MaxAttempts: 5, InitialInterval: scale(50 * time.Millisecond), MaxInterval: scale(time.Second), Jitter: 0.2}
	return stepflow.New("rollback/v1",
		c.Retry("openRevert", api,
			c.Do("openPullRequest", func(ctx context.Context, r *Rollback) error {
				call, _ := stepflow.CallFrom(ctx)
				pr, err := w.CreatePullRequest(ctx, r.App, r.To, call.IdempotencyKey())
				if err != nil {
					return err
				}
				r.Change = &pr
				return nil
			})),
		c.WaitFor("waitMerged", func(ctx context.Context, r *Rollback) (bool, error) {
			ok, err := w.Merged(ctx, *r.Change)
			if errors.Is(err, ErrUnavailable) {
				return false, nil
			}
			return ok, err
		}, c.Backoff(scale(50*time.Millisecond), scale(400*time.Millisecond)), c.Timeout(scale(30*time.Second))),
	)
}
