//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package boltstore

import (
	"os"
	"time"
)

// lockFile does nothing where the standard library offers no flock: the
// file is checked before bbolt locks it, so a check that runs while
// another process writes the file may report damage that is not there.
func lockFile(*os.File, time.Duration) error { return nil }
