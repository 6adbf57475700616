package controlplane

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Error codes. Each has one HTTP status and error type, in the api package's
// table; the domain only names them.
const (
	// 400: the body is not JSON, or a value has the wrong JSON type.
	CodeInvalidJSON = "invalid_json"
	CodeInvalidType = "invalid_type"
	// 401.
	CodeUnauthenticated = "unauthenticated"
	// 404.
	CodeNotFound      = "resource_missing"
	CodeRouteNotFound = "route_not_found"
	// 405.
	CodeMethodNotAllowed = "method_not_allowed"
	// 409.
	CodePrefixListInUse = "prefix_list_in_use"
	CodeResourceLocked  = "resource_locked"
	// CodeSiteDecommissioning: a write names a site on its way out.
	CodeSiteDecommissioning = "site_decommissioning"
	// 412: If-Match names a version that is no longer the stored one.
	CodePreconditionFailed = "precondition_failed"
	// 413.
	CodeBodyTooLarge = "body_too_large"
	// 415.
	CodeUnsupportedMediaType = "unsupported_media_type"
	// 422: validation.
	CodeParameterMissing   = "parameter_missing"
	CodeUnknownField       = "unknown_field"
	CodeInvalidValue       = "invalid_value"
	CodeInvalidPort        = "invalid_port"
	CodeInvalidAddress     = "invalid_address"
	CodePrefixListNotFound = "prefix_list_not_found"
	CodeInvalidSite        = "invalid_site"
	CodeDuplicateSite      = "duplicate_site"
	CodeDuplicateOrder     = "duplicate_order"
	CodeDuplicatePrefix    = "duplicate_prefix"
	CodeTooManyRules       = "too_many_rules"
	CodeTooManyPrefixes    = "too_many_prefixes"
	CodeTooManySites       = "too_many_sites"
	CodeQuotaExceeded      = "quota_exceeded"
	// CodeDocumentTooLarge: the write would make a site's document larger
	// than an agent takes (protocol.MaxDesiredStateBytes).
	CodeDocumentTooLarge = "document_too_large"
	// 500.
	CodeInternal = "internal_error"
	// 503: the store cannot read or write (disk full, I/O error).
	CodeStorageUnavailable = "storage_unavailable"
)

// Error is a domain error a client can act on. Message is a complete
// sentence that names the field by path (Field, such as "rules[2].port") and
// says what would be valid. Any error that is not an *Error is internal and
// never shown to a client.
type Error struct {
	Code    string
	Field   string
	Message string
	// RetryAfter is set with CodeResourceLocked.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err's *Error, CodeStorageUnavailable for a
// *StorageError, or CodeInternal.
func ErrorCode(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	if _, ok := errors.AsType[*StorageError](err); ok {
		return CodeStorageUnavailable
	}
	return CodeInternal
}

// StorageError is a failure of the storage itself (a full disk, an I/O
// error, a read-only file system), as opposed to a bug: the request was
// fine and may succeed later, once the operator fixed the storage. Storage
// adapters classify their errors into it; the API answers 503
// storage_unavailable and logs Err, the cause.
type StorageError struct {
	// Op is what the store was doing ("store security group").
	Op  string
	Err error
}

func (e *StorageError) Error() string { return e.Op + ": storage unavailable: " + e.Err.Error() }
func (e *StorageError) Unwrap() error { return e.Err }

// StorageUnavailable is the client's view of a *StorageError: it says
// what happened without the internals, which go to the log.
func StorageUnavailable() *Error {
	return Errorf(CodeStorageUnavailable, "", "The control plane cannot write to its storage right now (the operator is told why); nothing was changed. Retry later.")
}

// NotFound is the error for a resource that does not exist in the caller's
// organisation (including one that exists in another: ids never leak).
func NotFound(kind, id string) *Error {
	return Errorf(CodeNotFound, "", "No %s with id %q exists.", kindName(kind), id)
}

// Locked is the error for a write to a resource that is still syncing.
func Locked(kind, id string, retry time.Duration) *Error {
	e := Errorf(CodeResourceLocked, "", "The %s %q is being deployed to its sites and cannot be changed until that finishes; retry in %d seconds.",
		kindName(kind), id, int((retry+time.Second-1)/time.Second))
	e.RetryAfter = retry
	return e
}

// PrefixListInUse is the error for a delete of a prefix list that the
// rules of groups (their ids) still use.
func PrefixListInUse(id string, groups []string) *Error {
	quoted := make([]string, len(groups))
	for i, g := range groups {
		quoted[i] = strconv.Quote(g)
	}
	return Errorf(CodePrefixListInUse, "", "The prefix list %q is used by the rules of security group %s; change those rules first.",
		id, strings.Join(quoted, ", "))
}

// UnknownPrefixList is the error for rule i of a group write whose address
// names a prefix list the organisation does not have.
func UnknownPrefixList(i int, address string) *Error {
	return Errorf(CodePrefixListNotFound, fmt.Sprintf("rules[%d].address", i),
		"rules[%d].address %q names no prefix list of this organisation; create it first (POST /vpc/prefix-lists) or use a CIDR.", i, address)
}

func kindName(kind string) string {
	switch kind {
	case KindSecurityGroup:
		return "security group"
	case KindPrefixList:
		return "prefix list"
	}
	return kind
}

// Sentence turns a wrapped error ("verify token: token is expired") into
// the sentence a client is shown: the reason after the first "verb noun: "
// prefix, capitalised, with a full stop. The API and the console word a
// refused token or login link this way, so both say the same thing.
func Sentence(err error) string {
	msg := err.Error()
	if _, reason, ok := strings.Cut(msg, ": "); ok {
		msg = reason
	}
	if msg == "" {
		return "The token is not valid."
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}
