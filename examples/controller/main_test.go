package main

import (
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/examples/controller/internal/controller"
	"github.com/stepflow-io/go-stepflow/kube"
	"github.com/stepflow-io/go-stepflow/stepflowtest"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, config{
		metricsAddr: ":8080", probeAddr: ":8081", leaderElect: true,
		maxSteps: controller.DefaultMaxSteps, readyTimeout: controller.DefaultReadyTimeout,
	}, c)

	c, err = parseFlags([]string{"--leader-elect=false", "--metrics-bind-address=0", "--ready-timeout=3m", "--max-steps=2"}, io.Discard)
	require.NoError(t, err)
	assert.False(t, c.leaderElect)
	assert.Equal(t, "0", c.metricsAddr)
	assert.Equal(t, 3*time.Minute, c.readyTimeout)
	assert.Equal(t, 2, c.maxSteps)

	_, err = parseFlags([]string{"--no-such-flag"}, io.Discard)
	assert.Error(t, err)
	_, err = parseFlags([]string{"stray"}, io.Discard)
	assert.ErrorContains(t, err, "unexpected arguments")
}

// The manager can be built without reaching an API server: nothing talks to
// the cluster before Start.
func TestNewManager(t *testing.T) {
	rc := &rest.Config{Host: "https://127.0.0.1:1"}
	mgr, err := newManager(rc, config{metricsAddr: "0", probeAddr: "0", maxSteps: 1}, stepflowtest.NewClock(time.Time{}), kube.NewMetrics(""))
	require.NoError(t, err)
	gvks, _, err := mgr.GetScheme().ObjectKinds(&v1alpha1.Rollout{})
	require.NoError(t, err)
	assert.Equal(t, "Rollout", gvks[0].Kind)
}

// crd is the part of the CRD manifest the tests read.
type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name         string         `json:"name"`
			Subresources map[string]any `json:"subresources"`
			Schema       struct {
				OpenAPIV3Schema schema `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

type schema struct {
	Type                  string            `json:"type"`
	Properties            map[string]schema `json:"properties"`
	PreserveUnknownFields bool              `json:"x-kubernetes-preserve-unknown-fields"`
	ListType              string            `json:"x-kubernetes-list-type"`
	ListMapKeys           []string          `json:"x-kubernetes-list-map-keys"`
	Validations           []map[string]any  `json:"x-kubernetes-validations"`
}

// The hand-written CRD must describe exactly the fields of the Go types,
// or the API server would prune what the controller writes.
func TestCRDMatchesTypes(t *testing.T) {
	b, err := os.ReadFile("config/crd/examples.stepflow.io_rollouts.yaml")
	require.NoError(t, err)
	var c crd
	require.NoError(t, yaml.Unmarshal(b, &c))
	assert.Equal(t, v1alpha1.GroupVersion.Group, c.Spec.Group)
	assert.Equal(t, "Rollout", c.Spec.Names.Kind)
	require.Len(t, c.Spec.Versions, 1)
	v := c.Spec.Versions[0]
	assert.Equal(t, v1alpha1.GroupVersion.Version, v.Name)
	assert.Contains(t, v.Subresources, "status", "status must be a subresource for optimistic status writes")

	root := v.Schema.OpenAPIV3Schema
	spec, status := root.Properties["spec"], root.Properties["status"]
	assert.Equal(t, jsonFields(reflect.TypeFor[v1alpha1.RolloutSpec]()), keys(spec.Properties))
	assert.Equal(t, jsonFields(reflect.TypeFor[v1alpha1.RolloutStatus]()), keys(status.Properties))
	assert.True(t, status.Properties["state"].PreserveUnknownFields, "the state must survive pruning")
	assert.Equal(t, "map", status.Properties["conditions"].ListType)
	assert.Equal(t, []string{"type"}, status.Properties["conditions"].ListMapKeys)
	assert.NotEmpty(t, spec.Properties["app"].Validations, "app is immutable")
}

// jsonFields lists the JSON names of a struct's fields, those of inline
// structs (kube.ProcessStatus) included.
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

func keys(m map[string]schema) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The sample decodes into a Rollout without unknown fields.
func TestSample(t *testing.T) {
	b, err := os.ReadFile("config/samples/rollout.yaml")
	require.NoError(t, err)
	var ro v1alpha1.Rollout
	require.NoError(t, yaml.UnmarshalStrict(b, &ro))
	assert.Equal(t, "web", ro.Spec.App)
	assert.Equal(t, int32(2), ro.Spec.DesiredReplicas())
	assert.Equal(t, v1alpha1.GroupVersion.String(), ro.APIVersion)
}
