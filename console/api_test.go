package console_test

import (
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// api.go holds the types of the JSON API for clients to import: it must
// not pull the runner, a store or anything outside the standard library.
func TestAPIImportsOnlyTheStandardLibrary(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, parser.ImportsOnly)
	require.NoError(t, err)
	require.NotEmpty(t, f.Imports)
	for _, imp := range f.Imports {
		path, err := strconv.Unquote(imp.Path.Value)
		require.NoError(t, err)
		first, _, _ := strings.Cut(path, "/")
		require.NotContains(t, first, ".", "api.go imports %s", path)
	}
}
