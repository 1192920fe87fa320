package versions_test

import (
	"fmt"
	"testing"

	"github.com/stepflow-io/go-stepflow/stepflow"
	"github.com/stepflow-io/go-stepflow/versions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeT records what the pin helpers report.
type fakeT struct{ errs []string }

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func TestPin(t *testing.T) {
	v1, _, _ := threeVersions()
	edited := must(stepflow.New("f/v1", step("a", "a"), step("b", "b"), step("c2", "c"), step("d", "d")))

	ft := &fakeT{}
	assert.True(t, versions.Pin(ft, v1, v1.Fingerprint()))
	assert.Empty(t, ft.errs)

	assert.False(t, versions.Pin(ft, edited, v1.Fingerprint()))
	assert.Equal(t, []string{
		"flow f/v1 has fingerprint " + edited.Fingerprint() + " but " + v1.Fingerprint() + " is pinned: " +
			"the structure of a released version changed. Restore it and add the change as a new version with a migration; " +
			"if f/v1 was never released, update the pin to " + edited.Fingerprint(),
	}, ft.errs)
}

func TestFingerprintOfRecordedStructure(t *testing.T) {
	v1, v2, v3 := threeVersions()
	for _, f := range []*stepflow.Flow[D]{v1, v2, v3} {
		assert.Equal(t, f.Fingerprint(), versions.Fingerprint(versions.Structure(f)))
	}
	assert.NotEqual(t, v1.Fingerprint(), versions.Fingerprint(versions.Paths("a", "b", "c", "d")))
}

func TestRegistryPin(t *testing.T) {
	v1, v2, v3 := threeVersions()
	reg, err := versions.New([]*stepflow.Flow[D]{v3}, nil,
		versions.NewMigration[D]("f/v1", "f/v2").Source(versions.Structure(v1)),
		versions.NewMigration[D]("f/v2", "f/v3").Source(versions.Structure(v2)).Rename("b", "b2").Continue("c", "d"))
	require.NoError(t, err)
	pins := map[string]string{"f/v1": v1.Fingerprint(), "f/v2": v2.Fingerprint(), "f/v3": v3.Fingerprint()}
	assert.Equal(t, pins, reg.Fingerprints())

	ft := &fakeT{}
	assert.True(t, reg.Pin(ft, pins))
	assert.Empty(t, ft.errs)

	ft = &fakeT{}
	assert.False(t, reg.Pin(ft, map[string]string{"f/v1": v1.Fingerprint(), "f/v2": "0123", "f/v0": "abcd"}))
	assert.Equal(t, []string{
		"flow f/v2 has fingerprint " + v2.Fingerprint() + " but 0123 is pinned: the structure of a released version changed. " +
			"Restore it and add the change as a new version with a migration; if f/v2 was never released, update the pin to " + v2.Fingerprint(),
		`flow f/v3 (fingerprint ` + v3.Fingerprint() + `) has no pin: add "f/v3": "` + v3.Fingerprint() + `"`,
		"pin for f/v0, a version the registry does not know",
	}, ft.errs)
}
