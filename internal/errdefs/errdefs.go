// Package errdefs classifies Flick's errors into a small set of classes.
//
// Code anywhere in Flick wraps an error with a class (errdefs.InvalidArgument(err))
// and adds context with fmt.Errorf("...: %w", err). The API layer maps a class to an
// HTTP status and the CLI maps it to an exit code, each in exactly one place.
package errdefs

import "errors"

// Class is an error class.
type Class int

// The classes. Unknown is what an unclassified error reports.
const (
	Unknown Class = iota
	NotFound
	AlreadyExists
	InvalidArgument
	FailedPrecondition
	Unavailable
	ResourceExhausted
	Conflict
	NotImplemented
	Unauthorized
)

var names = map[Class]string{
	Unknown: "unknown", NotFound: "not found", AlreadyExists: "already exists",
	InvalidArgument: "invalid argument", FailedPrecondition: "failed precondition",
	Unavailable: "unavailable", ResourceExhausted: "resource exhausted", Conflict: "conflict",
	NotImplemented: "not implemented", Unauthorized: "unauthorized",
}

func (c Class) String() string { return names[c] }

type classified struct {
	class Class
	err   error
}

func (e *classified) Error() string { return e.err.Error() }
func (e *classified) Unwrap() error { return e.err }

func wrap(c Class, err error) error {
	if err == nil {
		return nil
	}
	return &classified{class: c, err: err}
}

// ClassOf returns the outermost class found in err's chain, or Unknown.
func ClassOf(err error) Class {
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	return Unknown
}

// Is reports whether err is of class c.
func Is(err error, c Class) bool { return err != nil && ClassOf(err) == c }

// Wrappers. Each returns nil for a nil error.
func NewNotFound(err error) error           { return wrap(NotFound, err) }
func NewAlreadyExists(err error) error      { return wrap(AlreadyExists, err) }
func NewInvalidArgument(err error) error    { return wrap(InvalidArgument, err) }
func NewFailedPrecondition(err error) error { return wrap(FailedPrecondition, err) }
func NewUnavailable(err error) error        { return wrap(Unavailable, err) }
func NewResourceExhausted(err error) error  { return wrap(ResourceExhausted, err) }
func NewConflict(err error) error           { return wrap(Conflict, err) }
func NewNotImplemented(err error) error     { return wrap(NotImplemented, err) }
func NewUnauthorized(err error) error       { return wrap(Unauthorized, err) }

// New wraps err in class c (Unknown leaves it unclassified).
func New(c Class, err error) error {
	if c == Unknown {
		return err
	}
	return wrap(c, err)
}
