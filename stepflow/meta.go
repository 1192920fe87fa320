package stepflow

import "slices"

// Meta is what people read about a node: a sentence saying what it is for,
// and tags to find and group nodes by (the system it touches, the team that
// owns it). It never changes what the node does, so it does not enter the
// flow's Fingerprint: describing a node is not a new version.
type Meta struct {
	// Description is a short sentence for people: the text tree of
	// Describe, Mermaid labels, the console.
	Description string
	// Tags are free-form labels, e.g. "db", "external", "owner=payments".
	Tags []string
}

// Annotate returns n with meta attached; New unwraps it, so the node runs
// as n does and keeps n's name. Annotating an annotated node adds to its
// tags and replaces its description when meta has one. Flow.Nodes,
// Flow.NodesTagged and Describe report the metadata.
func Annotate[S any](n Node[S], meta Meta) Node[S] {
	if a, ok := n.(*annotated[S]); ok {
		m := a.meta
		if meta.Description != "" {
			m.Description = meta.Description
		}
		m.Tags = append(slices.Clip(m.Tags), meta.Tags...)
		return &annotated[S]{Node: a.Node, meta: m}
	}
	return &annotated[S]{Node: n, meta: Meta{Description: meta.Description, Tags: slices.Clone(meta.Tags)}}
}

// annotated carries a node's Meta until New unwraps it. Outside a flow it
// behaves as its node.
type annotated[S any] struct {
	Node[S]
	meta Meta
}

// unannotate returns the node inside any annotations, and their metadata.
func unannotate[S any](n Node[S]) (Node[S], Meta) {
	if a, ok := n.(*annotated[S]); ok {
		return a.Node, a.meta
	}
	return n, Meta{}
}

// NodesTagged lists, in flow order, the nodes carrying tag.
func (f *Flow[S]) NodesTagged(tag string) []NodeInfo {
	var out []NodeInfo
	for _, c := range f.order {
		if slices.Contains(c.meta.Tags, tag) {
			out = append(out, c.nodeInfo())
		}
	}
	return out
}
