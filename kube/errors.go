package kube

import (
	"errors"
	"fmt"
)

// Sentinel conditions of Process.Load and Process.Save. Branch on them with
// errors.Is; a state of a version the registry does not know is reported
// with versions.ErrUnknownVersion.
var (
	// ErrNoProcess: the status holds no process to continue, and a new
	// one should start: there is none yet, the spec changed since it
	// started (metadata.generation differs from observedGeneration), or
	// it is of an unknown flow version and ProcessOptions.RestartUnknown
	// is set.
	ErrNoProcess = errors.New("stepflow/kube: no process to continue")
	// ErrUnreadable: status.state does not decode, or names steps the
	// flow does not have. Retrying cannot help.
	ErrUnreadable = errors.New("stepflow/kube: status.state cannot be read")
	// ErrUnwritable: the process cannot be encoded into the status (it
	// outgrew ProcessOptions.MaxStateSize).
	ErrUnwritable = errors.New("stepflow/kube: the process cannot be written to the status")
)

// noProcess says why a new process starts.
func noProcess(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNoProcess, fmt.Sprintf(format, args...))
}
