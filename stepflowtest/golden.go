package stepflowtest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stretchr/testify/assert"
)

// The -update flag rewrites golden files. It is registered here, unless a
// package initialized earlier already registered a flag of that name, so
// that `go test -update` works in any package that uses Golden. A test
// package that needs the flag itself reads it with Update rather than
// registering it again (which would panic with "flag redefined").
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata instead of comparing with them")
	}
}

// Update reports whether the test binary was started with -update.
func Update() bool {
	f := flag.Lookup("update")
	if f == nil {
		return false
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return f.Value.String() == "true"
	}
	b, _ := g.Get().(bool)
	return b
}

// GoldenDir is the directory Golden keeps its files in, relative to the
// package under test.
const GoldenDir = "testdata"

// Golden compares the trace, rendered by Trace.String, with the file
// testdata/<name>.golden, and reports a difference to t. Run the tests with
// -update to write the file instead; review the change like code, since it
// shows how the flow's behaviour changed.
func Golden[S any](t TestingT, tr *Trace[S], name string) bool {
	markHelper(t)
	return GoldenText(t, tr.String(), name)
}

// GoldenText is Golden for any text, such as a Describe tree.
func GoldenText(t TestingT, got, name string) bool {
	markHelper(t)
	path := filepath.Join(GoldenDir, filepath.FromSlash(name)+".golden")
	if Update() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return assert.Fail(t, fmt.Sprintf("golden: %v", err))
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			return assert.Fail(t, fmt.Sprintf("golden: %v", err))
		}
		return true
	}
	want, err := os.ReadFile(path)
	if err != nil {
		return assert.Fail(t, fmt.Sprintf("golden: %v (run the test with -update to create it)", err))
	}
	w := strings.ReplaceAll(string(want), "\r\n", "\n")
	if w == got {
		return true
	}
	return assert.Fail(t, fmt.Sprintf("golden %s differs at line %s\n(run the test with -update to accept the new output)\ngot:\n%s",
		path, firstDiff(w, got), got))
}
