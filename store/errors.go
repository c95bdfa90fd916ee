package store

import (
	"errors"
	"fmt"
)

// Sentinel errors. The HTTP layer maps them to statuses in one place.
var (
	// ErrNotFound: the record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: a record with that identity exists already (409).
	ErrExists = errors.New("already exists")
	// ErrPrecondition: a compare-and-swap saw another version (412).
	ErrPrecondition = errors.New("precondition failed")
	// ErrUnavailable: etcd did not answer (no quorum, timeout, closed).
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalid: the value breaks a rule of the store (400).
	ErrInvalid = errors.New("invalid")
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

// etcdErr wraps an etcd client error with context. Every failure of etcd
// itself (timeout, no leader, closed client, unreachable) is ErrUnavailable:
// the caller's request was fine, the store could not take it now.
func etcdErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w (%v)", op, ErrUnavailable, err)
}
