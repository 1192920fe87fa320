package kube

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Reader reads through a cache, and asks the API server before it answers
// "not found".
//
// A manager's client reads from informer caches, which learn of a write
// only when its watch event arrives; a step that creates an object and
// reads it in the same reconcile may find nothing there, and must not take
// that for an object deleted under it. Reading every poll from the API
// server would cost a request per poll per object; a Reader costs one per
// object the cache does not have. A stale answer of another kind (an
// older version of the object) only delays a wait by one poll, and is
// left alone.
//
// Build one over the manager's client, leave API nil, and give it to
// Options.Reader: Reconciler.SetupWithManager fills API in with the
// manager's API reader. Until then, and in tests on a fake client (which
// has no cache), Cache answers alone.
type Reader struct {
	// Cache is the reader that may lag: the manager's client.
	Cache client.Reader
	// API reads from the API server itself (mgr.GetAPIReader()). Nil
	// means Cache.
	API client.Reader
}

// Get reads obj from the cache and, when the cache does not have it, from
// the API server.
func (r *Reader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Cache.Get(ctx, key, obj, opts...)
	if apierrors.IsNotFound(err) && r.API != nil {
		return r.API.Get(ctx, key, obj, opts...)
	}
	return err
}

// List lists from the cache only: a list has no "not found" to confirm.
// Use Live().List to see the controller's own latest writes.
func (r *Reader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return r.Cache.List(ctx, list, opts...)
}

// Live returns the reader that sees every write the API server has
// acknowledged, the controller's own included: API, or Cache when API is
// nil. Read what a cleanup deletes through it, so that an object created a
// moment ago is deleted too.
func (r *Reader) Live() client.Reader {
	if r.API == nil {
		return r.Cache
	}
	return r.API
}

var _ client.Reader = (*Reader)(nil)
