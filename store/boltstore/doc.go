// Package boltstore is the embedded store: every process in one bbolt file
// (go.etcd.io/bbolt), no server to run. It is the default store of the
// examples and the right one for a single runner process.
//
// Layout: a "procs" bucket maps process ids to a small header (revision,
// status, due time, time of the last write, quarantine reason, flow
// version, position, error kind) followed by the encoded state; a "due"
// bucket indexes schedulable processes by flow version, due time and id, so
// Claim and NextDue read only the due processes of the versions they are
// asked about, never the whole file; an "ended" bucket indexes ended
// processes by time of last write, for DeleteEnded; a "meta" bucket keeps
// the file's format and the counts per flow version and status, updated in
// the same transactions.
//
// # Listing
//
// List is served by an index kept in memory, not in the file, whose format
// it leaves as it is (package store/internal/index): ordered sets of ids by
// status, quarantine, flow, version, error kind and position. Open builds
// it from the records it reads anyway; each write of the store changes it
// with the records, under a lock that List holds while it reads, so a
// page never mixes two states of the file. List takes the index's
// candidates in id order, reads each by id for its current record, and
// keeps those that pass store.Match: a page costs about as many reads as
// it returns records, whatever the size of the file (under a millisecond
// for 50 of 100,000 processes). The store is the file's only writer, but a
// program may still write through DB: the index notes the bbolt
// transaction it reflects, and the first List that finds the file at a
// later one builds the index again. The index takes about 100 bytes of
// memory a process, besides its id.
//
// # Upgrades
//
// Open upgrades a file written by an earlier release in place, in the
// transaction that opens it: each record gets the current header, with its
// flow version read from its state (codec.PeekVersion) and the time of the
// upgrade as its last write; the indexes and counts are rebuilt. A record
// whose state names no readable version is quarantined, its bytes kept.
// Nothing is lost, and a file of the current format is left alone. A file
// of a later release's format is not downgraded: its records read as
// damaged, their bytes kept.
//
// A bbolt file can be open in one Store at a time (Open waits for the
// file lock, up to Options.Timeout, then fails with ErrLocked), so leases
// need not outlive the process: they are kept in memory. After a crash the
// restarted runner finds every process unleased and resumes at once,
// without waiting for leases to expire.
//
// # Opening a file
//
// Open creates a store only where no file exists. An existing file is
// locked, then checked before bbolt reads it, because bbolt trusts its
// file: given a damaged one it panics in a goroutine of its own or faults
// on memory past the end of the file, and either kills the process. The
// check reads the file once, page by page, and refuses it with a
// *CorruptFileError (errors.Is(err, ErrCorruptFile)) naming the file and
// what is wrong when:
//
//   - the file is empty (0 bytes), which a store file never is: Open does
//     not start afresh over it, and so never silently drops a store whose
//     contents were lost;
//   - neither meta page (the first two pages, which say where the data
//     starts) has bbolt's magic number, format version and checksum; a
//     single damaged meta page is fine, bbolt then uses the other, which
//     describes the state of one transaction earlier;
//   - the size is not a whole number of pages, is less than the 4 pages
//     of an empty store, or is less than the pages the meta page says are
//     in use (a file cut short, by a failed copy for example);
//   - the meta page's root or free-list page lies outside those pages;
//   - any page of the tree, nested buckets included, is not where it
//     says, is not a branch or leaf page, lies outside the pages in use,
//     is reached twice, holds elements, keys or values that run past its
//     end, or keys out of order (bbolt's own check, which would otherwise
//     panic at open); or a free-list page still in use names pages in use;
//   - the tree breaks what bbolt's writes rely on, so that the first write
//     to touch it would panic or damage it further: an empty key, an empty
//     page below a branch or one that does not start with the branch's key
//     for it, a branch below another with a single child, leaves at
//     different depths, a bucket nested in an inline bucket.
//
// Where the standard library offers no flock (Windows, among others), the
// check runs before bbolt takes its lock, so a file being written by
// another process at that moment may be reported as damaged.
//
// The check reads each page in use once, in tree order: about 50 ms for a
// file of 100,000 processes of 300 bytes once the file is in the page
// cache, as long again as bbolt's own walk of the tree at open.
//
// # Damaged records
//
// A record whose header (the store's own bytes before the encoded state)
// cannot be read does not stop the others: a value shorter than a header,
// with a header version this release does not know (a later release's
// included), an unknown status, or a quarantine reason longer than the
// value. Damage inside the encoded state is for the codec to find; the
// runner quarantines such states itself. A damaged record is reported as
// quarantined:
// Revision 0, Status stepflow.NeedsAttention, no due time, a Quarantine
// reason that names the process and what is wrong with the header, and as
// Blob the whole stored value, header included, byte for byte, since where
// the state starts is unknown. Load and List report it so as soon as they
// meet it. Open, and Claim or Commit when they meet one, also store it so:
// they rewrite it with a valid header around those same bytes, drop it
// from the due index and correct the counts; Count includes it from then
// on (a record damaged while the store is open, and not yet met by a Claim
// or Commit, is counted under its old status until then or the next Open).
// List's index files it in the same way, as quarantined, under no flow
// version, position or error kind: from Open, or from the first List after
// the write through DB that damaged it. (Damage that no transaction wrote,
// by a faulty disk, reaches the index once the store meets the record;
// until then List reads the record under its old index entries, reports
// it as quarantined and leaves it out of a filter by status.)
// Claim never returns it. An operator repairs or retires it with a Commit
// whose owner is "" and whose Revision is 0.
package boltstore
