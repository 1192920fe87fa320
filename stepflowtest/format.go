package stepflowtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// String renders the trace as text, one block per Apply, for failure
// messages and golden files. The output depends only on the run: times come
// from the test clock, and the data is written as JSON, whose map keys are
// sorted.
//
//	flow deploy/v1
//	start running at [check] data={"Ready":false}
//	#1 2025-01-01T00:00:00Z at [check]
//	  call check attempt=1 run
//	  => running steps=1 at [build] data={"Ready":true}
func (tr *Trace[S]) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flow %s\n", tr.Version)
	b.WriteString("start ")
	writeState(&b, tr.Start)
	b.WriteByte('\n')
	for _, t := range tr.Transitions {
		for _, e := range t.Events {
			fmt.Fprintf(&b, "#%d %s %s\n", t.N, stamp(t.At), oneLine(e.String()))
		}
		fmt.Fprintf(&b, "#%d %s at %s\n", t.N, stamp(t.At), positions(t.Before))
		for _, c := range t.Calls {
			fmt.Fprintf(&b, "  call %s attempt=%d", c.Path, c.Attempt)
			if len(c.Iterations) > 0 {
				it := make([]string, len(c.Iterations))
				for i, n := range c.Iterations {
					it[i] = fmt.Sprint(n)
				}
				fmt.Fprintf(&b, " iter=%s", strings.Join(it, "."))
			}
			fmt.Fprintf(&b, " %s", c.Outcome)
			if c.Err != "" {
				fmt.Fprintf(&b, ": %s", oneLine(c.Err))
			}
			b.WriteByte('\n')
		}
		b.WriteString("  => ")
		if t.Crashed {
			b.WriteString("crash, state discarded: ")
		}
		writeState(&b, t.After)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "end %s after %d applies\n", tr.Final.Status, len(tr.Transitions))
	return b.String()
}

func writeState[S any](b *strings.Builder, st stepflow.State[S]) {
	fmt.Fprintf(b, "%s steps=%d", st.Status, st.Steps)
	if p := st.Positions(); len(p) > 0 {
		fmt.Fprintf(b, " at %s", positions(p))
	}
	if st.Intent != "" {
		fmt.Fprintf(b, " intent=%s", st.Intent)
	}
	if !st.WakeAt.IsZero() {
		fmt.Fprintf(b, " until %s", stamp(st.WakeAt))
	}
	if st.Err != nil {
		fmt.Fprintf(b, " err=%s", oneLine(st.Err.String()))
	}
	fmt.Fprintf(b, " data=%s", dataString(st.Data))
}

func dataString(d any) string {
	j, err := json.Marshal(d)
	if err != nil {
		return oneLine(fmt.Sprintf("%+v", d))
	}
	return string(j)
}

func positions(p []string) string { return "[" + strings.Join(p, " ") + "]" }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// oneLine keeps each trace entry on one line whatever an error says.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", `\n`) }
