package controller

import (
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stepflow-io/go-stepflow/examples/controller/api/v1alpha1"
	"github.com/stepflow-io/go-stepflow/stepflow"
)

// Condition reasons that do not name a step.
const (
	ReasonComplete       = "Complete"
	ReasonNoFailure      = "NoFailure"
	ReasonCanceled       = "Canceled"
	ReasonNeedsAttention = "NeedsAttention"
	// ReasonStateUnreadable: status.state could not be decoded, or names
	// steps the flow does not have. The controller leaves it as it is, for
	// a person to look at; changing the spec starts a new rollout.
	ReasonStateUnreadable = "StateUnreadable"
	// ReasonStateUnwritable: the process could not be encoded (for example
	// it outgrew the size limit of a status).
	ReasonStateUnwritable = "StateUnwritable"
)

// Phases that do not come from stepflow.Status.
const phaseUnreadable = "unreadable"

// maxMessage bounds condition messages well below the API's 32768.
const maxMessage = 4096

// setProcessStatus derives everything in the status that mirrors the
// process: phase, step, wake time, and the three conditions. why is the
// process's own explanation (stepflow.Description.Why).
func setProcessStatus(s *v1alpha1.RolloutStatus, gen int64, st stepflow.State[Plan], why string, now time.Time) {
	s.ObservedGeneration = gen
	s.FlowVersion = st.Version
	s.Phase = st.Status.String()
	s.Step = strings.Join(st.Positions(), ",")
	s.WakeAt = nil
	if st.Status == stepflow.Waiting && !st.WakeAt.IsZero() {
		t := metav1.NewTime(st.WakeAt)
		s.WakeAt = &t
	}

	set := conditionSetter(s, gen, now)
	switch st.Status {
	case stepflow.Running, stepflow.Waiting:
		reason := reasonFor(s.Step)
		set(v1alpha1.ConditionProgressing, metav1.ConditionTrue, reason, why)
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, "the rollout is in progress at "+s.Step)
		set(v1alpha1.ConditionFailed, metav1.ConditionFalse, ReasonNoFailure, "")
	case stepflow.Done:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonComplete, why)
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonComplete, "every replica runs the rolled out image")
		set(v1alpha1.ConditionFailed, metav1.ConditionFalse, ReasonNoFailure, "")
	case stepflow.Failed:
		reason, msg := "Failed", why
		if st.Err != nil {
			reason, msg = reasonFor(st.Err.Path), st.Err.Message
		}
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, reason, "the rollout stopped: "+why)
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, "the rollout failed: "+why)
		set(v1alpha1.ConditionFailed, metav1.ConditionTrue, reason, msg)
	case stepflow.Canceled:
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonCanceled, why)
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonCanceled, why)
		set(v1alpha1.ConditionFailed, metav1.ConditionFalse, ReasonCanceled, why)
	default: // NeedsAttention
		set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, ReasonNeedsAttention, why)
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonNeedsAttention, why)
		set(v1alpha1.ConditionFailed, metav1.ConditionFalse, ReasonNeedsAttention, why)
	}
}

// setBrokenStatus reports a process the controller cannot run: Failed is
// True with the given reason and message. The phase says so too; the state
// itself is left for a person to inspect.
func setBrokenStatus(s *v1alpha1.RolloutStatus, gen int64, reason, msg string, now time.Time) {
	s.ObservedGeneration = gen
	s.Phase = phaseUnreadable
	s.Step = ""
	s.WakeAt = nil
	set := conditionSetter(s, gen, now)
	set(v1alpha1.ConditionProgressing, metav1.ConditionFalse, reason, "the controller cannot continue this rollout; change the spec to start a new one")
	set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, "the rollout cannot continue")
	set(v1alpha1.ConditionFailed, metav1.ConditionTrue, reason, msg)
}

func conditionSetter(s *v1alpha1.RolloutStatus, gen int64, now time.Time) func(typ string, status metav1.ConditionStatus, reason, msg string) {
	// The transition time comes from the controller's clock, not from
	// SetStatusCondition's time.Now, so tests see the times they set.
	t := metav1.NewTime(now)
	return func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: truncate(msg, maxMessage),
			ObservedGeneration: gen, LastTransitionTime: t,
		})
	}
}

// reasonFor turns a step path such as "deploy/wait-available" into a
// condition reason, "DeployWaitAvailable". Reasons must match
// ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, so every other character
// separates words, and a reason that would not start with a letter gets
// the prefix "Step".
func reasonFor(path string) string {
	var b strings.Builder
	upper := true
	for _, r := range path {
		switch {
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if upper {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			upper = false
		default:
			upper = true
		}
	}
	s := b.String()
	if s == "" || !unicode.IsLetter(rune(s[0])) {
		s = "Step" + s
	}
	if len(s) > 1024 { // the API's limit; s is ASCII
		s = s[:1024]
	}
	return s
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }
