package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stepflow-io/go-stepflow/codec"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Sentinel errors. Every store returns them (possibly wrapped), so callers
// can branch with errors.Is whatever the implementation.
var (
	// ErrNotFound: no process has this id.
	ErrNotFound = errors.New("stepflow/store: process not found")
	// ErrExists: Create was given an id that is already taken.
	ErrExists = errors.New("stepflow/store: process already exists")
	// ErrConflict: the stored revision is not the one the write was computed
	// from; someone else wrote the process in between. Reload and retry.
	ErrConflict = errors.New("stepflow/store: revision conflict")
	// ErrLeaseLost: the writer no longer holds the process's lease (it
	// expired and another owner claimed it, or it was released). The
	// writer must drop its result: the new owner redoes the step.
	ErrLeaseLost = errors.New("stepflow/store: lease lost")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("stepflow/store: store closed")
	// ErrInvalid: a request is malformed (empty id or owner, non-positive
	// limit or lease, and so on).
	ErrInvalid = errors.New("stepflow/store: invalid request")
)

// WriteError reports why one write of a Commit batch was not applied.
type WriteError struct {
	// ID of the process.
	ID string
	// Err is ErrNotFound, ErrConflict or ErrLeaseLost.
	Err error
}

func (e *WriteError) Error() string { return fmt.Sprintf("write %q: %v", e.ID, e.Err) }
func (e *WriteError) Unwrap() error { return e.Err }

// Record is one stored process.
type Record struct {
	// ID identifies the process; it is also stepflow.State.ID.
	ID string
	// Version is the flow version of the stored state, e.g. "deploy/v1";
	// the flow's name is the part before '/' (Flow). Stores index it: a
	// claim names the versions its runner can apply. Create fills it in
	// from Blob (codec.PeekVersion) when it is empty.
	Version string
	// Revision counts the writes of this record: 1 after Create, plus one
	// per successful write. Writes name the revision they were computed
	// from.
	Revision uint64
	// Status mirrors the state's status, for Count and List.
	Status stepflow.Status
	// Position is where the process stands, for people and filters: the
	// node path where it failed or needs a person, or where it waits
	// (runners leave it "" for a running process, which moves on at once,
	// and for one that has ended well). ErrorKind is the kind of its failure
	// (stepflow.Failure.Kind) when it failed or needs attention. Stores
	// index both, so that "every deploy process that failed at
	// shouldDeploy/rollout" is found without reading every state.
	Position  string
	ErrorKind string
	// Updated is when the record was last created or written, as the
	// writer said (Record.Updated on Create, Write.Updated on Commit), or
	// the store's clock when the writer gave none. Retention
	// (DeleteEnded) goes by it.
	Updated time.Time
	// Due is when the process should next be applied; zero when it never
	// is (terminal, needs attention, quarantined). While the record is
	// leased, Due is the end of the lease.
	Due time.Time
	// Owner holds the lease, "" when the record is not leased.
	Owner string
	// Quarantine is why the process was set aside, "" for a healthy one.
	Quarantine string
	// Blob is the encoded state, kept byte for byte.
	Blob []byte
}

// Flow returns the name of the record's flow: Version up to its first '/'.
func (r *Record) Flow() string { return codec.FlowName(r.Version) }

// Write is one new state for Commit.
type Write struct {
	// ID of the process.
	ID string
	// Revision is the revision the new state was computed from. The write
	// applies only if it is still the stored revision.
	Revision uint64
	// Version of the new state; "" keeps the stored one. A runner that
	// migrated the state to a new version of its flow sets it.
	Version string
	// Status of the new state.
	Status stepflow.Status
	// Position and ErrorKind of the new state (see Record). A quarantine
	// write (Blob nil) keeps the stored ones.
	Position  string
	ErrorKind string
	// Updated is the time of the write; zero means the store's clock.
	Updated time.Time
	// Due is when the new state should next be applied; zero for never.
	Due time.Time
	// Blob is the new encoded state. Nil keeps the stored bytes, which a
	// quarantine write does.
	Blob []byte
	// Quarantine sets the process aside with this reason (see the package
	// documentation); the store then ignores Due and makes it never due.
	Quarantine string
	// KeepUntil, when not zero, asks a store that keeps leases
	// (LeaseKeeper) to leave the record leased to the committing owner
	// until KeepUntil, its Due while leased, instead of releasing it: a
	// runner that will apply the process again at once saves a claim.
	// Other stores release the lease as usual, and runners set it only
	// for stores that keep leases.
	KeepUntil time.Time
}

// Deletion names a process to delete and the revision it must still be
// at (see RevisionDeleter).
type Deletion struct {
	ID       string
	Revision uint64
}

// RevisionDeleter is implemented by stores that delete a process only if
// it is still at the revision its deleter read, so that deleting what a
// filter listed spares a process that changed since (a failed process
// redriven meanwhile). Every store of this module implements it.
type RevisionDeleter interface {
	// DeleteRevisions removes, in one transaction, each process still at
	// the given revision, whatever its status or lease, as Delete does.
	// The slice is nil when it removed every one; otherwise it has one
	// entry per deletion, nil or a *WriteError matching ErrConflict (the
	// process is at another revision) or ErrNotFound.
	DeleteRevisions(ctx context.Context, ds []Deletion) ([]error, error)
}

// LeaseKeeper is implemented by stores whose Commit honours
// Write.KeepUntil. pgstore does: there, a claim is a statement on a server,
// which a runner that keeps the leases of the processes it is about to
// apply again does without.
type LeaseKeeper interface {
	KeepsLeases() bool
}

// Claim asks for due processes.
type Claim struct {
	// Owner names the claimer; every runner uses its own. Required.
	Owner string
	// Now is the claimer's current time: records with Due at or before it
	// are due.
	Now time.Time
	// Limit is the most records to return. Must be positive.
	Limit int
	// Lease is how long the claimed records stay leased. Must be positive.
	Lease time.Duration
	// Versions are the flow versions the claimer can apply; only records
	// of these versions are claimed. Empty claims records of any version.
	Versions []string
}

// Counts is how many processes a store holds, by status, in all and per
// flow version.
type Counts struct {
	// ByStatus counts healthy processes by status.
	ByStatus map[stepflow.Status]int
	// Quarantined counts quarantined processes, whatever their status.
	Quarantined int
	// ByVersion has the same counts for each flow version that has
	// processes. An operator reads here that 12 processes of deploy/v3
	// wait for a runner that knows deploy/v3.
	ByVersion map[string]VersionCounts
}

// VersionCounts is Counts for one flow version.
type VersionCounts struct {
	ByStatus    map[stepflow.Status]int
	Quarantined int
}

// Total is the number of processes of every kind.
func (c Counts) Total() int {
	n := c.Quarantined
	for _, v := range c.ByStatus {
		n += v
	}
	return n
}

// Total is the number of processes of the version, of every kind.
func (c VersionCounts) Total() int {
	n := c.Quarantined
	for _, v := range c.ByStatus {
		n += v
	}
	return n
}

// Add counts r in c, for implementations that count as they go.
func (c *Counts) Add(r *Record, d int) {
	if c.ByStatus == nil {
		c.ByStatus = map[stepflow.Status]int{}
	}
	if c.ByVersion == nil {
		c.ByVersion = map[string]VersionCounts{}
	}
	v := c.ByVersion[r.Version]
	if v.ByStatus == nil {
		v.ByStatus = map[stepflow.Status]int{}
	}
	if r.Quarantine != "" {
		c.Quarantined += d
		v.Quarantined += d
	} else {
		c.ByStatus[r.Status] += d
		v.ByStatus[r.Status] += d
		if c.ByStatus[r.Status] == 0 {
			delete(c.ByStatus, r.Status)
		}
		if v.ByStatus[r.Status] == 0 {
			delete(v.ByStatus, r.Status)
		}
	}
	if v.Total() == 0 {
		delete(c.ByVersion, r.Version)
	} else {
		c.ByVersion[r.Version] = v
	}
}

// Filter selects records for List. Its conditions all apply.
type Filter struct {
	// Status, when not nil, keeps healthy records with this status.
	Status *stepflow.Status
	// Quarantined keeps only quarantined records when true.
	Quarantined bool
	// Flow keeps records of this flow (any version), Version those of
	// this exact version.
	Flow    string
	Version string
	// IDPrefix keeps records whose id starts with it.
	IDPrefix string
	// Position keeps records standing at this path or below it
	// ("shouldDeploy" matches "shouldDeploy/rollout"). ErrorKind keeps
	// records whose failure has this kind.
	Position  string
	ErrorKind string
	// After is an exclusive lower bound on ids, for paging: pass the last
	// id of the previous page.
	After string
	// Limit is the most records to return; zero means 100.
	Limit int
}

// DefaultListLimit is Filter.Limit's default.
const DefaultListLimit = 100

// Store keeps processes for one or more runners. Implementations are safe
// for concurrent use. Every method honours ctx where it blocks.
type Store interface {
	// Create stores a new process at revision 1, unleased. rec.Revision
	// and rec.Owner are ignored. It fails with ErrExists when the id is
	// taken. A process due at or before now wakes the runners (Watch).
	Create(ctx context.Context, rec Record) error

	// Load returns the stored record, or ErrNotFound.
	Load(ctx context.Context, id string) (Record, error)

	// Claim leases up to c.Limit due, unleased (or lease-expired) records
	// to c.Owner, earliest Due first, sets their Due to c.Now + c.Lease and
	// returns them. It never returns a record leased to another owner
	// whose lease has not expired, and never the same record to two
	// concurrent callers.
	Claim(ctx context.Context, c Claim) ([]Record, error)

	// Commit applies a batch of writes in one transaction. A write is
	// applied when the record exists, its revision equals w.Revision, and
	// (when owner is not "") owner still holds its lease; an applied write
	// increments the revision, stores the new fields and clears the lease.
	// With owner "" the lease is not checked (but still cleared): that is
	// how callers outside a runner change a process.
	//
	// The returned slice is nil when every write was applied; otherwise it
	// has one entry per write, nil or a *WriteError. A non-nil error means
	// the transaction failed and no write was applied.
	Commit(ctx context.Context, owner string, ws []Write) ([]error, error)

	// Renew extends owner's leases on ids to now + lease, and returns the
	// ids whose lease owner no longer holds.
	Renew(ctx context.Context, owner string, ids []string, now time.Time, lease time.Duration) (lost []string, err error)

	// Release gives back owner's leases on ids without writing; the
	// records are due at now at the latest. Ids owner does not hold are
	// ignored.
	Release(ctx context.Context, owner string, ids []string, now time.Time) error

	// NextDue returns the earliest Due of any record of the given
	// versions (any version when versions is empty), leased ones included
	// so that a sleeping runner wakes when a lease expires; ok is false
	// when no such record is ever due.
	NextDue(ctx context.Context, versions []string) (t time.Time, ok bool, err error)

	// Watch returns a channel that receives a value (without blocking the
	// sender; one pending value at most) when a process may have become due
	// earlier than a sleeping runner expects: created, or written from
	// outside a runner. The channel is closed when ctx is done.
	Watch(ctx context.Context) <-chan struct{}

	// Count returns how many processes there are, by status.
	Count(ctx context.Context) (Counts, error)

	// List returns records matching f, ordered by id.
	List(ctx context.Context, f Filter) ([]Record, error)

	// CreateMany stores new processes as Create does, in one transaction
	// and with one wake-up. The slice is nil when every record was
	// created; otherwise it has one entry per record, nil or an error
	// matching ErrExists (or ErrInvalid), and the other records are
	// created. A non-nil error means none was.
	CreateMany(ctx context.Context, recs []Record) ([]error, error)

	// Delete removes processes, whatever their status or lease; a runner
	// holding one then finds its write refused with ErrNotFound. Ids that
	// do not exist are ignored. It returns how many it removed.
	Delete(ctx context.Context, ids []string) (int, error)

	// DeleteEnded removes up to limit processes that have ended (a
	// terminal status, not quarantined) and were last written before
	// before, oldest first, and returns how many it removed. Call it
	// again while it returns limit.
	DeleteEnded(ctx context.Context, before time.Time, limit int) (int, error)

	// WatchEnded is Watch for ends: the channel receives a value when a
	// process may have ended (a write with a terminal status, or a
	// delete), so that a caller waiting for one process reloads it
	// instead of polling.
	WatchEnded(ctx context.Context) <-chan struct{}

	// Close releases the store's resources. Other methods then fail with
	// ErrClosed.
	Close() error
}

// FillVersion sets rec.Version from its blob when it is empty, for
// implementations of Create and CreateMany. A blob whose version cannot
// be read is an ErrInvalid.
func FillVersion(rec *Record) error {
	if rec.Version != "" {
		return nil
	}
	v, err := codec.PeekVersion(rec.Blob)
	if err != nil {
		return fmt.Errorf("%w: process %q: no flow version: %v", ErrInvalid, rec.ID, err)
	}
	rec.Version = v
	return nil
}

// Match reports whether r passes f (ignoring f.After's paging and
// f.Limit), for implementations.
func Match(r *Record, f Filter) bool {
	switch {
	case f.Quarantined && r.Quarantine == "",
		f.Status != nil && (r.Quarantine != "" || r.Status != *f.Status),
		f.Version != "" && r.Version != f.Version,
		f.Flow != "" && r.Flow() != f.Flow,
		f.IDPrefix != "" && !strings.HasPrefix(r.ID, f.IDPrefix),
		f.ErrorKind != "" && r.ErrorKind != f.ErrorKind,
		f.Position != "" && r.Position != f.Position && !strings.HasPrefix(r.Position, f.Position+"/"):
		return false
	}
	return f.After == "" || r.ID > f.After
}

// Claimable reports whether a claim for versions may take a record of
// version v.
func Claimable(versions []string, v string) bool {
	if len(versions) == 0 {
		return true
	}
	for _, w := range versions {
		if w == v {
			return true
		}
	}
	return false
}

// CheckClaim validates a claim request, for implementations.
func CheckClaim(c Claim) error {
	switch {
	case c.Owner == "":
		return fmt.Errorf("%w: empty owner", ErrInvalid)
	case c.Limit <= 0:
		return fmt.Errorf("%w: limit %d", ErrInvalid, c.Limit)
	case c.Lease <= 0:
		return fmt.Errorf("%w: lease %s", ErrInvalid, c.Lease)
	}
	return nil
}

// NormalizeDue returns the due time a write or record should be stored
// with: zero for quarantined processes and statuses that never run again
// (terminal, needs attention), d otherwise, in UTC. A zero d means never
// for a waiting process (it waits for a signal with no deadline) and at
// once for a running one, which then gets DueNow. Implementations use it so
// they agree on scheduling.
func NormalizeDue(status stepflow.Status, quarantine string, d time.Time) time.Time {
	if quarantine != "" || status.Terminal() || status == stepflow.NeedsAttention {
		return time.Time{}
	}
	if d.IsZero() {
		if status == stepflow.Waiting {
			return time.Time{}
		}
		return DueNow
	}
	return d.UTC()
}

// DueNow is the due time of a process that is runnable at once and was
// given no time: the Unix epoch, earlier than any real clock.
var DueNow = time.Unix(0, 0).UTC()
