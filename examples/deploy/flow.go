package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	c "github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/stepflow"
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
func DeployFlow(w *World) (*stepflow.Flow[Deploy], error) {
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

	return stepflow.New("deploy/v1",
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
		c.Do("validate", func(_ context.Context, d *Deploy) error {
			if d.After != d.Target {
				return stepflow.Permanent(fmt.Errorf("%w: %s runs %s, want %s", ErrValidation, d.App, d.After, d.Target))
			}
			return nil
		}),
	)
}
