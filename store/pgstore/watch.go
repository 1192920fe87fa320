package pgstore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// watchKind says which notifications a watch channel receives.
type watchKind uint8

const (
	// watchDue: Watch, the store's first channel (processes that may
	// have become due).
	watchDue watchKind = iota
	// watchEnded: WatchEnded, the second channel (processes that may
	// have ended).
	watchEnded
)

// listener is one run of the listening goroutine.
type listener struct {
	cancel context.CancelFunc
	// ready is closed once the goroutine listens for the first time, or
	// gives up.
	ready     chan struct{}
	readyOnce sync.Once
	// listening is true while its connection listens; guarded by
	// Store.mu.
	listening bool
}

func (l *listener) setReady() { l.readyOnce.Do(func() { close(l.ready) }) }

// Watch implements store.Store. Every Watch and WatchEnded shares one
// listening connection of the store's own, outside the pool (see the
// package documentation), which the store opens with the first of them and
// closes when the last one ends, and which LISTENs on both of the store's
// channels. Each channel receives one wake-up when it is added to a
// listening connection and each time the store starts listening again
// after losing its connection, since notifications sent in between may
// have been missed. Watch returns once the store listens, or after at most
// 5 seconds when the database cannot be reached (the store keeps trying,
// once a second, and wakes every watcher when it succeeds).
func (s *Store) Watch(ctx context.Context) <-chan struct{} { return s.watch(ctx, watchDue) }

// WatchEnded implements store.Store. It shares Watch's connection and
// behaves as Watch does, for the notifications of ends: a Commit with a
// terminal status, and Delete.
func (s *Store) WatchEnded(ctx context.Context) <-chan struct{} { return s.watch(ctx, watchEnded) }

func (s *Store) watch(ctx context.Context, kind watchKind) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.closed || ctx.Err() != nil {
		s.mu.Unlock()
		close(ch)
		return ch
	}
	if s.watchers == nil {
		s.watchers = map[chan struct{}]watchKind{}
	}
	s.watchers[ch] = kind
	if s.lis == nil {
		s.startListening()
	}
	l := s.lis
	if l.listening {
		send(ch)
	}
	s.mu.Unlock()
	context.AfterFunc(ctx, func() { s.unwatch(ch) })

	// Return once listening, so that nothing created after Watch returns
	// is missed; but not later than a few seconds when the database is
	// unreachable.
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-l.ready:
	case <-ctx.Done():
	case <-t.C:
	}
	return ch
}

// unwatch ends the watch of ch, and stops listening after the last one.
func (s *Store) unwatch(ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.watchers[ch]; !ok {
		return // Close ended it
	}
	delete(s.watchers, ch)
	close(ch)
	if len(s.watchers) == 0 && s.lis != nil {
		s.lis.cancel()
		s.lis = nil
	}
}

// startListening starts a listening goroutine. s.mu is held.
func (s *Store) startListening() {
	ctx, cancel := context.WithCancel(s.done)
	l := &listener{cancel: cancel, ready: make(chan struct{})}
	s.lis = l
	s.listeners.Add(1)
	go func() {
		defer s.listeners.Done()
		defer l.setReady()
		defer cancel()
		for ctx.Err() == nil {
			_ = s.listen(ctx, l)
			s.mu.Lock()
			l.listening = false
			s.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			// The connection failed or could not be opened: try again
			// shortly.
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}()
}

// wake sends a wake-up to the watchers of kind, or to every watcher when
// started (l has just started listening), if l still serves them.
func (s *Store) wake(l *listener, started bool, kind watchKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis != l {
		return
	}
	if started {
		l.listening = true
	}
	for ch, k := range s.watchers {
		if started || k == kind {
			send(ch)
		}
	}
}

func send(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// listen opens a connection, LISTENs on it and turns notifications into
// wake-ups until the connection fails or ctx is done.
func (s *Store) listen(ctx context.Context, l *listener) error {
	conn, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	// The channel of Watch comes last, so that the session's last
	// statement, which pg_stat_activity shows, names it.
	for _, ch := range []string{s.endRaw, s.chanRaw} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	// Notifications sent before this point were missed: wake everyone.
	s.wake(l, true, watchDue)
	l.setReady()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		kind := watchDue
		if n.Channel == s.endRaw {
			kind = watchEnded
		}
		s.wake(l, false, kind)
	}
}

// connect opens a connection outside the pool with the pool's settings.
func (s *Store) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.pool.Config() // a copy
	cc := cfg.ConnConfig
	if cfg.BeforeConnect != nil {
		if err := cfg.BeforeConnect(ctx, cc); err != nil {
			return nil, err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	if cfg.AfterConnect != nil {
		if err := cfg.AfterConnect(ctx, conn); err != nil {
			_ = conn.Close(ctx)
			return nil, err
		}
	}
	return conn, nil
}
