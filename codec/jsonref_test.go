package codec

// This file keeps the JSON codec as it was before it parsed states in one
// pass: encoding/json over the whole envelope, then the key scan. Tests
// compare the codec with it, byte for byte on encode and outcome for
// outcome on decode. It is a reference, not an example to follow.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// refJSON returns the reference codec.
func refJSON[S any](opts *Options) Codec[S] {
	return &refJSONCodec[S]{max: opts.maxSize()}
}

type refJSONCodec[S any] struct{ max int }

func (c *refJSONCodec[S]) Name() string { return "json" }

type refEnvelope[S any] struct {
	Format int                `json:"stepflow"`
	State  *stepflow.State[S] `json:"state"`
}

type refEnvelopeIn struct {
	Format *int            `json:"stepflow"`
	State  json.RawMessage `json:"state"`
}

// Encode writes the envelope and the state.
func (c *refJSONCodec[S]) Encode(st stepflow.State[S]) ([]byte, error) {
	if err := checkFrameDepth(&st.Root, 0); err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	b, err := json.Marshal(refEnvelope[S]{Format: FormatVersion, State: &st})
	if err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	if err := refScanJSON(b); err != nil {
		return nil, fmt.Errorf("encode json state: %w", err)
	}
	if len(b) > c.max {
		return nil, fmt.Errorf("encode json state: %w: %d bytes, limit %d", ErrTooLarge, len(b), c.max)
	}
	return b, nil
}

// Decode checks the envelope and parses the state.
func (c *refJSONCodec[S]) Decode(b []byte) (stepflow.State[S], error) {
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
	var env refEnvelopeIn
	dec := json.NewDecoder(bytes.NewReader(t))
	if err := dec.Decode(&env); err != nil {
		return fail(jsonErr(err))
	}
	// t has no surrounding space, so the state must end where t does.
	// (dec.More would miss a trailing ']' or '}'.)
	if n := dec.InputOffset(); n != int64(len(t)) {
		return fail(fmt.Errorf("%w: %d bytes of trailing data after the state", ErrCorrupt, int64(len(t))-n))
	}
	if err := refScanJSON(t); err != nil {
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

// refScanJSON checks what encoding/json lets through in a JSON state that it
// has already parsed (so b is well formed): no object names a key twice,
// since the last one would silently win and a state is canonical; and the
// process data (the state's "data" member) nests at most maxDepth levels,
// counted as the msgpack codec counts them: the data value is at level 0,
// each container adds one. Keys are compared exactly, after unescaping; in
// the envelope and the state object, whose keys name struct fields that
// encoding/json matches without regard to case, they are compared without
// regard to case too.
//
// Encode runs it on its own output and Decode on its input, so both
// refuse the same states. It allocates only for objects of more than
// refScanSmallObject keys and for escaped keys.
func refScanJSON(b []byte) error {
	s := refJSONScan{}
	return s.run(b)
}

// refScanSmallObject is the key count up to which an object's keys are
// compared pairwise rather than through a set.
const refScanSmallObject = 16

type refJSONScan struct {
	open  []refScanLevel
	keys  [][]byte // keys of the open objects, each level's from its keysAt
	data  int      // len(open) when the data value started, -1 outside it
	buf   [16]refScanLevel
	kbuf  [32][]byte
	inKey bool
}

type refScanLevel struct {
	object bool
	keysAt int
	set    map[string]struct{} // once the object has more than refScanSmallObject keys
	key    []byte              // the object's current key
}

func (s *refJSONScan) run(b []byte) error {
	s.open, s.keys, s.data = s.buf[:0], s.kbuf[:0], -1
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			if err := s.value(); err != nil {
				return err
			}
			s.open = append(s.open, refScanLevel{object: c == '{', keysAt: len(s.keys)})
			s.inKey = c == '{'
		case '}', ']':
			top := len(s.open) - 1
			if top < 0 {
				return fmt.Errorf("%w: unbalanced %q", ErrCorrupt, c)
			}
			s.keys = s.keys[:s.open[top].keysAt]
			s.open = s.open[:top]
			if s.data == len(s.open) {
				s.data = -1
			}
		case ',':
			s.inKey = len(s.open) > 0 && s.open[len(s.open)-1].object
		case '"':
			end := refStringEnd(b, i)
			if s.inKey && len(s.open) > 0 {
				if err := s.key(b[i+1 : end]); err != nil {
					return err
				}
				s.inKey = false
			} else if err := s.scalar(); err != nil {
				return err
			}
			i = end
		case ' ', '\t', '\r', '\n', ':':
		default: // a number, true, false or null
			if err := s.scalar(); err != nil {
				return err
			}
			for i+1 < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[i+1])) {
				i++
			}
		}
	}
	return nil
}

// value notes the start of a value at the current level, and fails when
// it is data nested too deep.
func (s *refJSONScan) value() error {
	n := len(s.open)
	if s.data < 0 {
		// The data value is the "data" member of the state object, the
		// "state" member of the envelope.
		if n == 2 && bytes.EqualFold(s.open[0].key, []byte("state")) && s.open[1].object && bytes.EqualFold(s.open[1].key, []byte("data")) {
			s.data = n
		}
		return nil
	}
	if n-s.data > maxDepth {
		return fmt.Errorf("%w: data nested deeper than %d", ErrTooDeep, maxDepth)
	}
	return nil
}

// scalar is a value that opens no level.
func (s *refJSONScan) scalar() error {
	err := s.value()
	if s.data == len(s.open) {
		s.data = -1 // the data was this scalar
	}
	return err
}

// key records a key of the innermost object, raw as it stands between its
// quotes, and fails if the object has it already.
func (s *refJSONScan) key(raw []byte) error {
	k := raw
	if bytes.IndexByte(raw, '\\') >= 0 {
		var u string
		if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &u); err != nil {
			return fmt.Errorf("%w: key %s: %v", ErrCorrupt, raw, err)
		}
		k = []byte(u)
	}
	top := &s.open[len(s.open)-1]
	fold := len(s.open) <= 2 // the envelope and the state: struct fields
	top.key = k
	own := s.keys[top.keysAt:]
	if top.set == nil && len(own) < refScanSmallObject {
		for _, o := range own {
			if bytes.Equal(o, k) || fold && bytes.EqualFold(o, k) {
				return refDuplicateKey(k)
			}
		}
		s.keys = append(s.keys, k)
		return nil
	}
	if fold {
		k = bytes.ToLower(k)
	}
	if top.set == nil {
		top.set = make(map[string]struct{}, 2*len(own))
		for _, o := range own {
			if fold {
				o = bytes.ToLower(o)
			}
			top.set[string(o)] = struct{}{}
		}
		s.keys = s.keys[:top.keysAt]
	}
	if _, dup := top.set[string(k)]; dup {
		return refDuplicateKey(k)
	}
	top.set[string(k)] = struct{}{}
	return nil
}

func refDuplicateKey(k []byte) error {
	return fmt.Errorf("%w: key %q appears twice in one object", ErrCorrupt, k)
}

// stringEnd returns the index of the quote closing the string that opens
// at b[i].
func refStringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return len(b) - 1
}
