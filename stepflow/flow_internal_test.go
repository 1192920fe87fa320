package stepflow

import (
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// leaf is a node that does nothing, for tests of the compiled tree.
type leaf struct{ name string }

func (l leaf) Info() Info                     { return Info{Name: l.name, Kind: "leaf", Leaf: true} }
func (l leaf) Children() []Node[None]         { return nil }
func (l leaf) Check() []string                { return nil }
func (l leaf) Advance(c *Cursor[None]) Result { return Complete() }

// TestChildIndexFindsNamesByValue checks the lookup that finds a frame's
// node from where its name points against a plain comparison of strings:
// the children's own names, copies of them, their prefixes (which point
// into the same bytes) and other strings.
func TestChildIndexFindsNamesByValue(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		names := rapid.SliceOfNDistinct(rapid.StringMatching(`[a-c]{1,4}`), 1, 2*smallFanout, rapid.ID[string]).Draw(t, "names")
		nodes := make([]Node[None], len(names))
		for i, n := range names {
			nodes[i] = leaf{n}
		}
		f, err := New("index/v1", nodes...)
		if err != nil {
			t.Fatal(err)
		}
		byValue := func(s string) (int, bool) {
			i := slices.Index(names, s)
			return max(i, 0), i >= 0
		}
		check := func(what, s string) {
			gi, gok := f.root.childIndex(s)
			wi, wok := byValue(s)
			if gi != wi || gok != wok {
				t.Fatalf("%s %q: got %d %v, want %d %v", what, s, gi, gok, wi, wok)
			}
		}
		for _, c := range f.root.children {
			name := c.info.Name
			check("name", name)
			check("copy", strings.Clone(name))
			check("fresh frame", c.fresh[0].Name)
			for k := 1; k < len(name); k++ {
				check("prefix", name[:k])
				check("suffix", name[k:])
			}
		}
		check("other", rapid.StringMatching(`[a-d]{0,5}`).Draw(t, "other"))
	})
}
