package runner

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Options configures a Runner. The zero value (or a nil *Options) is ready
// to use; each field documents its default.
type Options struct {
	// Owner names this runner in the store's leases. Runners sharing a
	// store must use different owners. Default: host name, process id and
	// a counter, unique per Runner.
	Owner string
	// Workers is the number of goroutines that advance processes. Default
	// 1: one goroutine multiplexes every process.
	Workers int
	// Batch is how many due processes a worker claims at once. Default 256.
	Batch int
	// GroupCommit is the most writes that share one store transaction.
	// Default 0: all the writes of a claimed batch are committed together.
	// 1 commits every step on its own, the most durable and slowest choice.
	// See the package documentation for the trade-off.
	GroupCommit int
	// Lease is how long a claimed process stays reserved for this runner.
	// Leases of processes still being worked on are renewed every Lease/3;
	// a runner that dies loses its leases after at most Lease, and another
	// runner takes its processes over. It also bounds how long the runner
	// waits for a claim (and a renewal for Lease/3) before taking the store
	// as failing. Default 30s.
	Lease time.Duration
	// MaxIdle bounds how long an idle worker sleeps before it looks at the
	// store again even without a notification. Default 1 minute.
	MaxIdle time.Duration
	// Clock is the time source for Apply, claims and due times. Default:
	// the real clock.
	Clock stepflow.Clock
	// Encoding of newly written states: "msgpack" (the default) or "json".
	// Reading accepts both, so a store may hold a mix.
	Encoding string
	// Codec limits for encoding and decoding; nil means codec defaults.
	Codec *codec.Options
	// Cache is how many decoded states the runner keeps between steps to
	// skip decoding a process it wrote itself. A cached state is used only
	// when its revision is still the stored one. Runnable processes are
	// served in turn, so a runner working on more processes than the cache
	// holds decodes nearly every state it claims, and its throughput drops
	// by the cost of a decode. An entry costs about 400 bytes plus the
	// decoded data. Default 131072; negative disables the cache.
	Cache int
	// Limits are the rules of the classes of limited resources that
	// Limited nodes name (see Limit). Default none.
	Limits map[string]Limit
	// Metrics receives measurements; nil means none.
	Metrics *Metrics
	// Tracer follows every Apply the runner makes (a tracing adapter
	// such as observe/steptrace); nil means none.
	Tracer ApplyTracer
	// Retention, when positive, deletes processes that ended (done,
	// failed or canceled, not quarantined) longer than Retention ago: Run
	// deletes them in batches of RetentionBatch, every RetentionEvery.
	// Default 0: ended processes are kept until deleted.
	Retention time.Duration
	// RetentionEvery is how often Run looks for ended processes to
	// delete. Default Retention/10, at most an hour, at least a second.
	RetentionEvery time.Duration
	// RetentionBatch is how many processes one delete removes at most.
	// Default 1000.
	RetentionBatch int
	// OnError is told about errors that Run retries (a store that is
	// briefly unreachable, for example). Once a worker has failed without
	// a break for longer than Lease, the errors come wrapped in a
	// *StallError, which matches ErrStalled. Default: ignored.
	OnError func(error)
}

// Defaults for Options.
const (
	DefaultBatch   = 256
	DefaultLease   = 30 * time.Second
	DefaultMaxIdle = time.Minute
	DefaultCache   = 1 << 17
)

var ownerSeq atomic.Uint64

func (o Options) withDefaults() (Options, error) {
	if o.Workers <= 0 {
		o.Workers = 1
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.GroupCommit <= 0 || o.GroupCommit > o.Batch {
		o.GroupCommit = o.Batch
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = DefaultMaxIdle
	}
	if o.Cache == 0 {
		o.Cache = DefaultCache
	}
	for class, l := range o.Limits {
		if err := l.check(class); err != nil {
			return o, err
		}
	}
	if o.Retention < 0 {
		return o, fmt.Errorf("%w: negative retention %s", ErrInvalidOptions, o.Retention)
	}
	if o.RetentionEvery <= 0 {
		o.RetentionEvery = min(max(o.Retention/10, time.Second), time.Hour)
	}
	if o.RetentionBatch <= 0 {
		o.RetentionBatch = 1000
	}
	if o.Owner == "" {
		host, _ := os.Hostname()
		o.Owner = host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(ownerSeq.Add(1), 10)
	}
	switch o.Encoding {
	case "":
		o.Encoding = "msgpack"
	case "msgpack", "json":
	default:
		return o, fmt.Errorf("%w: unknown encoding %q", ErrInvalidOptions, o.Encoding)
	}
	return o, nil
}

// Metrics are hooks for a metrics adapter (Prometheus, OpenTelemetry...).
// Every field is optional. Hooks are called synchronously from the worker
// goroutines, possibly concurrently, so they must be fast and safe for
// concurrent use.
type Metrics struct {
	// Step is called after every call of user code (a step, a predicate)
	// with its wall-clock duration and error. Setting it installs an
	// interceptor, which costs a little per step.
	Step func(call stepflow.Call, d time.Duration, err error)
	// Applied is called after every Apply that was saved, with the
	// process's status before and after. Counting transitions gives the
	// number of processes per status without asking the store (see also
	// Runner.Counts).
	Applied func(t Transition)
	// Committed is called after every store transaction with the number of
	// writes, how many the store refused (conflict, lease lost), its
	// duration, and the error that failed the whole transaction if any.
	Committed func(writes, refused int, d time.Duration, err error)
	// Quarantined is called when a process is set aside, with the flow
	// version it was stored under.
	Quarantined func(id, version string, err error)
	// Migrated is called when a process was moved from one version of
	// its flow to another (RegisterVersions) and saved so.
	Migrated func(id, from, to string)
	// Deleted is called after the retention of Run deleted processes.
	Deleted func(n int)
	// Claimed is called for every claimed process that is applied, with
	// how late it was picked up: the time from when it became due (its
	// wake time, or its last write for one that was running) to the
	// Apply. A lag that grows says the runners do not keep up.
	Claimed func(version string, lag time.Duration)
}

// ApplyTracer follows the Applies of a runner, for tracing. Both methods
// are called from the worker goroutines, possibly concurrently.
type ApplyTracer interface {
	// ApplyStart is called before the runner applies process id, stored
	// under version with status from. The context it returns is the
	// Apply's: the calls of user code it makes get contexts derived from
	// it.
	ApplyStart(ctx context.Context, id, version string, from stepflow.Status) context.Context
	// ApplyEnd is called after that Apply with the context ApplyStart
	// returned, the process's new status and the Apply's error (a
	// *stepflow.StepError when a step failed the process).
	ApplyEnd(ctx context.Context, to stepflow.Status, err error)
}

// Transition is one saved Apply, for Metrics.Applied.
type Transition struct {
	// ID of the process and the flow version of its new state.
	ID, Version string
	// From and To are its status before and after.
	From, To stepflow.Status
}
