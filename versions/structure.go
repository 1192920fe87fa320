package versions

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Structure returns the structure of a flow as a migration needs it: every
// node's path, kind, detail and children, in flow order. It is f.Nodes();
// record it (for example as JSON in testdata) before deleting an old
// version's code, and hand it to Migration.Source.
func Structure[S any](f *stepflow.Flow[S]) []stepflow.NodeInfo { return f.Nodes() }

// Paths builds a minimal recorded structure from node paths alone, for when
// only the paths of an old version are known. Kinds are left empty, so a
// migration carries every frame's memory over unchanged (it cannot tell
// whether a node changed its kind) and Fingerprint of the result does not
// match the flow's. Parents must be listed before their children.
func Paths(paths ...string) []stepflow.NodeInfo {
	out := make([]stepflow.NodeInfo, 0, len(paths))
	idx := make(map[string]int, len(paths))
	for _, p := range paths {
		names := stepflow.SplitPath(p)
		ni := stepflow.NodeInfo{Path: p, Depth: len(names)}
		if len(names) > 0 {
			ni.Name = names[len(names)-1]
		}
		if i, ok := idx[parentOf(p)]; ok {
			out[i].Children = append(out[i].Children, ni.Name)
		}
		idx[p] = len(out)
		out = append(out, ni)
	}
	return out
}

// Fingerprint computes the fingerprint of a recorded structure. For the
// structure of a flow it equals the flow's own Fingerprint, so a recorded
// structure can be checked against the pin of the version it describes.
func Fingerprint(nodes []stepflow.NodeInfo) string {
	h := sha256.New()
	for _, n := range nodes {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", n.Path, n.Kind, n.Detail)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// shape indexes a structure by path.
type shape struct {
	version string
	nodes   []stepflow.NodeInfo
	byPath  map[string]int
	// top lists the top-level names, in flow order.
	top []string
}

func newShape(version string, nodes []stepflow.NodeInfo) *shape {
	s := &shape{version: version, nodes: nodes, byPath: make(map[string]int, len(nodes))}
	for i, n := range nodes {
		s.byPath[n.Path] = i
		if !strings.Contains(n.Path, "/") {
			s.top = append(s.top, n.Name)
		}
	}
	return s
}

func (s *shape) has(path string) bool {
	_, ok := s.byPath[path]
	return ok
}

// kind returns the kind at path, "" when unknown.
func (s *shape) kind(path string) string {
	if s == nil {
		return ""
	}
	if i, ok := s.byPath[path]; ok {
		return s.nodes[i].Kind
	}
	return ""
}

// children returns the child names of path ("" is the root) in flow order.
func (s *shape) children(path string) []string {
	if path == "" {
		return s.top
	}
	if i, ok := s.byPath[path]; ok {
		return s.nodes[i].Children
	}
	return nil
}

// instances reports whether the frames under the node at path are ForEach
// instances.
func (s *shape) instances(path string) bool {
	if i, ok := s.byPath[path]; ok && path != "" {
		return s.nodes[i].Instances
	}
	return false
}

// validate checks that every frame of root names a node of the structure,
// the check stepflow.Flow.Validate makes, for versions known only by their
// recorded structure.
func (s *shape) validate(root *stepflow.Frame) error {
	var walk func(node string, f *stepflow.Frame, instance bool) error
	walk = func(node string, f *stepflow.Frame, instance bool) error {
		for i := range f.Children {
			c := &f.Children[i]
			if !instance && s.instances(node) {
				if !isInstance(c.Name) {
					return &stepflow.StateError{Path: joinPath(node, c.Name), Reason: "want an instance frame like [0]"}
				}
				if err := walk(node, c, true); err != nil {
					return err
				}
				continue
			}
			p := joinPath(node, c.Name)
			if !s.has(p) {
				return &stepflow.StateError{Path: p, Reason: "no such node in flow " + s.version}
			}
			if err := walk(p, c, false); err != nil {
				return err
			}
		}
		return nil
	}
	return walk("", root, false)
}

// parentOf returns the parent path of p ("" for a top-level path).
func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}
