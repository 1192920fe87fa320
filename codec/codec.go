package codec

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Sentinel decode conditions. Every error returned by Decode wraps one of
// them (through a *DecodeError), so callers can branch with errors.Is.
var (
	// ErrTruncated: the bytes end before the state does.
	ErrTruncated = errors.New("stepflow/codec: truncated state")
	// ErrNotState: the bytes do not start with a stepflow envelope.
	ErrNotState = errors.New("stepflow/codec: not a stepflow state")
	// ErrUnsupportedFormat: the envelope names a format version this build
	// cannot read (written by a newer release, or corrupt).
	ErrUnsupportedFormat = errors.New("stepflow/codec: unsupported format version")
	// ErrTooLarge: the input exceeds Options.MaxSize.
	ErrTooLarge = errors.New("stepflow/codec: state too large")
	// ErrCorrupt: the envelope is fine but its contents are not a valid state.
	ErrCorrupt = errors.New("stepflow/codec: corrupt state")
	// ErrWrongEncoding: the bytes use another encoding than this codec's.
	ErrWrongEncoding = errors.New("stepflow/codec: wrong encoding")
	// ErrTooDeep: frames or data nest deeper than stepflow.MaxDepth.
	// Encode refuses such a state, so that it never writes what Decode
	// would refuse; Decode reports it with ErrCorrupt too.
	ErrTooDeep = errors.New("stepflow/codec: nested too deep")
)

// DecodeError reports why bytes could not be decoded.
type DecodeError struct {
	// Encoding of the codec that failed ("msgpack" or "json").
	Encoding string
	// Err wraps one of the sentinels, and the underlying cause if any.
	Err error
}

func (e *DecodeError) Error() string { return fmt.Sprintf("decode %s state: %v", e.Encoding, e.Err) }
func (e *DecodeError) Unwrap() error { return e.Err }

// FormatVersion is the envelope format written by this release. Decoders
// read every format version up to it.
const FormatVersion = 1

// DefaultMaxSize is the default limit on encoded states: 1 MiB.
const DefaultMaxSize = 1 << 20

// Options configures a codec. The zero value is ready to use.
type Options struct {
	// MaxSize is the largest encoded state Decode accepts and Encode
	// produces, in bytes. Zero means DefaultMaxSize.
	MaxSize int
}

func (o *Options) maxSize() int {
	if o == nil || o.MaxSize <= 0 {
		return DefaultMaxSize
	}
	return o.MaxSize
}

// Codec turns states into bytes and back. Implementations are safe for
// concurrent use. Encode is canonical: equal states give equal bytes.
type Codec[S any] interface {
	// Name is the encoding's name as stored in the envelope.
	Name() string
	// Encode serializes st. It fails only if the data cannot be encoded or
	// the result exceeds the size limit.
	Encode(st stepflow.State[S]) ([]byte, error)
	// Decode parses b. It never panics; every error is a *DecodeError.
	Decode(b []byte) (stepflow.State[S], error)
}

// maxDepth bounds frame and data nesting on both sides, so that hostile
// input cannot exhaust the stack and every encoded state decodes.
const maxDepth = stepflow.MaxDepth

// checkFrameDepth fails when frames nest below f deeper than maxDepth
// (f itself being at depth).
func checkFrameDepth(f *stepflow.Frame, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: frames nested deeper than %d", ErrTooDeep, maxDepth)
	}
	for i := range f.Children {
		if err := checkFrameDepth(&f.Children[i], depth+1); err != nil {
			return err
		}
	}
	return nil
}

// Envelope bytes. A msgpack state starts with magic, 'm', format version;
// a JSON state is a JSON object with a "stepflow" member.
const (
	magic       = 0xF5
	encMsgpack  = 'm'
	envelopeLen = 3
)

// Detect returns the codec that can read b, for stores holding states of
// both encodings.
func Detect[S any](b []byte, opts *Options) (Codec[S], error) {
	b = bytes.TrimLeft(b, " \t\r\n")
	switch {
	case len(b) == 0:
		return nil, &DecodeError{Encoding: "unknown", Err: ErrTruncated}
	case b[0] == '{':
		return JSON[S](opts), nil
	case b[0] == magic:
		return Msgpack[S](opts), nil
	}
	return nil, &DecodeError{Encoding: "unknown", Err: fmt.Errorf("%w: first byte 0x%02x", ErrNotState, b[0])}
}

// Decode reads a state in either encoding.
func Decode[S any](b []byte, opts *Options) (stepflow.State[S], error) {
	c, err := Detect[S](b, opts)
	if err != nil {
		return stepflow.State[S]{}, err
	}
	return c.Decode(b)
}
