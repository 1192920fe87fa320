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
//
// Both sides apply the same limits, so every state Encode writes decodes:
// the size limit (Options.MaxSize), and nesting: frames at most
// stepflow.MaxDepth levels below the root, process data at most as many
// levels (the data value being level 0). Encode refuses a deeper state with
// ErrTooDeep; Decode refuses it with ErrCorrupt and ErrTooDeep. A JSON state
// that names a key twice in one object is refused as ErrCorrupt: with
// encoding/json the last one would win, and a state has one meaning. Keys
// of the envelope and of the state object, which encoding/json matches
// without regard to case, are compared without regard to case; so are the
// keys that name fields of a frame, a failure, a record or a signal.
package codec
