// Package codec serializes stepflow states.
//
// Two encodings share one small envelope that names the encoding and a
// format version, so stored states stay readable as the format evolves:
//
//   - Msgpack, compact and fast, the default for stores. Its layout is
//     positional and leaves empty trailing fields out; a mid-run state of a
//     typical flow takes about a hundred bytes.
//   - JSON, readable, for places where people look at states (a Kubernetes
//     status, a debugging dump).
//
// Encoding is canonical: equal states give equal bytes, map keys sorted.
// Decoding never panics on any input, bounds memory by the input size, and
// returns a *DecodeError wrapping one sentinel (ErrTruncated, ErrNotState,
// ErrUnsupportedFormat, ErrTooLarge, ErrCorrupt, ErrWrongEncoding) that says
// what is wrong. Decode and Detect read either encoding.
package codec
