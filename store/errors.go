package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Sentinel errors. The HTTP layer maps them to statuses in one place.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a record with that identity exists already (409).
	ErrExists = errors.New("already exists")
	// ErrURLTaken: a rename named a URL another tenant holds (409). It is
	// an ErrExists.
	ErrURLTaken = fmt.Errorf("url taken: %w", ErrExists)
	// ErrCloudIDTaken: another tenant holds this cloud id (409). It is an
	// ErrExists.
	ErrCloudIDTaken = fmt.Errorf("cloud id taken: %w", ErrExists)
	// ErrPrecondition: a compare-and-swap saw another version (412).
	ErrPrecondition = errors.New("precondition failed")
	// ErrUnavailable: etcd did not answer (no quorum, timeout, closed).
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalid: the value breaks a rule of the store (400).
	ErrInvalid = errors.New("invalid")
	// ErrCorrupt: a stored record does not decode (written by hand, by an
	// older defect, by a damaged restore). Reads of the record fail with it,
	// wrapped with the kind of record and the instance id, never the value;
	// the tenant can still be erased (DeleteInstance) or the record repaired
	// with etcdctl (docs/operations.md).
	ErrCorrupt = errors.New("stored record does not decode")
	// ErrStoreFull: etcd refused a write because its database reached its
	// quota (the NOSPACE alarm). Reads go on; writes need room made
	// (docs/operations.md, "Capacity") (507).
	ErrStoreFull = errors.New("store full")
	// ErrQuotaExceeded: the tenant holds as many mappings or users as its
	// quota allows; nothing was written (507).
	ErrQuotaExceeded = errors.New("tenant quota exceeded")
)

// InvalidError says which field broke which rule. It matches ErrInvalid.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, reason string) error { return &InvalidError{Field: field, Reason: reason} }

// corrupt is the error of a read whose record (of kind "instance", "user",
// "mapping", "error report") does not decode. The decoder's message is left
// out: it can quote the value.
func corrupt(kind, instanceID string) error {
	return fmt.Errorf("store: %s record of instance %s: %w", kind, instanceID, ErrCorrupt)
}

// encode is json.Marshal for a record about to be written, with the error
// wrapped: a value that did not encode whole is never written.
func encode(kind string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("store: encode %s: %w", kind, err)
	}
	return string(b), nil
}

// etcdErr wraps an etcd client error with context. Every failure of etcd
// itself (timeout, no leader, closed client, unreachable) is ErrUnavailable:
// the caller's request was fine, the store could not take it now.
func etcdErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), rpctypes.ErrNoSpace.Error()) {
		return fmt.Errorf("store: %s: %w: etcd's database is at its quota", op, ErrStoreFull)
	}
	return fmt.Errorf("store: %s: %w (%v)", op, ErrUnavailable, err)
}
