// Package fuzz holds the native Go fuzz targets of stepflow and the corpus
// of states written by each released encoding format. It has no API; its
// tests are its content:
//
//   - FuzzDecodeMsgpack and FuzzDecodeJSON feed arbitrary bytes to the
//     codecs: decoding never panics, fails only with a *codec.DecodeError
//     wrapping one sentinel, allocates memory in proportion to the
//     configured size limit, and whatever decodes encodes back canonically;
//   - FuzzApply applies arbitrary decoded states, with arbitrary step
//     outcomes, to a representative flow: Apply never panics, never changes
//     its input, is deterministic, and returns either an error matching a
//     stepflow sentinel or a valid state;
//   - FuzzMigrate migrates arbitrary states between two versions of that
//     flow: the result is a valid state of the newer version or a typed
//     error.
//
// testdata/states/format<N> holds states encoded by format version N, in
// both encodings. TestStoredStates decodes and advances every one of them,
// so a change that cannot read states saved by a released version fails the
// build. Run `go test ./fuzz -run TestGenerateStates -update` once when a
// new format version is released, to add its states; existing files are
// never rewritten.
//
// `make fuzz` runs every target for FUZZTIME; `make test` runs each briefly.
// An input that a target finds failing is saved by `go test` under
// testdata/fuzz/<Target>/ and then runs with every `go test`, as a
// regression test.
package fuzz
