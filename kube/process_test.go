package kube_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/yaml"

	"github.com/stepflow-io/go-stepflow/combinators"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
	"github.com/stepflow-io/go-stepflow/versions"
)

func TestRequeue(t *testing.T) {
	now := stepflowtest.Epoch
	waitingUntil := func(d time.Duration) stepflow.State[Job] {
		return stepflow.State[Job]{Status: stepflow.Waiting, WakeAt: now.Add(d)}
	}
	tests := []struct {
		name string
		st   stepflow.State[Job]
		opts *kube.RequeueOptions
		want time.Duration
	}{
		{"running", stepflow.State[Job]{Status: stepflow.Running}, nil, kube.DefaultRequeueRunnable},
		{"waiting", waitingUntil(90 * time.Second), nil, 90 * time.Second},
		{"due", waitingUntil(-time.Minute), nil, kube.DefaultRequeueMin},
		{"soon", waitingUntil(10 * time.Millisecond), nil, kube.DefaultRequeueMin},
		{"far", waitingUntil(48 * time.Hour), nil, kube.DefaultRequeueMax},
		{"signal only", stepflow.State[Job]{Status: stepflow.Waiting}, nil, kube.DefaultRequeueMax},
		{"own bounds", waitingUntil(10 * time.Millisecond), &kube.RequeueOptions{Min: 5 * time.Millisecond}, 10 * time.Millisecond},
		{"own max", waitingUntil(time.Hour), &kube.RequeueOptions{Max: time.Minute}, time.Minute},
		{"own runnable", stepflow.State[Job]{Status: stepflow.Running}, &kube.RequeueOptions{Runnable: time.Minute}, time.Minute},
		{"done", stepflow.State[Job]{Status: stepflow.Done}, nil, 0},
		{"failed", stepflow.State[Job]{Status: stepflow.Failed}, nil, 0},
		{"canceled", stepflow.State[Job]{Status: stepflow.Canceled}, nil, 0},
		{"needs attention", stepflow.State[Job]{Status: stepflow.NeedsAttention}, nil, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, ctrl.Result{RequeueAfter: tt.want}, kube.Requeue(tt.st, now, tt.opts), tt.name)
	}
}

// noopProcess is a Process over a flow whose steps touch nothing.
func noopProcess(t *testing.T, opts *kube.ProcessOptions, nodes ...stepflow.Node[Job]) *kube.Process[Job] {
	t.Helper()
	if len(nodes) == 0 {
		nodes = []stepflow.Node[Job]{
			combinators.Do("one", func(context.Context, *Job) error { return nil }),
			combinators.Sleep[Job]("pause", time.Minute),
			combinators.Do("two", func(context.Context, *Job) error { return nil }),
		}
	}
	f, err := stepflow.New("noop/v1", nodes...)
	require.NoError(t, err)
	p, err := kube.NewFlowProcess(f, opts)
	require.NoError(t, err)
	return p
}

// Load follows the version-skew rules, each with its own error.
func TestProcessLoad(t *testing.T) {
	p := noopProcess(t, nil)
	clock := stepflowtest.NewClock(time.Time{})
	var ps kube.ProcessStatus
	_, err := p.Load(&ps, 1)
	assert.ErrorIs(t, err, kube.ErrNoProcess, "none stored")

	st, err := p.Advance(clock.Context(context.Background()), p.Start(Job{Name: "x"}, "uid/1"))
	require.NoError(t, err)
	require.Equal(t, stepflow.Waiting, st.Status)
	require.NoError(t, p.Save(&ps, 1, nil, st, clock.Now()))

	got, err := p.Load(&ps, 1)
	require.NoError(t, err)
	assert.Equal(t, st.Steps, got.Steps)
	assert.Equal(t, "uid/1", got.ID)

	_, err = p.Load(&ps, 2)
	assert.ErrorIs(t, err, kube.ErrNoProcess, "the spec changed")
	assert.ErrorContains(t, err, "generation 1 to 2")
	got, err = p.Stored(&ps)
	require.NoError(t, err, "Stored reads it whatever the generation")
	assert.Equal(t, "uid/1", got.ID)

	other := *ps.DeepCopy()
	other.State = &runtime.RawExtension{Raw: []byte(`{"stepflow":1,"state":{"version":"noop/v2","status":"running","steps":1,"root":{},"data":{}}}`)}
	_, err = p.Load(&other, 1)
	assert.ErrorIs(t, err, versions.ErrUnknownVersion)
	assert.True(t, kube.CannotContinue(err))
	restart := noopProcess(t, &kube.ProcessOptions{RestartUnknown: true})
	_, err = restart.Load(&other, 1)
	assert.ErrorIs(t, err, kube.ErrNoProcess)

	other.State = &runtime.RawExtension{Raw: []byte(`{"stepflow":1`)}
	_, err = p.Load(&other, 1)
	assert.ErrorIs(t, err, kube.ErrUnreadable)
	assert.True(t, kube.CannotContinue(err))
	assert.False(t, kube.CannotContinue(context.Canceled))
}

// Save encodes the state only when it changed: the API server rewrites
// the stored bytes, and encoding an unchanged state again would make a
// write of nothing.
func TestProcessSaveEncodesChangesOnly(t *testing.T) {
	p := noopProcess(t, nil)
	clock := stepflowtest.NewClock(time.Time{})
	ctx := clock.Context(context.Background())
	var ps kube.ProcessStatus
	st, err := p.Advance(ctx, p.Start(Job{}, "uid/1"))
	require.NoError(t, err)
	require.NoError(t, p.Save(&ps, 1, nil, st, clock.Now()))
	// What the API server hands back: the same state, other bytes.
	stored := []byte(" " + string(ps.State.Raw))
	ps.State = &runtime.RawExtension{Raw: stored}

	loaded, err := p.Load(&ps, 1)
	require.NoError(t, err)
	next, err := p.Advance(ctx, loaded)
	require.NoError(t, err)
	require.NoError(t, p.Save(&ps, 1, &loaded, next, clock.Now()))
	assert.Equal(t, stored, ps.State.Raw, "not due: the bytes stay")

	canceled, err := p.Cancel(loaded, "stop")
	require.NoError(t, err)
	require.NoError(t, p.Save(&ps, 1, &loaded, canceled, clock.Now()))
	assert.NotEqual(t, stored, ps.State.Raw, "a canceled process is a change")
	assert.Equal(t, "canceled", ps.Phase)
}

// A state too large for the status is ErrUnwritable, and Report says so.
func TestProcessSaveUnwritable(t *testing.T) {
	p := noopProcess(t, &kube.ProcessOptions{MaxStateSize: 64})
	var ps kube.ProcessStatus
	err := p.Save(&ps, 1, nil, p.Start(Job{Message: strings.Repeat("x", 100)}, "uid/1"), stepflowtest.Epoch)
	require.ErrorIs(t, err, kube.ErrUnwritable)
	assert.True(t, kube.CannotContinue(err))
	assert.Nil(t, ps.State)
	assert.True(t, p.Report(&ps, 1, err, stepflowtest.Epoch))
	assert.Equal(t, kube.PhaseUnwritable, ps.Phase)
	assert.False(t, p.Report(&ps, 1, err, stepflowtest.Epoch.Add(time.Hour)), "once per generation")
	assert.True(t, p.Report(&ps, 2, err, stepflowtest.Epoch.Add(time.Hour)), "and again for the next")
}

// Condition types named by tags are checked when the process is built.
func TestNewProcessChecksConditionTags(t *testing.T) {
	tagged := func(name, tag string) stepflow.Node[Job] {
		return stepflow.Annotate(combinators.Do(name, func(context.Context, *Job) error { return nil }),
			stepflow.Meta{Tags: []string{kube.ConditionTag + "=" + tag}})
	}
	for _, tt := range []struct {
		name  string
		nodes []stepflow.Node[Job]
		want  string
	}{
		{"process condition", []stepflow.Node[Job]{tagged("a", "Ready")}, "process conditions"},
		{"invalid", []stepflow.Node[Job]{tagged("a", "not a type!")}, `condition type "not a type!"`},
		{"twice", []stepflow.Node[Job]{tagged("a", "Written"), tagged("b", "Written")}, `both name condition "Written"`},
	} {
		f, err := stepflow.New("tags/v1", tt.nodes...)
		require.NoError(t, err)
		_, err = kube.NewFlowProcess(f, nil)
		assert.ErrorContains(t, err, tt.want, tt.name)
	}
	f, err := stepflow.New("tags/v1", tagged("a", "example.com/Written"))
	require.NoError(t, err)
	_, err = kube.NewFlowProcess(f, &kube.ProcessOptions{StepConditions: &kube.StepConditions{Prefix: "Bad Prefix/"}})
	assert.ErrorContains(t, err, "prefix")
	_, err = kube.NewFlowProcess(f, &kube.ProcessOptions{StepConditions: &kube.StepConditions{Prefix: "example.com"}})
	assert.ErrorContains(t, err, "must end in /")
	_, err = kube.NewFlowProcess(f, &kube.ProcessOptions{StepConditions: &kube.StepConditions{}})
	assert.NoError(t, err)
}

// The Reader answers from the cache, and asks the API server only when
// the cache has nothing.
func TestReader(t *testing.T) {
	ctx := context.Background()
	scheme := newScheme()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "fresh"}}
	cache := fake.NewClientBuilder().WithScheme(scheme).Build()
	api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cm).Build()
	key := client.ObjectKeyFromObject(cm)

	r := &kube.Reader{Cache: cache}
	assert.True(t, apierrors.IsNotFound(r.Get(ctx, key, &corev1.ConfigMap{})), "without API, the cache alone")
	assert.Equal(t, client.Reader(cache), r.Live())

	r.API = api
	var got corev1.ConfigMap
	require.NoError(t, r.Get(ctx, key, &got), "the API server confirms")
	assert.Equal(t, "fresh", got.Name)
	assert.Equal(t, client.Reader(api), r.Live())
	var list corev1.ConfigMapList
	require.NoError(t, r.List(ctx, &list))
	assert.Empty(t, list.Items, "lists come from the cache")
	assert.True(t, apierrors.IsNotFound(r.Get(ctx, types.NamespacedName{Namespace: "shop", Name: "gone"}, &corev1.ConfigMap{})))
}

func TestWriteResult(t *testing.T) {
	ctx := context.Background()
	res, err := kube.WriteResult(ctx, apierrors.NewConflict(schema.GroupResource{Resource: "tasks"}, "hello", errors.New("stale")))
	assert.NoError(t, err)
	assert.Equal(t, kube.RequeueConflict, res.RequeueAfter)
	res, err = kube.WriteResult(ctx, apierrors.NewNotFound(schema.GroupResource{Resource: "tasks"}, "hello"))
	assert.NoError(t, err)
	assert.Equal(t, ctrl.Result{}, res)
	boom := errors.New("boom")
	_, err = kube.WriteResult(ctx, boom)
	assert.ErrorIs(t, err, boom)
}

// A deep copy equals its source and shares no memory with it.
func TestProcessStatusDeepCopy(t *testing.T) {
	wake := metav1.NewTime(stepflowtest.Epoch)
	src := &kube.ProcessStatus{
		ObservedGeneration: 3, FlowVersion: "task/v1", Phase: "waiting", Step: "a", WakeAt: &wake, LastError: "e",
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "A"}},
		State:      &runtime.RawExtension{Raw: []byte(`{"a":1}`)},
	}
	cp := src.DeepCopy()
	require.True(t, equality.Semantic.DeepEqual(src, cp))
	cp.WakeAt.Time = cp.WakeAt.Add(time.Hour)
	cp.Conditions[0].Reason = "B"
	cp.State.Raw[len(`{"a":`)] = '2'
	assert.True(t, src.WakeAt.Equal(&wake))
	assert.Equal(t, "A", src.Conditions[0].Reason)
	assert.JSONEq(t, `{"a":1}`, string(src.State.Raw))
	assert.Nil(t, (*kube.ProcessStatus)(nil).DeepCopy())
}

// The CRD of the tests declares every field of ProcessStatus, as a
// resource embedding it must, or the API server prunes what the
// controller writes; docs/kubernetes.md shows the same schema.
func TestCRDDeclaresProcessStatus(t *testing.T) {
	b, err := os.ReadFile("testdata/crd/test.stepflow.io_tasks.yaml")
	require.NoError(t, err)
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema struct {
						Properties map[string]struct {
							Properties map[string]struct {
								PreserveUnknownFields bool   `json:"x-kubernetes-preserve-unknown-fields"`
								ListType              string `json:"x-kubernetes-list-type"`
							} `json:"properties"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(b, &crd))
	status := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties
	var declared []string
	for k := range status {
		declared = append(declared, k)
	}
	sort.Strings(declared)
	assert.Equal(t, jsonFields(reflect.TypeFor[TaskStatus]()), declared)
	assert.True(t, status["state"].PreserveUnknownFields, "the state must survive pruning")
	assert.Equal(t, "map", status["conditions"].ListType)
}

// jsonFields lists the JSON names of a struct's fields, those of inline
// structs included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" && opts == "inline" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
