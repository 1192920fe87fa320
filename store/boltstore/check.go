package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// This file checks a store file before bbolt maps it. bbolt trusts the
// file: it follows page ids and element offsets without bounds checks, and
// when it finds a page that is not what it expected it panics, in a
// goroutine of its own when it rebuilds the free page list at open (so no
// recover can stop it), or faults on memory past the end of the file. The
// check reads the file the way bbolt will and refuses it first.
//
// Layout of a bbolt file (format version 2), in the byte order of the
// machine that wrote it:
//
//	page header (16 bytes): id u64, flags u16, count u16, overflow u32
//	meta page (pages 0 and 1): header, then magic u32, version u32,
//	    page size u32, flags u32, root bucket (root page u64, sequence u64),
//	    freelist page u64, high-water mark u64, txid u64, checksum u64
//	    (FNV-64a of the 56 bytes before it)
//	branch page: header, count elements (pos u32, key size u32, child page
//	    u64), keys; pos counts from the element itself
//	leaf page: header, count elements (flags u32, pos u32, key size u32,
//	    value size u32), keys and values; flag 1 marks a nested bucket,
//	    whose value is a bucket header (root page u64, sequence u64) and,
//	    when the root page is 0, an inline leaf page
//	freelist page: header, ids u64 (count 0xFFFF: the first u64 is the
//	    real count)
//
// A page spans 1 + overflow page-size blocks. Pages at or past the
// high-water mark are not in use.
const (
	pageHeaderSize   = 16
	elementSize      = 16
	bucketHeaderSize = 16
	metaSize         = 64
	metaSumSize      = 56

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	noFreelist = ^uint64(0)

	minPageSize = 1 << 10
	maxPageSize = 1 << 24
	// maxTreeDepth bounds the page tree, nested buckets included; a
	// balanced tree of any real size is far shallower.
	maxTreeDepth = 256
)

var endian = binary.NativeEndian

// badFile is what the check found wrong; Open turns it into a
// *CorruptFileError naming the file.
type badFile struct{ reason string }

func (e *badFile) Error() string { return e.reason }

func bad(format string, args ...any) error { return &badFile{fmt.Sprintf(format, args...)} }

// fileMeta is one meta page.
type fileMeta struct {
	pageSize                  uint32
	root, freelist, hwm, txid uint64
	// problem is why bbolt would not use this meta page, "" when it would.
	problem string
}

// parseMeta reads the meta page at the start of b (at least
// pageHeaderSize+metaSize bytes) and validates it as bbolt does: magic,
// version, checksum.
func parseMeta(b []byte) fileMeta {
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	fm := fileMeta{
		pageSize: endian.Uint32(m[8:]),
		root:     endian.Uint64(m[16:]),
		freelist: endian.Uint64(m[32:]),
		hwm:      endian.Uint64(m[40:]),
		txid:     endian.Uint64(m[48:]),
	}
	h := fnv.New64a()
	h.Write(m[:metaSumSize])
	switch {
	case endian.Uint32(m[0:]) != boltMagic:
		fm.problem = "not a bbolt meta page (wrong magic number)"
	case endian.Uint32(m[4:]) != boltVersion:
		fm.problem = fmt.Sprintf("bbolt format version %d, want %d", endian.Uint32(m[4:]), boltVersion)
	case h.Sum64() != endian.Uint64(m[metaSumSize:]):
		fm.problem = "checksum mismatch"
	}
	return fm
}

// checker walks the pages in use.
type checker struct {
	r    io.ReaderAt
	size int64
	ps   int
	hwm  uint64
	// seen has a bit per page id below hwm: the page is in use.
	seen []uint64
	// bufs holds one page buffer per tree depth: a page's keys stay
	// readable while the pages below it are checked.
	bufs [][]byte
}

// checkFile checks the store file r of size bytes. It returns a *badFile
// when the file is damaged, another error when it cannot be read.
func checkFile(r io.ReaderAt, size int64) error {
	if size == 0 {
		return bad("the file is empty (0 bytes); a store file is never empty, remove it to start a new store")
	}
	ps, err := findPageSize(r, size)
	if err != nil {
		return err
	}
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return bad("page size %d is not a power of two between %d and %d", ps, minPageSize, maxPageSize)
	}
	if size%int64(ps) != 0 {
		return bad("size %d is not a multiple of the page size %d (file cut short?)", size, ps)
	}
	if size < 4*int64(ps) {
		return bad("size %d is less than the 4 pages of an empty store", size)
	}
	c := &checker{r: r, size: size, ps: ps}
	b := make([]byte, 2*ps)
	if err := c.read(b, 0); err != nil {
		return err
	}
	// Choose the meta page bbolt will use: the later one if valid, else
	// the other.
	metas := [2]fileMeta{parseMeta(b), parseMeta(b[ps:])}
	a, o := 0, 1
	if metas[1].txid > metas[0].txid {
		a, o = 1, 0
	}
	if metas[a].problem != "" {
		if metas[o].problem != "" {
			return bad("both meta pages are invalid: page 0: %s; page 1: %s", metas[0].problem, metas[1].problem)
		}
		a = o
	}
	m := metas[a]
	pages := uint64(size) / uint64(ps)
	switch {
	case int(m.pageSize) != ps:
		return bad("meta page %d gives page size %d, the file uses %d", a, m.pageSize, ps)
	case m.hwm < 3:
		return bad("meta page %d says only %d pages are in use", a, m.hwm)
	case m.hwm > pages:
		return bad("meta page %d says %d pages are in use, the file holds %d (file cut short?)", a, m.hwm, pages)
	case m.root < 2 || m.root >= m.hwm:
		return bad("meta page %d: root page %d is outside pages 2 to %d", a, m.root, m.hwm-1)
	case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.hwm):
		return bad("meta page %d: freelist page %d is outside pages 2 to %d", a, m.freelist, m.hwm-1)
	}
	c.hwm = m.hwm
	c.seen = make([]uint64, (m.hwm+63)/64)
	c.mark(0)
	c.mark(1)
	if _, err := c.page(m.root, nil, nil, 0, &tree{leafDepth: -1}); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		return c.freelist(m.freelist)
	}
	return nil
}

// findPageSize reads the page size from a valid meta page the way bbolt
// does before it maps the file: page 0's, else the first valid meta page
// found 1 KiB, 2 KiB, ... 16 MiB into the file.
func findPageSize(r io.ReaderAt, size int64) (int, error) {
	var buf [4096]byte
	var problem string
	if size >= int64(len(buf)) {
		if _, err := r.ReadAt(buf[:], 0); err != nil {
			return 0, err
		}
		m := parseMeta(buf[:])
		if m.problem == "" {
			return int(m.pageSize), nil
		}
		problem = m.problem
	} else {
		problem = fmt.Sprintf("the file is %d bytes, too short for it", size)
	}
	for i := range 15 {
		pos := int64(1024) << i
		if pos >= size-1024 {
			break
		}
		clear(buf[:])
		if _, err := r.ReadAt(buf[:], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if m := parseMeta(buf[:]); m.problem == "" {
			return int(m.pageSize), nil
		}
	}
	return 0, bad("no valid meta page (page 0: %s)", problem)
}

// read fills b from offset off, which the caller has checked lies in the
// file.
func (c *checker) read(b []byte, off int64) error {
	n, err := c.r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if errors.Is(err, io.EOF) {
		return bad("the file ends at %d bytes, inside the page at offset %d", off+int64(n), off)
	}
	return err
}

// mark records that page id is in use and reports whether it already was.
func (c *checker) mark(id uint64) (again bool) {
	w, bit := id/64, uint64(1)<<(id%64)
	again = c.seen[w]&bit != 0
	c.seen[w] |= bit
	return again
}

// load reads page id with its overflow pages into the buffer of depth,
// after checking that they lie in the pages in use and are not used
// elsewhere. want is the page type expected.
func (c *checker) load(id uint64, depth int, want string) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, bad("a %s page at id %d is outside pages 2 to %d", want, id, c.hwm-1)
	}
	for len(c.bufs) <= depth {
		c.bufs = append(c.bufs, make([]byte, c.ps))
	}
	p := c.bufs[depth][:c.ps]
	off := int64(id) * int64(c.ps)
	if err := c.read(p, off); err != nil {
		return nil, err
	}
	if got := endian.Uint64(p); got != id {
		return nil, bad("page %d identifies itself as page %d", id, got)
	}
	overflow := uint64(endian.Uint32(p[12:]))
	if id+overflow >= c.hwm {
		return nil, bad("page %d runs %d pages on, past the %d pages in use", id, overflow, c.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if c.mark(i) {
			return nil, bad("page %d is used twice (reached again from page %d)", i, id)
		}
	}
	if overflow > 0 {
		n := int(overflow+1) * c.ps
		if cap(c.bufs[depth]) < n {
			c.bufs[depth] = make([]byte, n)
			copy(c.bufs[depth], p)
		}
		p = c.bufs[depth][:n]
		if err := c.read(p[c.ps:], off+int64(c.ps)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// tree is what the pages of one bucket's tree must agree on.
type tree struct {
	// leafDepth is the depth of its leaves, -1 until the first is seen.
	leafDepth int
}

// page checks page id of a bucket's tree and the pages below it: type,
// bounds of every element, keys in order and within [lo, hi) of the parent
// (as bbolt's own check, which panics at open otherwise), and the nested
// buckets of leaf pages. It also checks what bbolt's writes take for
// granted, which would otherwise make the next write that touches the
// page panic or damage the tree: keys are not empty, a page below a branch
// is not empty and starts with the parent's key for it (lo), a branch
// below another has two children at least, all leaves are at one depth.
// It returns the last key under the page, nil for none.
func (c *checker) page(id uint64, lo, hi []byte, depth int, t *tree) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, bad("page %d is more than %d levels deep", id, maxTreeDepth)
	}
	p, err := c.load(id, depth, "tree")
	if err != nil {
		return nil, err
	}
	flags, count := endian.Uint16(p[8:]), int(endian.Uint16(p[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return nil, bad("page %d has type flags %#x where a branch or leaf page belongs", id, flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return nil, bad("page %d: %d elements do not fit in %d bytes", id, count, len(p))
	}
	if lo != nil && count == 0 {
		return nil, bad("page %d, below a branch, has no elements", id)
	}
	if flags == leafPageFlag {
		if t.leafDepth < 0 {
			t.leafDepth = depth
		} else if t.leafDepth != depth {
			return nil, bad("leaf page %d is at depth %d, the other leaves of its tree at %d", id, depth, t.leafDepth)
		}
		last, err := c.leaf(p, count, lo, hi, depth, false, fmt.Sprintf("leaf page %d", id))
		return bytes.Clone(last), err
	}
	if count == 0 || lo != nil && count < 2 {
		return nil, bad("branch page %d has %d elements", id, count)
	}
	keys := make([][]byte, count)
	for i := range keys {
		e := pageHeaderSize + i*elementSize
		if keys[i], err = span(p, e, endian.Uint32(p[e:]), uint64(endian.Uint32(p[e+4:]))); err != nil {
			return nil, bad("branch page %d, element %d: key %v", id, i, err)
		}
		if len(keys[i]) == 0 {
			return nil, bad("branch page %d, element %d: empty key", id, i)
		}
	}
	if lo != nil && !bytes.Equal(keys[0], lo) {
		return nil, bad("branch page %d starts with key %q, its parent has %q for it", id, keys[0], lo)
	}
	var maxKey []byte
	prev := lo
	for i, k := range keys {
		if err := keyOrder(k, prev, hi, i); err != nil {
			return nil, bad("branch page %d, element %d: %v", id, i, err)
		}
		next := hi
		if i+1 < count {
			next = keys[i+1]
		}
		child := endian.Uint64(p[pageHeaderSize+i*elementSize+8:])
		if maxKey, err = c.page(child, k, next, depth+1, t); err != nil {
			return nil, err
		}
		prev = maxKey
	}
	return maxKey, nil
}

// leaf checks the count elements of the leaf page p (a tree page or an
// inline bucket's) and the buckets nested in it, and returns its last key.
func (c *checker) leaf(p []byte, count int, lo, hi []byte, depth int, inline bool, where string) ([]byte, error) {
	prev := lo
	for i := range count {
		e := pageHeaderSize + i*elementSize
		flags := endian.Uint32(p[e:])
		ksize := endian.Uint32(p[e+8:])
		kv, err := span(p, e, endian.Uint32(p[e+4:]), uint64(ksize)+uint64(endian.Uint32(p[e+12:])))
		if err != nil {
			return nil, bad("%s, element %d: key and value %v", where, i, err)
		}
		k, v := kv[:ksize], kv[ksize:]
		if ksize == 0 {
			return nil, bad("%s, element %d: empty key", where, i)
		}
		if i == 0 && lo != nil && !bytes.Equal(k, lo) {
			return nil, bad("%s starts with key %q, its parent has %q for it", where, k, lo)
		}
		if err := keyOrder(k, prev, hi, i); err != nil {
			return nil, bad("%s, element %d: %v", where, i, err)
		}
		prev = k
		if flags&bucketLeafFlag != 0 {
			if inline {
				// bbolt keeps a bucket inline only when nothing is nested
				// in it, and does not look inside inline buckets when it
				// lists the pages in use at open.
				return nil, bad("%s, element %d: a bucket nested in an inline bucket", where, i)
			}
			if err := c.bucket(v, depth+1, fmt.Sprintf("bucket %q in %s", k, where)); err != nil {
				return nil, err
			}
		}
	}
	if count == 0 {
		return nil, nil
	}
	return prev, nil
}

// bucket checks a nested bucket from its value in the parent's leaf.
func (c *checker) bucket(v []byte, depth int, where string) error {
	if depth > maxTreeDepth {
		return bad("%s is nested more than %d levels deep", where, maxTreeDepth)
	}
	if len(v) < bucketHeaderSize {
		return bad("%s: %d bytes, shorter than a bucket header", where, len(v))
	}
	if root := endian.Uint64(v); root != 0 {
		_, err := c.page(root, nil, nil, depth, &tree{leafDepth: -1})
		return err
	}
	// An inline bucket: its only page follows the header.
	p := v[bucketHeaderSize:]
	if len(p) < pageHeaderSize {
		return bad("%s: inline page of %d bytes, shorter than a page header", where, len(p))
	}
	flags, count := endian.Uint16(p[8:]), int(endian.Uint16(p[10:]))
	if flags != leafPageFlag {
		return bad("%s: inline page has type flags %#x, want a leaf page", where, flags)
	}
	// bbolt writes an inline page with id 0 and no overflow, and frees
	// the page an inline bucket names when a write moves it out of line:
	// any other id would free, or read, a page of the file at random.
	if id, over := endian.Uint64(p), endian.Uint32(p[12:]); id != 0 || over != 0 {
		return bad("%s: inline page names page %d with %d overflow pages, want none", where, id, over)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return bad("%s: %d elements do not fit in its %d-byte inline page", where, count, len(p))
	}
	_, err := c.leaf(p, count, nil, nil, depth, true, where)
	return err
}

// freelist checks a free page list that a meta page still points to
// (files last written without NoFreelistSync): bbolt reads it instead of
// walking the tree, and would hand out the pages it lists.
func (c *checker) freelist(id uint64) error {
	p, err := c.load(id, 0, "freelist")
	if err != nil {
		return err
	}
	if flags := endian.Uint16(p[8:]); flags != freelistPageFlag {
		return bad("freelist page %d has type flags %#x", id, flags)
	}
	idx, n := uint64(0), uint64(endian.Uint16(p[10:]))
	if n == 0xFFFF {
		idx, n = 1, endian.Uint64(p[pageHeaderSize:])
	}
	room := uint64(len(p)-pageHeaderSize) / 8
	if idx+n > room {
		return bad("freelist page %d lists %d pages, room for %d", id, n, room-idx)
	}
	for i := idx; i < idx+n; i++ {
		f := endian.Uint64(p[pageHeaderSize+8*i:])
		if f < 2 || f >= c.hwm {
			return bad("freelist page %d lists page %d, outside pages 2 to %d", id, f, c.hwm-1)
		}
		if c.mark(f) {
			return bad("freelist page %d lists page %d, which is in use or listed twice", id, f)
		}
	}
	return nil
}

// span returns the n bytes at pos from the element at offset e of p.
func span(p []byte, e int, pos uint32, n uint64) ([]byte, error) {
	start := uint64(e) + uint64(pos)
	if start+n > uint64(len(p)) {
		return nil, fmt.Errorf("at %d+%d runs past the %d-byte page", start, n, len(p))
	}
	return p[start : start+n], nil
}

// keyOrder checks key i of a page as bbolt's consistency check does: after
// prev (the previous key, or for the first one at least the parent's
// key), and before hi.
func keyOrder(key, prev, hi []byte, i int) error {
	switch {
	case i == 0 && prev != nil && bytes.Compare(prev, key) > 0:
		return fmt.Errorf("key %q sorts before its parent's key %q", key, prev)
	case i > 0 && bytes.Compare(prev, key) >= 0:
		return fmt.Errorf("key %q does not sort after %q", key, prev)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return fmt.Errorf("key %q does not sort before the next parent key %q", key, hi)
	}
	return nil
}
