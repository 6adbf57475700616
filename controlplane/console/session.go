package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one logged-in browser. The cookie carries only its random id;
// the bearer token it stands for never leaves the server.
type session struct {
	org       string
	token     string // what the API is called with on the session's behalf
	csrf      string // synchronizer token the page sends on every write
	created   time.Time
	lastUsed  time.Time
	expiresAt time.Time // absolute end: the session's lifetime or the token's exp
}

// sessions is the in-memory session table. Memory, not the store: a
// session is worth no more than a new login, so losing them all on a
// restart costs the operator one click, and nothing of them needs to
// survive in the database or be shared with an auditor. Several replicas
// behind one load balancer would need sticky routing or a shared table (a
// store-backed implementation of the same three methods).
type sessions struct {
	mu   sync.Mutex
	byID map[[32]byte]*session // sha256 of the cookie value
	max  int
	idle time.Duration
}

func newSessions(max int, idle time.Duration) *sessions {
	return &sessions{byID: map[[32]byte]*session{}, max: max, idle: idle}
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand's documented contract)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// keyOf hashes a cookie value, so that the table holds nothing a memory
// dump could replay as a cookie.
func keyOf(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// create stores s and returns the cookie value that names it. When the
// table is full the session used least recently goes first (expired ones
// before anything else).
func (t *sessions) create(s *session, now time.Time) string {
	id := randomToken()
	s.csrf = randomToken()
	s.created, s.lastUsed = now, now
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byID) >= t.max {
		t.evictLocked(now)
	}
	t.byID[keyOf(id)] = s
	return id
}

func (t *sessions) evictLocked(now time.Time) {
	var oldest [32]byte
	var oldestUsed time.Time
	for k, s := range t.byID {
		if t.expired(s, now) {
			delete(t.byID, k)
			continue
		}
		if oldestUsed.IsZero() || s.lastUsed.Before(oldestUsed) {
			oldest, oldestUsed = k, s.lastUsed
		}
	}
	if len(t.byID) >= t.max {
		delete(t.byID, oldest)
	}
}

func (t *sessions) expired(s *session, now time.Time) bool {
	return !now.Before(s.expiresAt) || now.Sub(s.lastUsed) >= t.idle
}

// get returns the live session a cookie value names and marks it used. An
// expired one is deleted.
func (t *sessions) get(id string, now time.Time) (session, bool) {
	k := keyOf(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.byID[k]
	if !ok {
		return session{}, false
	}
	if t.expired(s, now) {
		delete(t.byID, k)
		return session{}, false
	}
	s.lastUsed = now
	return *s, true
}

// remove ends a session; it reports whether there was one.
func (t *sessions) remove(id string) bool {
	k := keyOf(id)
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.byID[k]
	delete(t.byID, k)
	return ok
}

func (t *sessions) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}

// csrfMatches compares in constant time.
func csrfMatches(s session, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(s.csrf), []byte(got)) == 1
}
