package combinators

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// ForEach computes a list of items once (items is called when the node is
// entered), stores it in the state, and runs body once per item. Steps of
// the body read their item with Item. Items are stored JSON-encoded, so I
// must round-trip through encoding/json.
//
// Items run one at a time unless Concurrency raises the limit. Progress is
// in the frame: Index is the number of items started, Count the number
// completed, and each item in progress has an instance frame "[i]" (its
// path segment, as in "deploy/each/[3]/step"). The first failing item
// abandons the others (their Finally cleanups run) and fails the node;
// WaitAll lets every item run to its end and then reports every failure.
func ForEach[S, I any](name string, items func(context.Context, *S) ([]I, error), body ...stepflow.Node[S]) *ForEachNode[S] {
	n := &ForEachNode[S]{name: name, body: body, conc: 1}
	if items != nil {
		n.items = func(ctx context.Context, d *S) ([][]byte, error) {
			list, err := items(ctx, d)
			if err != nil {
				return nil, err
			}
			out := make([][]byte, len(list))
			for i, it := range list {
				if out[i], err = json.Marshal(it); err != nil {
					return nil, stepflow.Permanent(fmt.Errorf("encode item %d: %w", i, err))
				}
			}
			return out, nil
		}
	}
	return n
}

// Item returns the current ForEach item, decoded into I. It fails outside
// a ForEach body or when the item does not decode into I.
func Item[I any](ctx context.Context) (I, error) {
	var it I
	call, ok := stepflow.CallFrom(ctx)
	if !ok || call.Item == nil {
		return it, errors.New("stepflow: no ForEach item in this context")
	}
	if err := json.Unmarshal(call.Item, &it); err != nil {
		return it, fmt.Errorf("stepflow: decode ForEach item: %w", err)
	}
	return it, nil
}

// ForEachNode is a ForEach; Concurrency changes how many items run at once.
type ForEachNode[S any] struct {
	name    string
	items   func(context.Context, *S) ([][]byte, error)
	body    []stepflow.Node[S]
	conc    int
	waitAll bool
	gor     concurrent[S]
}

// Goroutines returns a copy whose items' calls of one Apply run at the
// same time, in up to limit goroutines (Concurrency says how many items
// are in progress at once). Each item works on its own copy of the data,
// merged back in item order as Parallel.Goroutines describes.
func (n *ForEachNode[S]) Goroutines(limit int, merge func(dst, src *S)) *ForEachNode[S] {
	cp := *n
	cp.gor = concurrent[S]{limit: limit, merge: merge}
	return &cp
}

// WaitAll returns a copy that runs every item to its end, failed or not,
// and then, if any failed, fails with all their failures joined (each
// reachable with errors.Is/As in the Apply where the last one happened).
// The failures are kept in the state meanwhile. Count then counts the
// items that ended either way. A redriven WaitAll ForEach runs every item
// again, as a Parallel does.
func (n *ForEachNode[S]) WaitAll() *ForEachNode[S] {
	cp := *n
	cp.waitAll = true
	return &cp
}

// Concurrency returns a copy running up to n items side by side; each
// Apply advances each of them by at most one step.
func (n *ForEachNode[S]) Concurrency(k int) *ForEachNode[S] {
	cp := *n
	cp.conc = k
	return &cp
}

func (n *ForEachNode[S]) Info() stepflow.Info {
	d := fmt.Sprintf("concurrency %d", n.conc)
	if n.waitAll {
		d += ", wait all"
	}
	return stepflow.Info{Name: n.name, Kind: "foreach", Detail: n.gor.detail(d), Leaf: true, Instances: true}
}

func (n *ForEachNode[S]) Children() []stepflow.Node[S] { return n.body }

func (n *ForEachNode[S]) Check() []string {
	var p []string
	if n.items == nil {
		p = append(p, "nil items function")
	}
	if len(n.body) == 0 {
		p = append(p, "foreach with an empty body")
	}
	if n.conc < 1 {
		p = append(p, fmt.Sprintf("concurrency %d must be at least 1", n.conc))
	}
	return append(p, n.gor.check()...)
}

func (n *ForEachNode[S]) Advance(c *stepflow.Cursor[S]) stepflow.Result {
	f := c.Frame()
	switch f.Branch {
	case "":
		var list [][]byte
		if res, ok := call(c, func(ctx context.Context, d *S) (e error) {
			list, e = n.items(ctx, d)
			return e
		}); !ok {
			return res
		}
		c.Record(fmt.Sprintf("%d items", len(list)), nil)
		f.Payload, f.Branch = packItems(list), phaseRunning
	case phaseFailing:
		return abandonThenFail(c)
	}
	total := itemCount(f.Payload)
	if total < 0 {
		return c.Invalid("corrupt item list")
	}
	for c.Instances() < n.conc && int(f.Index) < total {
		c.AddInstance(stepflow.InstanceName(int(f.Index)))
		f.Index++
	}
	turns := share(c)
	res := stepflow.Complete()
	added := 0 // items started by this loop get no budget until the next Apply
	// With Goroutines, the items in progress take their turns at once, and
	// the loop below reads their results in item order.
	var pre []stepflow.Result
	inProgress := c.Instances()
	if n.gor.on() && inProgress > 1 {
		var calls int
		pre, calls = n.gor.run(c, turns.budget, inProgress, func(fk *stepflow.Cursor[S], j int) stepflow.Result {
			return n.advanceItem(fk.Instance(j), f.Payload, total)
		})
		if c.Aborted() {
			return stepflow.Continue()
		}
		turns.ran = turns.ran || calls > 0
	}
	for j, k := 0, 0; j < c.Instances(); k++ {
		var r stepflow.Result
		if k < len(pre) {
			r = pre[k]
		} else {
			turns.give(c, j >= c.Instances()-added)
			r = n.advanceItem(c.Instance(j), f.Payload, total)
			if c.Aborted() {
				return stepflow.Continue()
			}
			turns.took(c)
		}
		failed := r.Outcome == stepflow.OutcomeFail
		if failed && n.waitAll && !errors.Is(r.Err, stepflow.ErrCanceled) {
			// The item has ended: keep its failure and go on.
			c.NoteError(r.Err)
			f.Payload = appendItemFailure(f.Payload, c.Failure(r.Err))
			r.Outcome = stepflow.OutcomeDone
		}
		switch r.Outcome {
		case stepflow.OutcomeDone:
			c.RemoveInstance(j)
			f.Count++
			if int(f.Index) < total {
				c.AddInstance(stepflow.InstanceName(int(f.Index)))
				f.Index++
				added++
			}
			continue
		case stepflow.OutcomeFail:
			c.NoteError(r.Err)
			f.Branch, f.Err = phaseFailing, c.Failure(r.Err)
			c.RemoveInstance(j)
			c.SetBudget(0)
			return abandonThenFail(c)
		}
		res = stepflow.Combine(res, r)
		j++
	}
	turns.done(c)
	if res.Outcome == stepflow.OutcomeDone {
		if failures := itemFailures(f.Payload); len(failures) > 0 {
			return stepflow.Fail(&stepflow.StepError{Path: c.Path(), Attempt: c.Attempt(), Err: failuresError(c, failures)})
		}
		f.Payload = nil
	}
	return res
}

// advanceItem advances the body of the item whose instance ic is over.
func (n *ForEachNode[S]) advanceItem(ic *stepflow.Cursor[S], payload []byte, total int) stepflow.Result {
	idx, ok := instanceIndex(ic.Peek().Name, total)
	if !ok {
		return ic.Invalid("bad instance frame %q", ic.Peek().Name)
	}
	ic.SetItem(itemAt(payload, idx))
	ic.AddIteration(uint32(idx))
	return ic.Sequence(0, len(n.body))
}

// Redrive resumes a failed ForEach at the item that failed when items run
// one at a time. With Concurrency above one, items abandoned beside the
// failed one left nothing to resume from, so the node starts again.
func (n *ForEachNode[S]) Redrive(f *stepflow.Frame) {
	if n.conc > 1 || n.waitAll {
		*f = stepflow.Frame{Name: f.Name}
		return
	}
	if f.Branch == phaseFailing && f.Err != nil {
		// Restart the failed item: it is the one whose instance is gone
		// while Count says it had not completed.
		f.Branch = phaseRunning
		if idx := failedItem(f); idx >= 0 {
			f.Children = append(f.Children, stepflow.Frame{Name: stepflow.InstanceName(idx)})
		}
	}
	f.Err = nil
}

// failedItem finds the item index named in the failure path.
func failedItem(f *stepflow.Frame) int {
	for _, seg := range stepflow.SplitPath(f.Err.Path) {
		if len(seg) > 2 && seg[0] == '[' {
			if i, err := strconv.Atoi(strings.Trim(seg, "[]")); err == nil {
				return i
			}
		}
	}
	return -1
}

// Items are packed so that item i is found without reading the others:
// a 4-byte count, count+1 4-byte offsets, then the JSON of each item. The
// last offset is the end of the items; what follows, if anything, is the
// JSON list of the failures a WaitAll ForEach has kept.
func packItems(list [][]byte) []byte {
	size := 4 + 4*(len(list)+1)
	for _, it := range list {
		size += len(it)
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint32(b, uint32(len(list)))
	off := uint32(4 + 4*(len(list)+1))
	for _, it := range list {
		b = binary.BigEndian.AppendUint32(b, off)
		off += uint32(len(it))
	}
	b = binary.BigEndian.AppendUint32(b, off)
	for _, it := range list {
		b = append(b, it...)
	}
	return b
}

// itemCount returns the number of packed items, or -1 if b is malformed.
func itemCount(b []byte) int {
	if len(b) < 8 {
		return -1
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < 0 || 4+4*(n+1) > len(b) || int(binary.BigEndian.Uint32(b[4+4*n:])) > len(b) {
		return -1
	}
	return n
}

// itemsEnd is where the packed items of b end (b is well formed).
func itemsEnd(b []byte) int {
	return int(binary.BigEndian.Uint32(b[4+4*binary.BigEndian.Uint32(b):]))
}

// appendItemFailure adds f to the failures kept after the items.
func appendItemFailure(b []byte, f *stepflow.Failure) []byte {
	end := itemsEnd(b)
	list := append(itemFailuresAt(b[end:]), *f)
	out, _ := json.Marshal(list)
	return append(b[:end:end], out...)
}

// itemFailures returns the failures kept after the items of b.
func itemFailures(b []byte) []stepflow.Failure {
	if itemCount(b) < 0 {
		return nil
	}
	return itemFailuresAt(b[itemsEnd(b):])
}

func itemFailuresAt(b []byte) []stepflow.Failure {
	var list []stepflow.Failure
	if len(b) > 0 {
		_ = json.Unmarshal(b, &list)
	}
	return list
}

func itemAt(b []byte, i int) []byte {
	lo := binary.BigEndian.Uint32(b[4+4*i:])
	hi := binary.BigEndian.Uint32(b[8+4*i:])
	if lo > hi || int(hi) > len(b) {
		return nil
	}
	return b[lo:hi]
}

func instanceIndex(name string, total int) (int, bool) {
	if len(name) < 3 || name[0] != '[' || name[len(name)-1] != ']' {
		return 0, false
	}
	i, err := strconv.Atoi(name[1 : len(name)-1])
	return i, err == nil && i >= 0 && i < total
}
