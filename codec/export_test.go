package codec

// ReferenceJSON returns the JSON codec as it was before it parsed states in
// one pass (see jsonref_test.go), for tests that compare the two.
func ReferenceJSON[S any](opts *Options) Codec[S] { return refJSON[S](opts) }
