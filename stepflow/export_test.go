package stepflow

// WalkEveryStep makes f run every step through the general path, for
// tests that compare it with the straight-line path (see applyStep).
func WalkEveryStep[S any](f *Flow[S]) { f.noStraight = true }
