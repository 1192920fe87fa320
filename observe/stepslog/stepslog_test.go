package stepslog_test

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/stepflow-io/go-stepflow/observe/stepslog"
	"github.com/stepflow-io/go-stepflow/runner"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Each runner event is logged at its level, with the process and version.
func TestMetricsLogEveryEvent(t *testing.T) {
	var buf bytes.Buffer
	m := stepslog.Metrics(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	m.Quarantined("p1", "deploy/v1", errors.New("unreadable"))
	m.Migrated("p2", "deploy/v1", "deploy/v2")
	m.Deleted(7)
	m.Committed(10, 0, time.Millisecond, errors.New("connection reset"))
	m.Committed(10, 0, time.Millisecond, nil)
	m.Applied(runner.Transition{ID: "p3", Version: "deploy/v2", From: stepflow.Running, To: stepflow.NeedsAttention})
	m.Applied(runner.Transition{ID: "p4", Version: "deploy/v2", From: stepflow.Running, To: stepflow.Waiting})
	out := buf.String()
	for _, want := range []string{
		`level=ERROR msg="process quarantined" stepflow.version=deploy/v1 stepflow.process=p1 error=unreadable`,
		`level=INFO msg="process migrated" stepflow.version=deploy/v2 stepflow.process=p2 stepflow.from=deploy/v1`,
		`level=INFO msg="ended processes deleted" count=7`,
		`level=WARN msg="commit failed" writes=10`,
		`level=WARN msg="process needs attention" stepflow.version=deploy/v2 stepflow.process=p3`,
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "p4", "a routine change of status is logged at Debug only")
	assert.Equal(t, 5, bytes.Count(buf.Bytes(), []byte("\n")))
}
