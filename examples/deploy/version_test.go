package main

import (
	"testing"

	"github.com/stepflow-io/go-stepflow/versions"
)

// TestReleasedVersionsPinned fails when deploy/v1, a released version, is
// edited in place: its running processes would change meaning. Add
// deploy/v2 with a migration instead (docs/versioning.md). The fingerprint
// covers paths, kinds and policies, so it is taken at the default scale.
func TestReleasedVersionsPinned(t *testing.T) {
	f, err := DeployFlow(NewWorld(1))
	if err != nil {
		t.Fatal(err)
	}
	versions.Pin(t, f, "6ee383b81a81a1ddd8997853")
}
