// Package store defines where a runner keeps its processes: the Store
// interface, its record types and errors, and Memory, the in-memory
// implementation used by tests and benchmarks.
//
// A store holds encoded states as opaque bytes (see package codec) together
// with the few fields it needs to schedule them: a revision, the status, and
// the time the process is next due. It never decodes a state.
//
// # Scheduling and leases
//
// Every process that can still make progress has a due time: the time after
// which a runner should call Apply on it again. Claim hands out due
// processes under a lease: the claimed record is given to one owner, and
// nobody else can claim it until the lease expires. A claim moves the
// record's due time to the end of its lease, so a process whose owner
// crashed becomes due again, and is taken over, exactly when its lease runs
// out. Renew extends leases that are still held, Release gives them back.
//
// # Writes
//
// Commit writes a batch of new states in one transaction (group commit).
// Each write names the revision it was computed from; it is applied only if
// the stored revision is still that one (optimistic concurrency) and, when
// an owner is given, only if that owner still holds the lease. A write that
// fails its check leaves its record untouched and does not prevent the other
// writes of the batch. A successful write increments the revision, sets the
// new due time and releases the lease.
//
// # Quarantine
//
// A write with a Quarantine reason marks a process whose stored bytes cannot
// be used (they fail to decode, or name an unknown flow version). Its bytes
// are kept as they are, it is never due again, and List and Count report it
// apart from the others until someone repairs it with a write that carries
// new bytes.
//
// # Implementations
//
// Memory (this package) keeps everything in memory. Package boltstore is
// the embedded default, one file on disk. Package pgstore uses PostgreSQL
// and lets several runner processes on several machines share one
// database. All three pass the conformance suite in package storetest.
//
// # Listing
//
// List serves an operator's pages, one at a time in id order, from
// indexes, never by reading every process: pgstore from SQL indexes on the
// filtered columns, Memory and boltstore from an index kept in memory
// (ordered sets of ids by status, quarantine, flow, version, error kind
// and position) that every write keeps up to date and that boltstore
// builds when it opens its file. Each reads the smallest set its filter
// names from Filter.After on, so a page costs about the records it
// returns, not the size of the store: a few milliseconds for a page of 50
// among 100,000 processes (see docs/performance.md).
package store
