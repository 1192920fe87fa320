// Command stepflow is the command line of a stepflow console: it lists,
// describes and changes the processes of the runner a console serves
// (package console), one at a time or every process a filter matches.
//
//	stepflow [-addr URL] [-json] COMMAND [flags] [ID...]
//
// Commands:
//
//	list      processes matching the filter flags, a page at a time (-all for every page)
//	counts    how many processes there are, by status and by flow version
//	describe  one process: status, why, error, wake time, data, the flow with each node's status
//	history   the completed steps of one process
//	watch     follow one process (or those a filter matches) until it has ended
//	signal    deliver a signal (-name, -payload JSON)
//	cancel    cancel (-reason)
//	redrive   resume failed processes at the step that failed
//	resolve   say what an at-most-once step did (-how succeeded|failed|retry)
//	retry     put quarantined processes back in service
//	migrate   move processes to their flow's latest version
//	delete    remove processes
//
// The changing commands act on the ids given, or, with filter flags and no
// id, on every process the filter matches: the console first counts them,
// and the command goes on with -yes (or after a confirmation when it runs
// in a terminal); the console then refuses if the count changed meanwhile.
// Filter flags: -flow, -version, -status, -quarantined, -id-prefix,
// -position (a node path: matches it and the nodes below it), -error-kind.
//
// -addr (default $STEPFLOW_ADDR, else http://localhost:8080/) is the URL
// where the console is mounted. Output is an aligned table, or JSON with
// -json. Exit status: 0 success; 1 the console refused an action, a bulk
// action failed on some processes, or a watched process failed or was
// canceled; 2 a usage error; 3 the console could not be reached or failed;
// 4 no such process; 5 not allowed (the console's authorization, or actions
// not enabled).
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"time"
)

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitNotFound    = 4
	exitForbidden   = 5
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], &env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.Getenv, http: http.DefaultClient, terminal: isTerminal(os.Stdin),
	}))
}

// env is what a command reads and writes besides its arguments.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	http           *http.Client
	terminal       bool          // stdin is a terminal: bulk actions may ask for confirmation
	interval       time.Duration // watch's polling interval; 0 means the -interval flag
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	err := dispatch(ctx, args, e)
	if err != nil {
		fmt.Fprintln(e.stderr, "stepflow:", err)
	}
	return exitCode(err)
}

// usageError is a command line that does not make sense.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
