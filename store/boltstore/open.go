package boltstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	listindex "github.com/stepflow-io/go-stepflow/store/internal/index"
)

var (
	// ErrLocked: another Store holds the file, in another process or in
	// this one (each Open takes its own lock), and did not release it
	// within Options.Timeout.
	ErrLocked = errors.New("stepflow/boltstore: store file locked by another process")

	// ErrCorruptFile is matched (errors.Is) by every *CorruptFileError.
	ErrCorruptFile = errors.New("stepflow/boltstore: corrupt store file")
)

// CorruptFileError: Open found the store file damaged and did not open it.
// The file is left as it was; restore it from a backup, or move it away to
// start a new store.
type CorruptFileError struct {
	// Path is the file, as given to Open.
	Path string
	// Reason says what is wrong, in the file's own terms (pages, sizes).
	Reason string
}

func (e *CorruptFileError) Error() string {
	return fmt.Sprintf("stepflow/boltstore: corrupt store file %s: %s", e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrCorruptFile) true.
func (e *CorruptFileError) Is(target error) bool { return target == ErrCorruptFile }

// errLockTimeout is lockFile's timeout, turned into ErrLocked by Open.
var errLockTimeout = errors.New("lock wait timed out")

// Open opens the store file at path, creating it if no file exists there.
// An existing file is checked before use (see the package documentation):
// a damaged one gives a *CorruptFileError, an empty one included, and a
// file held by another Store gives ErrLocked once Options.Timeout has
// passed.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	// bbolt opens the file through this function: the first call is the
	// open itself, later ones come from Tx.WriteTo.
	var first atomic.Bool
	var file *os.File
	var created bool
	openFile := func(name string, flag int, mode os.FileMode) (*os.File, error) {
		if first.Swap(true) {
			return os.OpenFile(name, flag, mode)
		}
		f, isNew, err := openChecked(name, mode, o.Timeout)
		file, created = f, isNew
		return f, err
	}
	db, err := openBolt(path, &bolt.Options{
		Timeout: o.Timeout,
		NoSync:  o.NoSync,
		// Kept: without a free page list on disk every commit writes
		// less (the list grows with the file and would be rewritten each
		// time). The price is at open, where bbolt rebuilds the list by
		// walking the tree, about as long as the check; and the list then
		// comes from the pages the check has just walked, never from a
		// page that a damaged file could fill with pages in use.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		OpenFile:       openFile,
	}, func() {
		if file != nil {
			_ = file.Close()
		}
	})
	if err != nil {
		if created && !errors.Is(err, bolt.ErrTimeout) {
			// Do not leave behind a file that the next Open would
			// refuse as empty or cut short.
			_ = os.Remove(path)
		}
		return nil, openError(path, o.Timeout, err)
	}
	var ix *listindex.Index
	var ixTx int
	err = db.Update(func(tx *bolt.Tx) error {
		fresh := tx.Bucket(bucketProcs) == nil
		for _, b := range [][]byte{bucketProcs, bucketDue, bucketEnded, bucketMeta} {
			_, err := tx.CreateBucketIfNotExists(b)
			if errors.Is(err, bolt.ErrIncompatibleValue) {
				return &CorruptFileError{Path: path, Reason: fmt.Sprintf("%q holds a value where the store keeps a bucket", b)}
			}
			if err != nil {
				return err
			}
		}
		if fresh {
			if err := tx.Bucket(bucketMeta).Put(keyFormat, []byte{fileFormat}); err != nil {
				return err
			}
		}
		if err := upgrade(tx, time.Now()); err != nil {
			return err
		}
		// The index for List, of the records as reconcile leaves them,
		// built as it reads them.
		ix = listindex.New()
		ix.Grow(countRecords(tx))
		ixTx = tx.ID()
		return reconcile(tx, ix)
	})
	if err != nil {
		_ = db.Close()
		var ce *CorruptFileError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, fmt.Errorf("stepflow/boltstore: init %s: %w", path, err)
	}
	return &Store{db: db, ix: ix, ixTx: ixTx, leases: map[string]lease{}, watchers: map[chan struct{}]struct{}{}, ended: map[chan struct{}]struct{}{}}, nil
}

// openChecked opens the file for bbolt. A new file is created only where
// none exists (created is then true); an existing one is locked, then
// checked.
func openChecked(path string, mode os.FileMode, timeout time.Duration) (f *os.File, created bool, err error) {
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, mode)
	if err == nil {
		return f, true, nil // bbolt writes the first pages of a new store
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, false, err
	}
	if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
		return nil, false, err
	}
	if err := lockFile(f, timeout); err != nil {
		_ = f.Close()
		if errors.Is(err, errLockTimeout) {
			return nil, false, lockedError(path, timeout)
		}
		return nil, false, fmt.Errorf("stepflow/boltstore: lock %s: %w", path, err)
	}
	if err := checkOpenFile(f); err != nil {
		_ = f.Close()
		var b *badFile
		if errors.As(err, &b) {
			return nil, false, &CorruptFileError{Path: path, Reason: b.reason}
		}
		return nil, false, err
	}
	return f, false, nil
}

func checkOpenFile(f *os.File) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	return checkFile(f, info.Size())
}

func lockedError(path string, timeout time.Duration) error {
	return fmt.Errorf("%w: %s (waited %s)", ErrLocked, path, timeout)
}

// openBolt calls bolt.Open. The check should leave bbolt nothing to panic
// about; should it still panic in this goroutine, the file is reported as
// damaged rather than the process brought down.
func openBolt(path string, o *bolt.Options, release func()) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			release()
			db, err = nil, &CorruptFileError{Path: path, Reason: fmt.Sprintf("bbolt refused it: %v", r)}
		}
	}()
	return bolt.Open(path, 0o600, o)
}

// openError gives err, from bolt.Open, the package's prefix and the file
// name, once.
func openError(path string, timeout time.Duration, err error) error {
	var ce *CorruptFileError
	var pe *fs.PathError
	switch {
	case errors.As(err, &ce), errors.Is(err, ErrLocked):
		return err
	case errors.Is(err, bolt.ErrTimeout):
		return lockedError(path, timeout) // where lockFile does not lock
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrVersionMismatch), errors.Is(err, bolt.ErrChecksum):
		return &CorruptFileError{Path: path, Reason: err.Error()}
	case errors.As(err, &pe):
		return fmt.Errorf("stepflow/boltstore: %w", err) // names the file
	}
	return fmt.Errorf("stepflow/boltstore: open %s: %w", path, err)
}
