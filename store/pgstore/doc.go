// Package pgstore keeps processes in PostgreSQL (through jackc/pgx/v5), so
// that several runner processes on several machines can share them.
//
// # Schema
//
// One table (Options.Table, "stepflow_processes" by default, in
// Options.Schema) holds every process, one row each:
//
//	id          text COLLATE "C"  the process id (primary key)
//	revision    bigint            writes so far
//	status      smallint          stepflow.Status
//	due         bigint            Unix nanoseconds; NULL when never due
//	owner       text              lease holder, '' when unleased
//	lease_until bigint            end of the lease, Unix nanoseconds
//	quarantine  text              quarantine reason, '' for a healthy process
//	blob        bytea             the encoded state, byte for byte
//	version     text COLLATE "C"  flow version, e.g. "deploy/v3"
//	flow        text COLLATE "C"  the flow's name: version up to its first '/'
//	position    text COLLATE "C"  store.Record.Position
//	error_kind  text COLLATE "C"  store.Record.ErrorKind
//	updated     bigint            last create or write, Unix nanoseconds
//
// The text columns compare bytewise (collation "C"), so that List pages
// through ids in the order Go compares strings whatever the database's
// default collation, and prefixes (Filter.IDPrefix, Filter.Position) are
// index ranges.
//
// Indexes, all named after the table:
//
//   - _due (due, id) where due is not null: Claim and NextDue for any
//     version;
//   - _version_due (version, due, id) where due is not null: Claim and
//     NextDue for the versions a runner names, one index range per version,
//     so that a runner never reads past the due processes of versions it
//     does not know;
//   - _flow (flow, version, id), _status (status, id) for healthy
//     processes, _position (position, id) and _error_kind (error_kind,
//     id) where there is one, _quarantined (id) for quarantined
//     processes: List, which PostgreSQL answers for the values at hand
//     either from the index that fits its filter (a rare value) or by
//     reading the primary key in id order (a common one): a page of 100
//     of 100,000 processes takes from well under a millisecond to about
//     10ms, the slowest being a common value whose processes all come
//     late in id order;
//   - _ended (updated, id) for ended (terminal, not quarantined)
//     processes: DeleteEnded, oldest first.
//
// A Commit changes the due time, which _due indexes, so PostgreSQL files
// the new row version in every index whose condition it meets: with the
// indexes List needs, a batch of writes costs the database about two and a
// half times what it would with _due alone.
//
// Claim leases rows with UPDATE ... FOR UPDATE SKIP LOCKED, so concurrent
// runners never block on each other's rows nor receive the same one. A
// lease is the row's owner and lease end, columns no index covers, so a
// claim is a heap-only (HOT) update that touches no index (the table keeps
// free space in its pages for that); a row whose lease has ended can be
// claimed again, which is how a dead runner's processes are taken over.
// Commit writes a whole batch in one UPDATE statement, CreateMany a whole
// batch in one INSERT statement.
//
// Statements that change several rows (Commit, Renew, Release, Delete)
// first lock them in id order, so that two of them never wait for each
// other in a cycle. A statement that PostgreSQL still aborts as the victim
// of a deadlock (SQLSTATE 40P01), with a transaction of another program
// say, or for a serialization failure (40001, under a stricter default
// isolation level) is run again a few times after a short pause before its
// error is returned.
//
// All values travel as query parameters; the only text put into SQL is the
// schema, table and index names, quoted as identifiers once, in New.
//
// The store is also a store.Limiter, so that the slots of limited
// resources (runner.Limited) are shared by every runner process: one row
// per holder and per waiter in a table named after the processes table
// with "_limits", and the times of recent grants of resources with a rate
// in "_limit_grants". Migrate creates both; each decision about a
// resource takes a transaction advisory lock on its name.
//
// # Migrate and upgrades
//
// Create the schema with Migrate before using the store. Migrate is
// idempotent and safe to run from several processes at once: it holds a
// PostgreSQL advisory lock while it works, and a table that is already up
// to date costs it a few catalog reads and no table lock.
//
// Migrate upgrades a table written by an earlier release of this package in
// place, keeping every row: it adds the columns above (old rows get the
// time of the upgrade as updated), makes id compare bytewise (which
// rebuilds the primary key index when the column had another collation),
// reads each row's flow version from its blob (codec.PeekVersion, 1,000
// rows per transaction, so the table stays usable meanwhile), and creates
// the missing indexes. A row whose blob names no readable version is
// quarantined, its bytes kept, with a reason that says so; it is never
// claimed until someone repairs it (see store.Record.Quarantine). On a
// small test machine an upgrade of 100,000 processes took about 4
// seconds, of which writers waited about 0.7 while the indexes were
// built: upgrade large tables at a quiet time.
//
// Runners of the earlier release keep working on the upgraded table, but
// the processes they create have no version until Migrate runs again, and
// only claims for any version take them: stop them before the new release
// starts, or run Migrate once more when they are gone.
//
// # Creating processes in your own transaction
//
// CreateTx stores new processes inside a transaction of the caller's, so
// that they exist if and only if the caller commits: an order row and the
// process that ships it, say. The wake-up it sends is transactional too, so
// runners hear of the processes only once they exist.
//
// # Notifications
//
// Two NOTIFY channels carry wake-ups, named after the schema and table:
// "<schema>.<table>" and "<schema>.<table>.ended" (cut to 63 bytes, the
// second before its suffix). Create, CreateMany, CreateTx, Release and writes from outside a runner
// (Commit with owner "") notify the first, which Watch turns into wake-ups,
// so idle runners sleep instead of polling. A Commit that ends a process
// (a terminal status) and Delete notify the second, which WatchEnded turns
// into wake-ups, so a caller waiting for a process to end reloads it only
// when something ended. Each notification is sent by the statement that
// makes the change, at most once per channel and transaction, and
// PostgreSQL delivers it when that transaction commits.
//
// Watch and WatchEnded do not take connections from the pool: the store
// listens on both channels on one connection of its own, opened with the
// pool's connection settings (and its BeforeConnect and AfterConnect
// hooks) when the first Watch or WatchEnded starts and closed when the last
// one ends, and every watch shares it. A pool of any size therefore serves
// runners with any number of workers, and the database sees one more
// session per store while anyone watches.
//
// # Clocks
//
// Due times and lease ends come from the runners' clocks (store.Claim.Now),
// so the machines sharing a database should keep their clocks in sync
// (NTP); a skew shortens or lengthens leases by as much. Updated comes from
// the writer (store.Record.Updated, store.Write.Updated), or from the
// database's clock when the writer gives none.
package pgstore
