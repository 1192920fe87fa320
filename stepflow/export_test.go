package stepflow

// WalkEveryStep makes f run every step through the general path, for
// tests that compare it with the straight-line path (see applyStep).
func WalkEveryStep[S any](f *Flow[S]) { f.noStraight = true }

// RunsStraight reports whether Apply would run the step at st's position
// without walking the tree.
func RunsStraight[S any](f *Flow[S], st State[S]) bool { return f.stepAt(&st.Root) != nil }
