package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// JSON returns the readable codec: a JSON object
//
//	{"stepflow":1,"state":{"version":"deploy/v1","status":"waiting",...}}
//
// whose "stepflow" member is the format version. Field names are the json
// tags of stepflow.State and its parts; times are RFC 3339 in UTC. It suits
// places where people read states: a Kubernetes status, a debug dump.
func JSON[S any](opts *Options) Codec[S] {
	return &jsonCodec[S]{max: opts.maxSize()}
}

type jsonCodec[S any] struct{ max int }

func (c *jsonCodec[S]) Name() string { return "json" }

type jsonEnvelope[S any] struct {
	Format int                `json:"stepflow"`
	State  *stepflow.State[S] `json:"state"`
}

type jsonEnvelopeIn struct {
	Format *int            `json:"stepflow"`
	State  json.RawMessage `json:"state"`
}

// Encode writes the envelope and the state.
func (c *jsonCodec[S]) Encode(st stepflow.State[S]) ([]byte, error) {
	if err := checkFrameDepth(&st.Root, 0); err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	b, err := json.Marshal(jsonEnvelope[S]{Format: FormatVersion, State: &st})
	if err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	if err := scanJSON(b); err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	if len(b) > c.max {
		return nil, fmt.Errorf("encode json state: %w: %d bytes, limit %d", ErrTooLarge, len(b), c.max)
	}
	return b, nil
}

// Decode checks the envelope and parses the state.
func (c *jsonCodec[S]) Decode(b []byte) (stepflow.State[S], error) {
	fail := func(e error) (stepflow.State[S], error) {
		return stepflow.State[S]{}, &DecodeError{Encoding: "json", Err: e}
	}
	if len(b) > c.max {
		return fail(fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), c.max))
	}
	t := bytes.TrimSpace(b)
	switch {
	case len(t) == 0:
		return fail(ErrTruncated)
	case t[0] == magic:
		return fail(fmt.Errorf("%w: found msgpack", ErrWrongEncoding))
	case t[0] != '{':
		return fail(fmt.Errorf("%w: does not start with '{'", ErrNotState))
	}
	var env jsonEnvelopeIn
	dec := json.NewDecoder(bytes.NewReader(t))
	if err := dec.Decode(&env); err != nil {
		return fail(jsonErr(err))
	}
	// t has no surrounding space, so the state must end where t does.
	// (dec.More would miss a trailing ']' or '}'.)
	if n := dec.InputOffset(); n != int64(len(t)) {
		return fail(fmt.Errorf("%w: %d bytes of trailing data after the state", ErrCorrupt, int64(len(t))-n))
	}
	if err := scanJSON(t); err != nil {
		return fail(corruptIfDeep(err))
	}
	switch {
	case env.Format == nil:
		return fail(fmt.Errorf("%w: no \"stepflow\" format member", ErrNotState))
	case *env.Format < 1 || *env.Format > FormatVersion:
		return fail(fmt.Errorf("%w: %d (this build reads up to %d)", ErrUnsupportedFormat, *env.Format, FormatVersion))
	case len(env.State) == 0 || bytes.Equal(env.State, []byte("null")):
		return fail(fmt.Errorf("%w: no \"state\" member", ErrCorrupt))
	}
	var st stepflow.State[S]
	if err := json.Unmarshal(env.State, &st); err != nil {
		return fail(jsonErr(err))
	}
	if err := checkFrameDepth(&st.Root, 0); err != nil {
		return fail(corruptIfDeep(err))
	}
	normalize(&st)
	return st, nil
}

func jsonErr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input") {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// corruptIfDeep makes an ErrTooDeep found on decode match ErrCorrupt too,
// as every malformed content does.
func corruptIfDeep(err error) error {
	if errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// normalize gives decoded states the same shape whichever codec read them:
// times in UTC, empty lists as nil.
func normalize[S any](st *stepflow.State[S]) {
	st.WakeAt = st.WakeAt.UTC()
	if len(st.Record) == 0 {
		st.Record = nil
	}
	if len(st.Signals) == 0 {
		st.Signals = nil
	}
	for i := range st.Record {
		st.Record[i].Start, st.Record[i].End = st.Record[i].Start.UTC(), st.Record[i].End.UTC()
	}
	for i := range st.Signals {
		st.Signals[i].At = st.Signals[i].At.UTC()
		if len(st.Signals[i].Payload) == 0 {
			st.Signals[i].Payload = nil
		}
	}
	if st.Err != nil {
		st.Err.At = st.Err.At.UTC()
	}
	normalizeFrame(&st.Root)
}

func normalizeFrame(f *stepflow.Frame) {
	f.Since, f.Until = f.Since.UTC(), f.Until.UTC()
	if f.Err != nil {
		f.Err.At = f.Err.At.UTC()
	}
	if len(f.Payload) == 0 {
		f.Payload = nil
	}
	if len(f.Children) == 0 {
		f.Children = nil
	}
	for i := range f.Children {
		normalizeFrame(&f.Children[i])
	}
}
