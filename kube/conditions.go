package kube

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Condition types of the process as a whole. Each is set at every status
// write, so `kubectl wait --for=condition=Ready` and dashboards that know
// the usual conditions can rely on them.
const (
	// ConditionProgressing is True while the process is running or
	// waiting; its reason names the current step.
	ConditionProgressing = "Progressing"
	// ConditionReady is True once the process has completed.
	ConditionReady = "Ready"
	// ConditionFailed is True when the process failed, or when the
	// controller cannot continue it; its reason names the failed step or
	// the problem, its message carries the error.
	ConditionFailed = "Failed"
)

// Condition reasons that do not name a step. A reason that names a step is
// its path in CamelCase (see Reason).
const (
	ReasonComplete       = "Complete"
	ReasonNoFailure      = "NoFailure"
	ReasonCanceled       = "Canceled"
	ReasonNeedsAttention = "NeedsAttention"
	// ReasonFailed is the reason of a failed process whose failure names
	// no step.
	ReasonFailed = "Failed"
	// ReasonStateUnreadable: status.state does not decode, or names steps
	// the flow does not have (ErrUnreadable).
	ReasonStateUnreadable = "StateUnreadable"
	// ReasonStateUnwritable: the process could not be encoded, for
	// example because it outgrew ProcessOptions.MaxStateSize
	// (ErrUnwritable).
	ReasonStateUnwritable = "StateUnwritable"
	// ReasonUnknownFlowVersion: status.state is of a flow version the
	// controller does not know (versions.ErrUnknownVersion).
	ReasonUnknownFlowVersion = "UnknownFlowVersion"
	// ReasonMigrationFailed: status.state is of an older version the
	// controller knows, and moving it to the current one failed.
	ReasonMigrationFailed = "MigrationFailed"
)

// Reasons of step conditions (see StepConditions): where the step stands,
// after stepflow.NodeStatus.
const (
	StepReasonPending  = "Pending"
	StepReasonRunning  = "Running"
	StepReasonWaiting  = "Waiting"
	StepReasonDone     = "Done"
	StepReasonSkipped  = "Skipped"
	StepReasonFailed   = "Failed"
	StepReasonCanceled = "Canceled"
)

// ConditionTag is the tag (stepflow.Meta.Tags) that names the condition
// type of a step: a step annotated with
//
//	stepflow.Annotate(step, stepflow.Meta{Tags: []string{"condition=ConfigWritten"}})
//
// has its condition under type ConfigWritten rather than a type derived
// from its path. The type must be a valid condition type and unique
// within a flow.
const ConditionTag = "condition"

// DefaultStepConditionPrefix prefixes the condition types derived from
// step paths: the step rollout/steps/apply/config has the condition
// step.stepflow.io/RolloutStepsApplyConfig.
const DefaultStepConditionPrefix = "step.stepflow.io/"

// DefaultMaxStepConditions is how many step conditions an object keeps
// when StepConditions.Max is zero.
const DefaultMaxStepConditions = 16

// StepConditions adds one condition per step to the process conditions:
// True once the step is done, False when it failed, was canceled or was
// skipped, Unknown while it is pending, running or waiting; the reason
// says which (StepReasonDone and so on), the message what the step waits
// for, or its last error. Steps are the flow's leaf nodes (Do, WaitFor
// and other nodes that call user code), or only the nodes tagged with
// ConditionTag.
type StepConditions struct {
	// Max bounds the step conditions kept in the object, since every
	// condition costs room in etcd and in `kubectl describe`. When the
	// flow has more steps, the ones that say the most are kept: those the
	// process is at or failed at, then the most recently done, then the
	// canceled, the skipped and the pending ones. Zero means
	// DefaultMaxStepConditions.
	Max int
	// TaggedOnly gives conditions to the nodes tagged with ConditionTag
	// only, instead of to every step.
	TaggedOnly bool
	// Prefix is prepended to the types derived from step paths; it must
	// end in "/" and be a DNS subdomain before it. Empty means
	// DefaultStepConditionPrefix. Types named with ConditionTag are used
	// as they are.
	Prefix string
}

func (o StepConditions) withDefaults() StepConditions {
	if o.Max <= 0 {
		o.Max = DefaultMaxStepConditions
	}
	if o.Prefix == "" {
		o.Prefix = DefaultStepConditionPrefix
	}
	return o
}

// maxMessage bounds condition messages well below the API's 32768.
const maxMessage = 4096

// maxReason is the API's limit on condition reasons.
const maxReason = 1024

// maxTypeName is the API's limit on the name part of a condition type (a
// qualified name, as label keys are).
const maxTypeName = 63

// Reason turns a step path such as "deploy/wait-available" into a
// condition reason, "DeployWaitAvailable". Reasons must match
// ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, so every other character
// separates words, and a reason that would not start with a letter gets
// the prefix "Step".
func Reason(path string) string {
	s := camel(path)
	if s == "" || !unicode.IsLetter(rune(s[0])) {
		s = "Step" + s
	}
	if len(s) > maxReason { // s is ASCII
		s = s[:maxReason]
	}
	return s
}

// camel keeps the ASCII letters and digits of s, upper-casing the first
// of each word; everything else separates words.
func camel(s string) string {
	var b strings.Builder
	upper := true
	for _, r := range s {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if upper {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			upper = false
			continue
		}
		upper = true
	}
	return b.String()
}

// stepConditionName turns a step path into the name part of a condition
// type: its CamelCase, cut to the API's 63 characters with a hash of the
// path in the last 8 so that two long paths do not meet.
func stepConditionName(path string) string {
	s := Reason(path)
	if len(s) <= maxTypeName {
		return s
	}
	h := fnv.New32a()
	h.Write([]byte(path))
	return fmt.Sprintf("%s%08x", s[:maxTypeName-8], h.Sum32())
}

// stepConditionType returns the condition type of a node, and false when
// the node gets no step condition.
func stepConditionType(n *stepflow.NodeInfo, o *StepConditions) (string, bool) {
	if t, ok := taggedType(n.Meta.Tags); ok {
		return t, true
	}
	if o.TaggedOnly || !n.Leaf {
		return "", false
	}
	return o.Prefix + stepConditionName(n.Path), true
}

// taggedType returns the type a ConditionTag names.
func taggedType(tags []string) (string, bool) {
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, ConditionTag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// checkConditionType reports what is wrong with a condition type.
func checkConditionType(t string) error {
	if errs := content.IsLabelKey(t); len(errs) > 0 {
		return fmt.Errorf("condition type %q: %s", t, strings.Join(errs, "; "))
	}
	switch t {
	case ConditionProgressing, ConditionReady, ConditionFailed:
		return fmt.Errorf("condition type %q is one of the process conditions", t)
	}
	return nil
}

// conditions sets conditions on a status, all with one observed
// generation and one transition time. The transition time comes from the
// controller's clock rather than SetStatusCondition's time.Now, so tests
// see the times they set.
type conditions struct {
	ps  *ProcessStatus
	gen int64
	now metav1.Time
}

func (c conditions) set(typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&c.ps.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: truncate(msg, maxMessage),
		ObservedGeneration: c.gen, LastTransitionTime: c.now,
	})
}

// setProcessConditions sets Progressing, Ready and Failed for a process
// described by d. noun names the process in messages; ready is the
// message of Ready=True ("" for d.Why).
func setProcessConditions(c conditions, d *stepflow.Description, noun, ready string) {
	why, step := d.Why, strings.Join(d.Positions, ",")
	switch d.Status {
	case stepflow.Running, stepflow.Waiting:
		reason := Reason(step)
		c.set(ConditionProgressing, metav1.ConditionTrue, reason, why)
		c.set(ConditionReady, metav1.ConditionFalse, reason, "the "+noun+" is in progress at "+step)
		c.set(ConditionFailed, metav1.ConditionFalse, ReasonNoFailure, "")
	case stepflow.Done:
		if ready == "" {
			ready = why
		}
		c.set(ConditionProgressing, metav1.ConditionFalse, ReasonComplete, why)
		c.set(ConditionReady, metav1.ConditionTrue, ReasonComplete, ready)
		c.set(ConditionFailed, metav1.ConditionFalse, ReasonNoFailure, "")
	case stepflow.Failed:
		reason, msg := ReasonFailed, why
		if d.Err != nil {
			reason, msg = Reason(d.Err.Path), d.Err.Message
		}
		c.set(ConditionProgressing, metav1.ConditionFalse, reason, "the "+noun+" stopped: "+why)
		c.set(ConditionReady, metav1.ConditionFalse, reason, "the "+noun+" failed: "+why)
		c.set(ConditionFailed, metav1.ConditionTrue, reason, msg)
	case stepflow.Canceled:
		c.set(ConditionProgressing, metav1.ConditionFalse, ReasonCanceled, why)
		c.set(ConditionReady, metav1.ConditionFalse, ReasonCanceled, why)
		c.set(ConditionFailed, metav1.ConditionFalse, ReasonCanceled, why)
	default: // NeedsAttention
		c.set(ConditionProgressing, metav1.ConditionFalse, ReasonNeedsAttention, why)
		c.set(ConditionReady, metav1.ConditionFalse, ReasonNeedsAttention, why)
		c.set(ConditionFailed, metav1.ConditionFalse, ReasonNeedsAttention, why)
	}
}

// setBrokenConditions reports a process the controller cannot continue:
// Failed is True with reason and msg.
func setBrokenConditions(c conditions, noun, reason, msg string) {
	c.set(ConditionProgressing, metav1.ConditionFalse, reason, "the controller cannot continue this "+noun+"; change the spec to start a new one")
	c.set(ConditionReady, metav1.ConditionFalse, reason, "the "+noun+" cannot continue")
	c.set(ConditionFailed, metav1.ConditionTrue, reason, msg)
}

// stepCondition is one step's condition before it is set.
type stepCondition struct {
	typ    string
	status metav1.ConditionStatus
	reason string
	msg    string
	// rank orders the steps by what their condition says: lower is kept
	// first when there are more steps than StepConditions.Max.
	rank int
	// end is when a done step last ended, to keep the latest first.
	end   time.Time
	order int
}

// setStepConditions sets one condition per step of d, at most o.Max, and
// removes the step conditions of known types that are not among them (the
// steps of another flow version, or steps that lost their place under
// the bound).
func setStepConditions(c conditions, d *stepflow.Description, o *StepConditions, known map[string]bool) {
	var steps []stepCondition
	for i := range d.Nodes {
		n := &d.Nodes[i]
		typ, ok := stepConditionType(&n.NodeInfo, o)
		if !ok {
			continue
		}
		sc := stepCondition{typ: typ, order: i, end: n.LastEnd}
		lastErr := ""
		if n.LastError != nil {
			lastErr = n.LastError.Detail()
		}
		switch n.Status {
		case stepflow.NodeDone:
			sc.status, sc.reason, sc.rank, sc.msg = metav1.ConditionTrue, StepReasonDone, 1, n.Meta.Description
		case stepflow.NodeFailed:
			sc.status, sc.reason, sc.rank, sc.msg = metav1.ConditionFalse, StepReasonFailed, 0, lastErr
		case stepflow.NodeCanceled:
			sc.status, sc.reason, sc.rank, sc.msg = metav1.ConditionFalse, StepReasonCanceled, 2, "the process was canceled here"
		case stepflow.NodeSkipped:
			sc.status, sc.reason, sc.rank, sc.msg = metav1.ConditionFalse, StepReasonSkipped, 3, "the process did not take this step"
		case stepflow.NodeActive, stepflow.NodeWaiting:
			sc.status, sc.reason, sc.rank = metav1.ConditionUnknown, StepReasonRunning, 0
			if n.Status == stepflow.NodeWaiting {
				sc.reason = StepReasonWaiting
			}
			sc.msg = joinNonEmpty("; ", n.Waiting, errorNote(lastErr))
		default: // NodePending
			sc.status, sc.reason, sc.rank = metav1.ConditionUnknown, StepReasonPending, 4
			// A step between attempts of its Retry is pending with the
			// error it will try again after.
			sc.msg = joinNonEmpty("; ", n.Meta.Description, errorNote(lastErr))
		}
		steps = append(steps, sc)
	}
	if len(steps) > o.Max {
		slices.SortStableFunc(steps, func(a, b stepCondition) int {
			if a.rank != b.rank {
				return a.rank - b.rank
			}
			// Among done steps the latest first; otherwise flow order.
			if c := b.end.Compare(a.end); c != 0 {
				return c
			}
			return a.order - b.order
		})
		steps = steps[:o.Max]
		slices.SortFunc(steps, func(a, b stepCondition) int { return a.order - b.order })
	}
	keep := make(map[string]bool, len(steps))
	for _, sc := range steps {
		keep[sc.typ] = true
	}
	c.ps.Conditions = slices.DeleteFunc(c.ps.Conditions, func(cond metav1.Condition) bool {
		return !keep[cond.Type] && (known[cond.Type] || strings.HasPrefix(cond.Type, o.Prefix))
	})
	for _, sc := range steps {
		c.set(sc.typ, sc.status, sc.reason, sc.msg)
	}
}

func errorNote(err string) string {
	if err == "" {
		return ""
	}
	return "last error: " + err
}

func joinNonEmpty(sep string, parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), sep)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
