package combinators

import (
	"fmt"
	"sync"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// concurrent is the Goroutines option of Parallel and ForEach: the calls
// their children make in one Apply run at the same time, each child on a
// fork of the Apply (stepflow.Cursor.Fork), joined back in child order.
type concurrent[S any] struct {
	limit int
	merge func(dst, src *S)
}

func (cc concurrent[S]) on() bool { return cc.limit > 1 }

// detail adds the option to a node's detail, so that it enters the
// fingerprint: how data is merged is behaviour.
func (cc concurrent[S]) detail(d string) string {
	if !cc.on() {
		return d
	}
	d += fmt.Sprintf(", %d goroutines", cc.limit)
	if cc.merge != nil {
		d += " merged by func"
	}
	return d
}

func (cc concurrent[S]) check() []string {
	if cc.limit < 0 {
		return []string{fmt.Sprintf("negative goroutine limit %d", cc.limit)}
	}
	return nil
}

// run advances n children through forks with a budget of at most one call
// each, each in its own goroutine, at most limit at a time, and joins the
// forks in child order. It returns the children's results and how many
// made a call, or nil when this Apply cannot fork: the caller then
// advances the children one after the other.
func (cc concurrent[S]) run(c *stepflow.Cursor[S], budget, n int, advance func(fk *stepflow.Cursor[S], j int) stepflow.Result) ([]stepflow.Result, int) {
	forks := make([]*stepflow.Cursor[S], n)
	for j := range n {
		fk, ok := c.Fork(min(budget, 1))
		if !ok {
			c.Join(forks[:j], cc.merge) // nothing ran: gives the forks back
			return nil, 0
		}
		forks[j] = fk
	}
	res := make([]stepflow.Result, n)
	sem := make(chan struct{}, cc.limit)
	var wg sync.WaitGroup
	for j := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res[j] = advance(forks[j], j)
		})
	}
	wg.Wait()
	return res, c.Join(forks, cc.merge)
}
