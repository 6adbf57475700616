package controlplane

import (
	"context"
	"strconv"
	"strings"

	"github.com/rampart-fw/rampart/protocol"
)

// Versions and preconditions (DESIGN.md section 2, #16): every write to a
// group or prefix list gives it the next version, kept in its SyncState;
// its ETag names that version, and a PUT or DELETE with If-Match proceeds
// only while the stored version is one of those named. The store checks
// it inside the write's transaction, where nothing can change under it.

// Stored is a group or prefix list as the store answers it.
type Stored struct {
	ID string
	// Body is the API's JSON. It may be shared with the store's cache:
	// never modify it.
	Body []byte
	// Version counts the writes of the resource: 1 after its create.
	Version uint64
}

// ETag is the entity tag of s's version.
func (s Stored) ETag() string { return ETag(s.Version) }

// NextVersion is the version a write gives a resource whose stored sync
// state is prev (nil for a create): 1 for a new resource, and one more
// than prev's otherwise (a version 0 from before versions existed makes 1).
func NextVersion(prev *SyncState) uint64 {
	if prev == nil {
		return 1
	}
	return prev.Version + 1
}

// ETag is the strong entity tag of a version of a resource: it names the
// content as written, not the status, which moves as sites confirm without
// a write (a client holding the tag of its PUT can still DELETE once the
// resource is active).
func ETag(version uint64) string { return `"v` + strconv.FormatUint(version, 10) + `"` }

// Precondition is what an If-Match header asks for. The zero value (no
// header) allows every write.
type Precondition struct {
	// Any is If-Match: * (the resource must exist, which every PUT and
	// DELETE already requires).
	Any bool
	// Versions are the versions named; empty when there was no header.
	Versions []uint64
	// Raw is the header as sent, for the error message.
	Raw string
}

// ParseIfMatch reads an If-Match header (RFC 9110 section 13.1.1): "*" or
// a comma-separated list of entity tags. Tags this API never issues (weak
// ones, which If-Match never matches, or another server's) are kept out of
// Versions, so they never match, as the RFC's strong comparison says.
func ParseIfMatch(h string) (Precondition, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return Precondition{}, nil
	}
	p := Precondition{Raw: h}
	if h == "*" {
		p.Any = true
		return p, nil
	}
	for tag := range strings.SplitSeq(h, ",") {
		tag = strings.TrimSpace(tag)
		weak := strings.HasPrefix(tag, "W/")
		inner := strings.TrimPrefix(tag, "W/")
		if len(inner) < 2 || inner[0] != '"' || inner[len(inner)-1] != '"' || strings.Contains(inner[1:len(inner)-1], `"`) {
			return Precondition{}, Errorf(CodeInvalidValue, "If-Match", "The If-Match header %q is not a list of entity tags; send the ETag of your last GET or write, such as %s, or *.", protocol.Truncate(h, 80), ETag(3))
		}
		if weak {
			continue
		}
		if v, ok := strings.CutPrefix(inner[1:len(inner)-1], "v"); ok {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				p.Versions = append(p.Versions, n)
			}
		}
	}
	if len(p.Versions) == 0 {
		p.Versions = []uint64{} // asked, and nothing can match
	}
	return p, nil
}

// Check refuses a write to the resource kind id at version when p does not
// allow it: 412 precondition_failed, naming the current ETag.
func (p Precondition) Check(kind, id string, version uint64) error {
	if p.Any || p.Versions == nil {
		return nil
	}
	for _, v := range p.Versions {
		if v == version {
			return nil
		}
	}
	return Errorf(CodePreconditionFailed, "If-Match", "The %s %q changed since you read it: If-Match was %s, the current ETag is %s. GET it again, reapply your change and retry with the new ETag.",
		kindName(kind), id, protocol.Truncate(p.Raw, 80), ETag(version))
}

// WriteRequest is what a write needs to know of the request that asks for
// it, beside the organisation and the body: who asks (for the audit trail)
// and the precondition. It travels in the context so that every store
// (bbolt, PostgreSQL) receives it through the same Store interface.
type WriteRequest struct {
	// Subject is the token's sub claim.
	Subject   string
	RequestID string
	// Method is the HTTP method (POST, PUT, DELETE).
	Method  string
	IfMatch Precondition
}

type writeRequestKey struct{}

// WithWriteRequest returns ctx carrying wr.
func WithWriteRequest(ctx context.Context, wr WriteRequest) context.Context {
	return context.WithValue(ctx, writeRequestKey{}, wr)
}

// WriteRequestFrom returns the WriteRequest ctx carries; the zero value
// (no precondition, no subject) when there is none, as for writes that
// do not come from the API.
func WriteRequestFrom(ctx context.Context) WriteRequest {
	wr, _ := ctx.Value(writeRequestKey{}).(WriteRequest)
	return wr
}
