package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stepflow-io/go-stepflow/console"
)

// command is one subcommand: its flags are set up by flags, and it runs
// with the client and its remaining arguments.
type command struct {
	name, args, help string
	flags            func(fs *flag.FlagSet, o *opts)
	run              func(ctx context.Context, c *client, o *opts, e *env, args []string) error
}

// opts are the flags of every command; each command uses its own.
type opts struct {
	addr    string
	json    bool
	timeout time.Duration

	filter console.Filter
	limit  int
	after  string
	all    bool

	yes      bool
	name     string
	payload  string
	reason   string
	how      string
	interval time.Duration
}

func filterFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.filter.Flow, "flow", "", "only processes of this `flow` (any version)")
	fs.StringVar(&o.filter.Version, "version", "", "only processes of this flow `version` (deploy/v2)")
	fs.StringVar(&o.filter.Status, "status", "", "only healthy processes with this `status`: running, waiting, done, failed, canceled, needs-attention")
	fs.BoolVar(&o.filter.Quarantined, "quarantined", false, "only quarantined processes")
	fs.StringVar(&o.filter.IDPrefix, "id-prefix", "", "only processes whose id starts with `prefix`")
	fs.StringVar(&o.filter.Position, "position", "", "only processes standing at this node `path` or below it")
	fs.StringVar(&o.filter.ErrorKind, "error-kind", "", "only processes whose failure has this `kind` (error, timeout, panic...)")
}

// changeFlags are the flags of the commands that change processes.
func changeFlags(fs *flag.FlagSet, o *opts) {
	filterFlags(fs, o)
	fs.BoolVar(&o.yes, "yes", false, "with a filter: act on every matching process without asking")
}

var commands = []command{
	{name: "list", args: "[filter flags]", help: "list processes, ordered by id",
		flags: func(fs *flag.FlagSet, o *opts) {
			filterFlags(fs, o)
			fs.IntVar(&o.limit, "limit", 50, "processes per page")
			fs.StringVar(&o.after, "after", "", "start after this `id` (the cursor a previous page printed)")
			fs.BoolVar(&o.all, "all", false, "every page, not only the first")
		}, run: runList},
	{name: "counts", args: "[-flow F]", help: "count processes by status and by flow version",
		flags: func(fs *flag.FlagSet, o *opts) {
			fs.StringVar(&o.filter.Flow, "flow", "", "only processes of this `flow`")
		}, run: runCounts},
	{name: "describe", args: "ID", help: "show one process: status, error, data, and the flow with each node's status", run: runDescribe},
	{name: "history", args: "ID", help: "show the completed steps of one process", run: runHistory},
	{name: "watch", args: "ID | filter flags", help: "follow processes until they have ended (exit 1 if one failed or was canceled)",
		flags: func(fs *flag.FlagSet, o *opts) {
			filterFlags(fs, o)
			fs.DurationVar(&o.interval, "interval", time.Second, "how often to look")
		}, run: runWatch},
	{name: "signal", args: "-name N [-payload JSON] (ID... | filter flags)", help: "deliver a signal",
		flags: func(fs *flag.FlagSet, o *opts) {
			changeFlags(fs, o)
			fs.StringVar(&o.name, "name", "", "the signal's `name` (required)")
			fs.StringVar(&o.payload, "payload", "", "the signal's payload, a JSON `value`")
		}, run: action(console.ActionSignal)},
	{name: "cancel", args: "[-reason R] (ID... | filter flags)", help: "cancel processes",
		flags: func(fs *flag.FlagSet, o *opts) {
			changeFlags(fs, o)
			fs.StringVar(&o.reason, "reason", "", "why, kept with the process")
		}, run: action(console.ActionCancel)},
	{name: "redrive", args: "ID... | filter flags", help: "resume failed processes at the step that failed", flags: changeFlags, run: action(console.ActionRedrive)},
	{name: "resolve", args: "-how succeeded|failed|retry (ID... | filter flags)", help: "say what the at-most-once step of a process that needs attention did",
		flags: func(fs *flag.FlagSet, o *opts) {
			changeFlags(fs, o)
			fs.StringVar(&o.how, "how", "", "succeeded (its effect happened), failed (it did not and must not be retried) or retry")
		}, run: action(console.ActionResolve)},
	{name: "retry", args: "ID... | filter flags", help: "put quarantined processes back in service", flags: changeFlags, run: action(console.ActionRetry)},
	{name: "migrate", args: "ID... | filter flags", help: "move processes to the latest version of their flow", flags: changeFlags, run: action(console.ActionMigrate)},
	{name: "delete", args: "ID... | filter flags", help: "remove processes", flags: changeFlags, run: action(console.ActionDelete)},
}

func commonFlags(fs *flag.FlagSet, o *opts, e *env) {
	def := e.getenv("STEPFLOW_ADDR")
	if def == "" {
		def = "http://localhost:8080/"
	}
	fs.StringVar(&o.addr, "addr", def, "`URL` where the console is mounted (default $STEPFLOW_ADDR)")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up on a request after this long")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: stepflow [-addr URL] [-json] COMMAND [flags] [ID...]")
	fmt.Fprintln(w, "\ncommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.help)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nstepflow COMMAND -h shows a command's flags.")
}

func dispatch(ctx context.Context, args []string, e *env) error {
	var o opts
	global := flag.NewFlagSet("stepflow", flag.ContinueOnError)
	global.SetOutput(e.stderr)
	global.Usage = func() { usage(e.stderr) }
	commonFlags(global, &o, e)
	if err := global.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return &usageError{err.Error()}
	}
	if global.NArg() == 0 {
		usage(e.stderr)
		return usageErrorf("no command")
	}
	name := global.Arg(0)
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return usageErrorf("unknown command %q (stepflow -h lists them)", name)
	}
	cmd := commands[i]
	fs := flag.NewFlagSet("stepflow "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: stepflow %s %s\n%s\n\nflags:\n", name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	// The common flags may come before or after the command: those given
	// before are the defaults of those given after.
	sub := o
	fs.StringVar(&sub.addr, "addr", o.addr, "`URL` where the console is mounted (default $STEPFLOW_ADDR)")
	fs.BoolVar(&sub.json, "json", o.json, "print JSON instead of a table")
	fs.DurationVar(&sub.timeout, "timeout", o.timeout, "give up on a request after this long")
	if cmd.flags != nil {
		cmd.flags(fs, &sub)
	}
	if err := fs.Parse(global.Args()[1:]); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return &usageError{err.Error()}
	}
	c, err := newClient(sub.addr, e.http)
	if err != nil {
		return err
	}
	return cmd.run(ctx, c, &sub, e, fs.Args())
}

// requestCtx bounds one request by -timeout.
func requestCtx(ctx context.Context, o *opts) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.timeout)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// when prints a time for a table: UTC, to the second; "-" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneID(args []string) (string, error) {
	if len(args) != 1 {
		return "", usageErrorf("want one process id, got %d arguments", len(args))
	}
	return args[0], nil
}

func runList(ctx context.Context, c *client, o *opts, e *env, args []string) error {
	if len(args) > 0 {
		return usageErrorf("list takes filter flags, not arguments (%q)", args[0])
	}
	var all []console.ProcessSummary
	after := o.after
	tw := table(e.stdout)
	if !o.json {
		fmt.Fprintln(tw, "ID\tVERSION\tSTATUS\tPOSITION\tERROR KIND\tUPDATED\tDUE")
	}
	for {
		rctx, cancel := requestCtx(ctx, o)
		page, err := c.list(rctx, o.filter, after, o.limit)
		cancel()
		if err != nil {
			return err
		}
		for _, p := range page.Processes {
			if o.json {
				all = append(all, p)
				continue
			}
			status := p.Status
			if p.Quarantine != "" {
				status = "quarantined (" + p.Status + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Version, status, dash(p.Position), dash(p.ErrorKind), when(p.Updated), when(p.Due))
		}
		after = page.Next
		if after == "" || !o.all {
			break
		}
	}
	if o.json {
		return printJSON(e.stdout, console.ListResponse{Processes: orEmpty(all), Next: after})
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if after != "" {
		fmt.Fprintf(e.stderr, "more: add -after %s (or -all)\n", after)
	}
	return nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func runCounts(ctx context.Context, c *client, o *opts, e *env, args []string) error {
	if len(args) > 0 {
		return usageErrorf("counts takes no arguments")
	}
	rctx, cancel := requestCtx(ctx, o)
	defer cancel()
	n, err := c.counts(rctx, o.filter)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(e.stdout, n)
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "VERSION\tSTATUS\tPROCESSES")
	for _, v := range slices.Sorted(maps.Keys(n.ByVersion)) {
		vc := n.ByVersion[v]
		for _, s := range slices.Sorted(maps.Keys(vc.ByStatus)) {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", v, s, vc.ByStatus[s])
		}
		if vc.Quarantined > 0 {
			fmt.Fprintf(tw, "%s\tquarantined\t%d\n", v, vc.Quarantined)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(n.ByStatus)) {
		fmt.Fprintf(tw, "all\t%s\t%d\n", s, n.ByStatus[s])
	}
	if n.Quarantined > 0 {
		fmt.Fprintf(tw, "all\tquarantined\t%d\n", n.Quarantined)
	}
	fmt.Fprintf(tw, "all\tall\t%d\n", n.Total)
	return tw.Flush()
}

// oneProcess reads the one process the arguments name.
func oneProcess(ctx context.Context, c *client, o *opts, args []string) (console.ProcessDetail, error) {
	id, err := oneID(args)
	if err != nil {
		return console.ProcessDetail{}, err
	}
	rctx, cancel := requestCtx(ctx, o)
	defer cancel()
	return c.process(rctx, id)
}

func runDescribe(ctx context.Context, c *client, o *opts, e *env, args []string) error {
	p, err := oneProcess(ctx, c, o, args)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(e.stdout, p)
	}
	tw := table(e.stdout)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("id", p.ID)
	row("version", p.Version)
	status := p.Status
	if p.Quarantine != "" {
		status += " (quarantined: " + p.Quarantine + ")"
	}
	row("status", status)
	row("why", p.Why)
	row("position", strings.Join(p.Positions, ", "))
	if p.Error != nil {
		row("error", fmt.Sprintf("%s at %s: %s", p.Error.Kind, p.Error.Path, p.Error.Message))
	}
	if !p.WakeAt.IsZero() {
		row("wakes at", when(p.WakeAt))
	}
	row("steps", fmt.Sprint(p.Steps))
	row("updated", when(p.Updated))
	row("problem", p.Problem)
	for _, s := range p.Signals {
		row("signal pending", s.Name+" "+string(s.Payload))
	}
	if len(p.Data) > 0 {
		row("data", string(p.Data))
	}
	row("data error", p.DataError)
	if len(p.Actions) > 0 {
		acts := make([]string, len(p.Actions))
		for i, a := range p.Actions {
			acts[i] = string(a)
		}
		row("actions", strings.Join(acts, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Description != nil && p.Description.Tree != "" {
		fmt.Fprintln(e.stdout)
		fmt.Fprint(e.stdout, strings.TrimRight(p.Description.Tree, "\n")+"\n")
	}
	return nil
}

func runHistory(ctx context.Context, c *client, o *opts, e *env, args []string) error {
	p, err := oneProcess(ctx, c, o, args)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(e.stdout, orEmpty(p.History))
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "SEQ\tPATH\tOUTCOME\tATTEMPT\tSTART\tTOOK\tERROR")
	for _, h := range p.History {
		took := "-"
		if !h.Start.IsZero() && !h.End.IsZero() {
			took = h.End.Sub(h.Start).String()
		}
		attempt := "-"
		if h.Attempt > 0 {
			attempt = fmt.Sprint(h.Attempt)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Seq, h.Path, h.Outcome, attempt, when(h.Start), took, dash(h.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(p.History) == 0 {
		fmt.Fprintln(e.stderr, "no history: the flow keeps no record of its steps (stepflow.Options.Record)")
	}
	return nil
}

// ended reports whether a status is terminal, and whether it is a good
// end.
func ended(status string) (end, good bool) {
	switch status {
	case "done":
		return true, true
	case "failed", "canceled":
		return true, false
	}
	return false, false
}

// runWatch follows one process, or every process a filter matches, and
// prints a line whenever one changes status or position, until all have
// ended (or are quarantined, or need attention: nothing moves them but a
// person).
func runWatch(ctx context.Context, c *client, o *opts, e *env, args []string) error {
	if len(args) > 1 || len(args) == 1 && o.filter != (console.Filter{}) {
		return usageErrorf("watch takes one id or filter flags")
	}
	interval := o.interval
	if e.interval > 0 {
		interval = e.interval
	}
	seen := map[string]string{}
	for {
		var procs []console.ProcessSummary
		if len(args) == 1 {
			rctx, cancel := requestCtx(ctx, o)
			p, err := c.process(rctx, args[0])
			cancel()
			if err != nil {
				return err
			}
			procs = append(procs, p.ProcessSummary)
		} else {
			for after := ""; ; {
				rctx, cancel := requestCtx(ctx, o)
				page, err := c.list(rctx, o.filter, after, 500)
				cancel()
				if err != nil {
					return err
				}
				procs = append(procs, page.Processes...)
				if after = page.Next; after == "" {
					break
				}
			}
		}
		open, bad := 0, 0
		for _, p := range procs {
			state := p.Status + " " + p.Position + " " + p.Quarantine
			if seen[p.ID] != state {
				seen[p.ID] = state
				if o.json {
					_ = json.NewEncoder(e.stdout).Encode(p)
				} else {
					line := fmt.Sprintf("%s %s %s", time.Now().UTC().Format(time.TimeOnly), p.ID, p.Status)
					if p.Position != "" {
						line += " at " + p.Position
					}
					if p.Quarantine != "" {
						line += " (quarantined: " + p.Quarantine + ")"
					}
					fmt.Fprintln(e.stdout, line)
				}
			}
			end, good := ended(p.Status)
			switch {
			case p.Quarantine != "" || p.Status == "needs-attention":
				bad++
			case !end:
				open++
			case !good:
				bad++
			}
		}
		if open == 0 {
			if bad > 0 {
				return fmt.Errorf("%d of %d processes did not end well", bad, len(procs))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// action returns the command that runs a on the ids given, or on every
// process the filter flags match.
func action(a console.Action) func(ctx context.Context, c *client, o *opts, e *env, args []string) error {
	return func(ctx context.Context, c *client, o *opts, e *env, args []string) error {
		req := console.BulkRequest{Action: a, Filter: o.filter, Reason: o.reason, Name: o.name, How: o.how}
		switch a {
		case console.ActionSignal:
			if o.name == "" {
				return usageErrorf("signal needs -name")
			}
			if o.payload != "" {
				if !json.Valid([]byte(o.payload)) {
					return usageErrorf("-payload is not a JSON value: %s", o.payload)
				}
				req.Payload = json.RawMessage(o.payload)
			}
		case console.ActionResolve:
			switch o.how {
			case console.ResolveSucceeded, console.ResolveFailed, console.ResolveRetry:
			default:
				return usageErrorf("resolve needs -how succeeded, failed or retry")
			}
		}
		if len(args) > 0 && o.filter != (console.Filter{}) {
			return usageErrorf("give ids or filter flags, not both")
		}
		if len(args) > 0 {
			return actOnIDs(ctx, c, o, e, req, args)
		}
		if o.filter == (console.Filter{}) {
			return usageErrorf("%s needs process ids or filter flags (to act on every process, say so with a filter such as -id-prefix '')", a)
		}
		return actOnFilter(ctx, c, o, e, req)
	}
}

// body is what POST /api/processes/{id}/{action} takes for req's action.
func body(req console.BulkRequest) any {
	switch req.Action {
	case console.ActionSignal:
		return console.SignalRequest{Name: req.Name, Payload: req.Payload}
	case console.ActionCancel:
		return console.CancelRequest{Reason: req.Reason}
	case console.ActionResolve:
		return console.ResolveRequest{How: req.How}
	}
	return struct{}{}
}

func actOnIDs(ctx context.Context, c *client, o *opts, e *env, req console.BulkRequest, ids []string) error {
	res := console.BulkResponse{Action: req.Action, Matched: len(ids), Failed: []console.BulkFailure{}}
	var worst error
	for _, id := range ids {
		rctx, cancel := requestCtx(ctx, o)
		err := c.act(rctx, id, req.Action, body(req))
		cancel()
		if err == nil {
			res.Succeeded++
			continue
		}
		f := console.BulkFailure{ID: id, Error: err.Error()}
		if ae, ok := err.(*apiError); ok {
			f.Code = ae.resp.Code
		} else {
			// The console cannot be reached: the other ids would fail
			// the same way.
			return err
		}
		res.Failed = append(res.Failed, f)
		if worst == nil || exitCode(err) > exitCode(worst) {
			worst = err
		}
	}
	if err := printResult(e, o, res); err != nil {
		return err
	}
	if len(ids) == 1 && worst != nil {
		return worst
	}
	if worst != nil {
		return fmt.Errorf("%s failed on %d of %d processes", req.Action, len(res.Failed), len(ids))
	}
	return nil
}

func actOnFilter(ctx context.Context, c *client, o *opts, e *env, req console.BulkRequest) error {
	req.DryRun = true
	rctx, cancel := requestCtx(ctx, o)
	count, err := c.bulk(rctx, req)
	cancel()
	if err != nil {
		return err
	}
	n := count.Matched
	if n == 0 {
		fmt.Fprintf(e.stderr, "no process matches %s\n", req.Filter.Query().Encode())
		return printResult(e, o, console.BulkResponse{Action: req.Action, Failed: []console.BulkFailure{}})
	}
	fmt.Fprintf(e.stderr, "%s %d processes matching %s\n", req.Action, n, req.Filter.Query().Encode())
	if !o.yes {
		if !e.terminal {
			return usageErrorf("add -yes to %s these %d processes", req.Action, n)
		}
		fmt.Fprint(e.stderr, "proceed? [y/N] ")
		line, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.TrimSpace(strings.ToLower(line)); a != "y" && a != "yes" {
			return fmt.Errorf("not confirmed: nothing done")
		}
	}
	req.DryRun, req.Expect = false, &n
	// The console works through the processes in batches; a large
	// filter takes longer than one request's usual timeout.
	rctx, cancel = context.WithTimeout(ctx, o.timeout+time.Duration(n)*10*time.Millisecond)
	res, err := c.bulk(rctx, req)
	cancel()
	if err != nil {
		return err
	}
	if err := printResult(e, o, res); err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%s failed on %d of %d processes", req.Action, len(res.Failed), res.Matched)
	}
	return nil
}

func printResult(e *env, o *opts, res console.BulkResponse) error {
	if o.json {
		res.Failed = orEmpty(res.Failed)
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "%s: %d succeeded, %d failed\n", res.Action, res.Succeeded, len(res.Failed))
	if len(res.Failed) == 0 {
		return nil
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "ID\tCODE\tERROR")
	for _, f := range res.Failed {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.ID, dash(f.Code), f.Error)
	}
	return tw.Flush()
}
