package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestClasses(t *testing.T) {
	base := errors.New("boom")
	err := fmt.Errorf("context: %w", NewNotFound(base))
	if !Is(err, NotFound) || ClassOf(err) != NotFound || !errors.Is(err, base) {
		t.Fatalf("class lost through wrapping: %v", ClassOf(err))
	}
	if New(Unknown, base) != base || ClassOf(New(Conflict, base)) != Conflict {
		t.Fatal("New")
	}
	if NewNotFound(nil) != nil || Is(nil, NotFound) {
		t.Fatal("nil handling")
	}
}
