package upload

import (
	"errors"
	"fmt"
)

// Sentinel errors of the package. Every error the package creates matches
// exactly one of them with errors.Is; the matching struct type (for
// errors.As) carries the details.
var (
	// ErrSizeMismatch reports that a body delivered fewer or more bytes than
	// its declared size. See SizeMismatchError.
	ErrSizeMismatch = errors.New("upload: body size does not match declared size")
	// ErrTooLarge reports that a body exceeded its byte limit. See
	// TooLargeError.
	ErrTooLarge = errors.New("upload: body too large")
	// ErrBadBase64 reports malformed base64 input. See Base64Error.
	ErrBadBase64 = errors.New("upload: malformed base64")
	// ErrBadFilename reports an unusable attachment filename. See
	// FilenameError.
	ErrBadFilename = errors.New("upload: bad filename")
	// ErrBadContentType reports an unparseable Content-Type. See
	// ContentTypeError.
	ErrBadContentType = errors.New("upload: bad content type")
)

// SizeMismatchError reports that a body ended before, or ran past, its
// declared size. It matches ErrSizeMismatch.
type SizeMismatchError struct {
	// Want is the declared size in bytes.
	Want int64
	// Got is the number of bytes seen. When Got > Want the body was cut off
	// at Want+1 bytes, so Got is a lower bound on the real length.
	Got int64
}

// Error implements error.
func (e *SizeMismatchError) Error() string {
	if e.Got > e.Want {
		return fmt.Sprintf("upload: body longer than declared size %d bytes", e.Want)
	}
	return fmt.Sprintf("upload: body ended after %d of %d declared bytes", e.Got, e.Want)
}

// Is reports whether target is ErrSizeMismatch.
func (e *SizeMismatchError) Is(target error) bool { return target == ErrSizeMismatch }

// TooLargeError reports that a body exceeded Limit bytes. It matches
// ErrTooLarge.
type TooLargeError struct {
	// Limit is the largest permitted body size in bytes.
	Limit int64
}

// Error implements error.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("upload: body exceeds limit of %d bytes", e.Limit)
}

// Is reports whether target is ErrTooLarge.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// Base64Error reports malformed base64 input. It matches ErrBadBase64.
type Base64Error struct {
	// Offset is the position, in bytes of encoded input, of the offending
	// byte, or the input length for problems found at end of input.
	Offset int64
	// Reason says what is wrong, e.g. "invalid character '*'".
	Reason string
}

// Error implements error.
func (e *Base64Error) Error() string {
	return fmt.Sprintf("upload: malformed base64 at byte %d: %s", e.Offset, e.Reason)
}

// Is reports whether target is ErrBadBase64.
func (e *Base64Error) Is(target error) bool { return target == ErrBadBase64 }

// FilenameError reports an unusable filename. It matches ErrBadFilename and
// unwraps to Err when a parser error caused it.
type FilenameError struct {
	// Reason says what is wrong, e.g. "empty".
	Reason string
	// Err is the underlying parse error, if any.
	Err error
}

// Error implements error.
func (e *FilenameError) Error() string {
	if e.Err != nil {
		return "upload: bad filename: " + e.Reason + ": " + e.Err.Error()
	}
	return "upload: bad filename: " + e.Reason
}

// Is reports whether target is ErrBadFilename.
func (e *FilenameError) Is(target error) bool { return target == ErrBadFilename }

// Unwrap returns the underlying parse error, if any.
func (e *FilenameError) Unwrap() error { return e.Err }

// ContentTypeError reports an unusable Content-Type value. It matches
// ErrBadContentType and unwraps to the mime package's error, if any.
type ContentTypeError struct {
	// Value is the rejected Content-Type, as given.
	Value string
	// Err is the underlying parse error, if any.
	Err error
}

// Error implements error.
func (e *ContentTypeError) Error() string {
	msg := fmt.Sprintf("upload: bad content type %q", e.Value)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrBadContentType.
func (e *ContentTypeError) Is(target error) bool { return target == ErrBadContentType }

// Unwrap returns the underlying parse error, if any.
func (e *ContentTypeError) Unwrap() error { return e.Err }
