package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// scanJSON checks what encoding/json lets through in a JSON state that it
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
// scanSmallObject keys and for escaped keys.
func scanJSON(b []byte) error {
	s := jsonScan{}
	return s.run(b)
}

// scanSmallObject is the key count up to which an object's keys are
// compared pairwise rather than through a set.
const scanSmallObject = 16

type jsonScan struct {
	open  []scanLevel
	keys  [][]byte // keys of the open objects, each level's from its keysAt
	data  int      // len(open) when the data value started, -1 outside it
	buf   [16]scanLevel
	kbuf  [32][]byte
	inKey bool
}

type scanLevel struct {
	object bool
	keysAt int
	set    map[string]struct{} // once the object has more than scanSmallObject keys
	key    []byte              // the object's current key
}

func (s *jsonScan) run(b []byte) error {
	s.open, s.keys, s.data = s.buf[:0], s.kbuf[:0], -1
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			if err := s.value(); err != nil {
				return err
			}
			s.open = append(s.open, scanLevel{object: c == '{', keysAt: len(s.keys)})
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
			end := stringEnd(b, i)
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
func (s *jsonScan) value() error {
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
func (s *jsonScan) scalar() error {
	err := s.value()
	if s.data == len(s.open) {
		s.data = -1 // the data was this scalar
	}
	return err
}

// key records a key of the innermost object, raw as it stands between its
// quotes, and fails if the object has it already.
func (s *jsonScan) key(raw []byte) error {
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
	if top.set == nil && len(own) < scanSmallObject {
		for _, o := range own {
			if bytes.Equal(o, k) || fold && bytes.EqualFold(o, k) {
				return duplicateKey(k)
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
		return duplicateKey(k)
	}
	top.set[string(k)] = struct{}{}
	return nil
}

func duplicateKey(k []byte) error {
	return fmt.Errorf("%w: key %q appears twice in one object", ErrCorrupt, k)
}

// stringEnd returns the index of the quote closing the string that opens
// at b[i].
func stringEnd(b []byte, i int) int {
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
