// Package observe holds what the adapters below it share: the names of
// the attributes they attach to logs, spans and metrics, so that a
// process's log records, spans and series are found under the same keys.
//
// The adapters are separate packages, each importing only its own library:
// stepslog (log/slog), steptrace (OpenTelemetry tracing) and stepprom
// (Prometheus). The core packages import none of them.
package observe

// Attribute keys.
const (
	// KeyVersion is the flow version, e.g. "deploy/v1".
	KeyVersion = "stepflow.version"
	// KeyProcess is the process id.
	KeyProcess = "stepflow.process"
	// KeyPath is the path of the node making a call.
	KeyPath = "stepflow.path"
	// KeyKind is the kind of that node ("do", "wait", ...).
	KeyKind = "stepflow.kind"
	// KeyAttempt is the call's attempt, 1 for the first.
	KeyAttempt = "stepflow.attempt"
	// KeyDuration is how long a call took.
	KeyDuration = "stepflow.duration"
	// KeyStatus is a process's status after an Apply, KeyFrom before it.
	KeyStatus = "stepflow.status"
	KeyFrom   = "stepflow.from"
)
