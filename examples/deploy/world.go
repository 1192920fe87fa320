package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// World simulates what a deployment pipeline talks to: a GitOps
// repository that takes pull requests and merges them after a while, and
// an Argo CD-like controller that rolls merged changes out, with API
// latency, transient API failures and flapping health.
//
// Every answer is a pure function of the seed, the app, the pull request
// and the current time (read from the step's context), so the world needs
// no memory of its own: a run resumed after a kill sees the same world, and
// two runs with the same seed behave alike.
type World struct {
	// Seed makes the world reproducible.
	Seed uint64
	// Scale multiplies every simulated duration (merge delays, rollouts,
	// flaps); 1 gives a run of 1,000 deployments that takes seconds.
	Scale float64
	// Latency is the mean latency of an API call, spent sleeping inside
	// the step. Zero (the default) means none: the simulated delays that
	// matter (merges, rollouts) are waits, which cost no goroutine.
	Latency time.Duration

	mu        sync.Mutex
	opened    map[string]PullRequest // by idempotency key
	announced map[string]bool        // by idempotency key
	created   atomic.Int64
	deduped   atomic.Int64
}

// NewWorld returns a world for seed with the default scale.
func NewWorld(seed uint64) *World {
	return &World{Seed: seed, Scale: 1, opened: map[string]PullRequest{}}
}

// PullRequest is a change proposed to the GitOps repository.
type PullRequest struct {
	Number  int       `json:"number" msgpack:"number"`
	App     string    `json:"app" msgpack:"app"`
	Version string    `json:"version" msgpack:"version"`
	Opened  time.Time `json:"opened" msgpack:"opened"`
}

// AppStatus is what the controller reports about an app.
type AppStatus struct {
	Version string
	Synced  bool
	Healthy bool
}

// ErrUnavailable is the transient failure of the simulated APIs.
var ErrUnavailable = errors.New("simulated API unavailable (try again)")

// roll returns a number in [0, 1) derived from the seed and the parts.
func (w *World) roll(parts ...any) float64 {
	h := fnv.New64a()
	fmt.Fprint(h, w.Seed)
	for _, p := range parts {
		fmt.Fprint(h, "|", p)
	}
	// FNV alone barely changes its high bits when only the last bytes
	// differ; a 64-bit finalizer spreads every input bit over the result.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func (w *World) span(lo, hi time.Duration, parts ...any) time.Duration {
	d := lo + time.Duration(w.roll(parts...)*float64(hi-lo))
	return time.Duration(float64(d) * w.Scale)
}

// call simulates API latency.
func (w *World) call(ctx context.Context, what string) {
	if w.Latency <= 0 {
		return
	}
	d := time.Duration(float64(w.Latency) * 2 * w.roll(what, stepflow.Now(ctx).UnixNano()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// InitialVersion is the version an app runs before any deployment: most
// run "v1", some already run the version being deployed.
func (w *World) InitialVersion(app, target string) string {
	if w.roll("initial", app) < 0.15 {
		return target
	}
	return "v1"
}

// CreatePullRequest opens a pull request that sets app to version. The
// idempotency key makes it safe to call again after a crash: the same key
// returns the pull request opened the first time (as long as this World
// lives; a real GitOps API would keep it). One call in ten fails with
// ErrUnavailable.
func (w *World) CreatePullRequest(ctx context.Context, app, version, key string) (PullRequest, error) {
	w.call(ctx, "create:"+key)
	w.mu.Lock()
	defer w.mu.Unlock()
	if pr, ok := w.opened[key]; ok {
		w.deduped.Add(1)
		return pr, nil
	}
	if w.roll("create-fails", key) < 0.1 {
		return PullRequest{}, fmt.Errorf("create pull request for %s: %w", app, ErrUnavailable)
	}
	pr := PullRequest{Number: 1 + int(w.roll("pr", key)*1e6), App: app, Version: version, Opened: stepflow.Now(ctx)}
	if w.opened == nil {
		w.opened = map[string]PullRequest{}
	}
	w.opened[key] = pr
	w.created.Add(1)
	return pr, nil
}

// mergedAt is when reviewers merge the pull request.
func (w *World) mergedAt(pr PullRequest) time.Time {
	return pr.Opened.Add(w.span(200*time.Millisecond, 2*time.Second, "merge", pr.App, pr.Number))
}

// rolledOutAt is when the controller has rolled the merged change out. A
// few apps never become healthy: their rollout is stuck.
func (w *World) rolledOutAt(pr PullRequest) (time.Time, bool) {
	if w.roll("stuck", pr.App) < 0.03 {
		return time.Time{}, false
	}
	return w.mergedAt(pr).Add(w.span(300*time.Millisecond, 2500*time.Millisecond, "rollout", pr.App)), true
}

// Merged reports whether the pull request has been merged.
func (w *World) Merged(ctx context.Context, pr PullRequest) (bool, error) {
	w.call(ctx, "merged")
	now := stepflow.Now(ctx)
	if w.roll("merged-fails", pr.App, now.UnixNano()) < 0.02 {
		return false, fmt.Errorf("read pull request %d: %w", pr.Number, ErrUnavailable)
	}
	return !now.Before(w.mergedAt(pr)), nil
}

// Status reports an app as the controller sees it. change is the pull
// request being rolled out, nil if none. Health flaps: during a rollout it
// goes up and down, and a few apps flap for a while afterwards too.
func (w *World) Status(ctx context.Context, app, initial string, change *PullRequest) (AppStatus, error) {
	w.call(ctx, "status:"+app)
	now := stepflow.Now(ctx)
	if w.roll("status-fails", app, now.UnixNano()) < 0.02 {
		return AppStatus{}, fmt.Errorf("app %s status: %w", app, ErrUnavailable)
	}
	// Flapping: health is decided per 100ms (scaled) window.
	window := max(time.Duration(float64(100*time.Millisecond)*w.Scale), time.Millisecond)
	flap := w.roll("flap", app, now.UnixNano()/int64(window)) < 0.25
	st := AppStatus{Version: initial, Synced: true, Healthy: !flap || w.roll("flappy", app) > 0.2}
	if change == nil {
		return st, nil
	}
	merged := w.mergedAt(*change)
	if now.Before(merged) {
		return st, nil
	}
	done, ok := w.rolledOutAt(*change)
	if !ok || now.Before(done) {
		// Rolling out: out of sync, health flapping.
		return AppStatus{Version: initial, Synced: false, Healthy: !flap}, nil
	}
	settle := done.Add(w.span(0, 500*time.Millisecond, "settle", app))
	return AppStatus{Version: change.Version, Synced: true, Healthy: !flap || !now.Before(settle)}, nil
}

// Stats reports how many pull requests the world opened, and how many
// repeated requests the idempotency key turned into no-ops.
func (w *World) Stats() (created, deduplicated int64) { return w.created.Load(), w.deduped.Load() }

// Announce records in the release log that app now runs version (a chat
// message, a changelog entry). The idempotency key makes a repeated call
// harmless.
func (w *World) Announce(ctx context.Context, app, version, key string) error {
	w.call(ctx, "announce:"+key)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.announced == nil {
		w.announced = map[string]bool{}
	}
	w.announced[key] = true
	return nil
}

// Announced is how many deployments this world has announced.
func (w *World) Announced() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.announced)
}
