// Package index is the in-memory secondary index that serves store.List
// for the stores that have no index of their own for its filters: the
// in-memory store, and the bbolt store, whose file indexes processes by id
// and due time only.
//
// For every record the index keeps the fields a filter names (Fields) and
// files the record's number in ordered sets, one per value: the healthy
// records of each status (a quarantined record is under its status in no
// set), the quarantined ones, each flow, each flow version, each error
// kind and each position, plus the set of every record. Each set is kept
// in id order, as List returns records; empty values are not indexed.
//
// # Cost
//
// With n records in the index:
//
//   - Set costs a map lookup by id (Update, with the record's number,
//     spares it), and nothing more when the indexed fields did not change
//     (a step that moves a running process on);
//     each field that changed costs a delete from one set and an insert
//     into another, O(log n) each, and a new value's first record
//     allocates its set. Delete costs O(log n) per field.
//   - Candidates picks, among the conditions of the query, the one whose
//     sets hold the fewest records: a status, the quarantined records, a
//     flow, a version or an error kind is one set; a position is the set
//     of that path and those of every path below it, found as one range
//     of the sorted positions (the path itself, then "path/" up to
//     "path0"). With no such condition it reads the set of every record.
//     It starts at After (exclusive) or IDPrefix, whichever comes later,
//     by a binary search in each set read, O(log n), and walks on in id
//     order, merging the sets of a position range through a heap (O(log
//     k) a step for k positions). Each record read is checked against the
//     other conditions on its indexed fields, in memory; the walk stops at
//     the first id past IDPrefix, or when the caller has enough.
//
// A page of L records therefore reads L records plus those of the chosen
// set that fail another condition, at most the size of the smallest set
// the query names: the cost follows the matches, not the size of the
// store. The worst case is a query whose conditions each match many
// records and together few, which reads the smallest of them in full; the
// index checks those conditions without the store, some tens of
// nanoseconds a record.
//
// Records are numbered. Sets are lists of sorted chunks of record numbers
// (at most 256 a chunk), searched by two binary searches; the fields of
// the records are numbers too (a status, and the numbers of their values),
// kept in pages, so that neither holds pointers for the garbage collector
// to scan, and a growing index never copies them. The ids are kept in
// pages of their own, shared with the caller. An index costs about 60
// bytes a record besides the id's bytes, 95 when the caller names records
// by id and the index keeps a map of them.
package index
