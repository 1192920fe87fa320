package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// PeekVersion returns the flow version (State.Version, e.g. "deploy/v1")
// of an encoded state of either encoding, without decoding the rest of it
// or knowing its data type. Stores use it to index states by flow and
// version, and to fill that index in when they upgrade. Its errors are
// *DecodeError, as Decode's are.
func PeekVersion(b []byte) (string, error) {
	t := bytes.TrimLeft(b, " \t\r\n")
	switch {
	case len(t) == 0:
		return "", &DecodeError{Encoding: "unknown", Err: ErrTruncated}
	case t[0] == '{':
		var env struct {
			State *struct {
				Version string `json:"version"`
			} `json:"state"`
		}
		if err := json.Unmarshal(t, &env); err != nil {
			return "", &DecodeError{Encoding: "json", Err: jsonErr(err)}
		}
		if env.State == nil || env.State.Version == "" {
			return "", &DecodeError{Encoding: "json", Err: fmt.Errorf("%w: no version", ErrCorrupt)}
		}
		return env.State.Version, nil
	case t[0] != magic:
		return "", &DecodeError{Encoding: "unknown", Err: fmt.Errorf("%w: first byte 0x%02x", ErrNotState, t[0])}
	case len(t) < envelopeLen:
		return "", &DecodeError{Encoding: "msgpack", Err: ErrTruncated}
	case t[1] != encMsgpack:
		return "", &DecodeError{Encoding: "msgpack", Err: fmt.Errorf("%w: encoding byte 0x%02x", ErrNotState, t[1])}
	case t[2] == 0 || t[2] > FormatVersion:
		return "", &DecodeError{Encoding: "msgpack", Err: fmt.Errorf("%w: %d (this build reads up to %d)", ErrUnsupportedFormat, t[2], FormatVersion)}
	}
	r := reader{b: t, off: envelopeLen}
	r.arrayLen("state", 7, 11)
	v := strings.Clone(r.string())
	if r.err != nil {
		return "", &DecodeError{Encoding: "msgpack", Err: r.err}
	}
	if v == "" {
		return "", &DecodeError{Encoding: "msgpack", Err: fmt.Errorf("%w: no version", ErrCorrupt)}
	}
	return v, nil
}

// FlowName returns the flow's name in a version: the part before the first
// '/' ("deploy" for "deploy/v1"), or the whole version when it has none.
func FlowName(version string) string {
	if i := strings.IndexByte(version, '/'); i >= 0 {
		return version[:i]
	}
	return version
}
