package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/flick-edge/flick/internal/bundle"
	"github.com/flick-edge/flick/internal/errdefs"
	"github.com/flick-edge/flick/internal/tty"
	mcontainer "github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// Exec is one `docker exec` instance.
type Exec struct {
	ID          string
	ContainerID string
	Config      mcontainer.ExecCreateRequest

	mu       sync.Mutex
	running  bool
	started  bool
	exitCode *int
	pid      int
	tty      *os.File // pty master while running with a TTY
}

type execs struct {
	mu sync.Mutex
	m  map[string]*Exec
}

// CreateExec prepares a command to run in a running container.
func (m *Manager) CreateExec(ref string, cfg mcontainer.ExecCreateRequest) (string, error) {
	c, err := m.Get(ref)
	if err != nil {
		return "", err
	}
	if !c.Running() || c.State.Pid <= 0 {
		return "", errdefs.NewConflict(fmt.Errorf("container %s is not running", c.ID))
	}
	if len(cfg.Cmd) == 0 {
		return "", errdefs.NewInvalidArgument(errors.New("no exec command specified"))
	}
	e := &Exec{ID: newID(), ContainerID: c.ID, Config: cfg}
	m.execs.mu.Lock()
	if m.execs.m == nil {
		m.execs.m = map[string]*Exec{}
	}
	m.execs.m[e.ID] = e
	m.execs.mu.Unlock()
	return e.ID, nil
}

// GetExec finds an exec instance.
func (m *Manager) GetExec(id string) (*Exec, error) {
	m.execs.mu.Lock()
	defer m.execs.mu.Unlock()
	if e, ok := m.execs.m[id]; ok {
		return e, nil
	}
	//lint:ignore ST1005 Docker's own wording, which docker CLI users and scripts match
	return nil, errdefs.NewNotFound(fmt.Errorf("No such exec instance: %s", id))
}

// Inspect reports an exec's state as Docker does.
func (e *Exec) Inspect() mcontainer.ExecInspectResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	return mcontainer.ExecInspectResponse{ID: e.ID, Running: e.running, ExitCode: e.exitCode, ContainerID: e.ContainerID,
		OpenStdin: e.Config.AttachStdin, OpenStdout: e.Config.AttachStdout, OpenStderr: e.Config.AttachStderr, Pid: e.pid,
		ProcessConfig: &mcontainer.ExecProcessConfig{Tty: e.Config.Tty, Entrypoint: e.Config.Cmd[0], Arguments: e.Config.Cmd[1:], User: e.Config.User, Privileged: &e.Config.Privileged}}
}

// ExecIO is where an exec's streams go.
type ExecIO struct {
	Stdin          io.Reader // nil: no stdin
	Stdout, Stderr io.Writer // with a TTY only Stdout is used
	ConsoleSize    [2]uint   // with a TTY: its initial rows and columns (0: the create request's, if any)
}

// StartExec runs the exec to completion, wiring its streams, and returns
// its exit code.
func (m *Manager) StartExec(ctx context.Context, id string, sio ExecIO) (int, error) {
	e, err := m.GetExec(id)
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return 0, errdefs.NewConflict(fmt.Errorf("exec %s has already been started", id))
	}
	e.started, e.running = true, true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
	}()
	c, err := m.Get(e.ContainerID)
	if err != nil {
		return 0, err
	}
	if !c.Running() {
		return 0, errdefs.NewConflict(fmt.Errorf("container %s is not running", c.ID))
	}
	es := bundle.ExecSpec{ContainerID: c.ID, Pid: c.State.Pid, Args: e.Config.Cmd, Env: e.Config.Env, Cwd: e.Config.WorkingDir,
		User: e.Config.User, Tty: e.Config.Tty, Privileged: e.Config.Privileged}
	size := sio.ConsoleSize
	if size[0] == 0 && e.Config.ConsoleSize != nil {
		size = *e.Config.ConsoleSize
	}
	es.ConsoleSize = consoleSize(size)
	if es.User == "" {
		es.User = c.Config.User
	}
	specPath := filepath.Join(c.Bundle, "exec-"+e.ID+".json")
	raw, _ := json.Marshal(es)
	if err := os.WriteFile(specPath, raw, 0o600); err != nil {
		return 0, err
	}
	defer os.Remove(specPath)
	if m.cfg.HelpersErr != nil {
		return 0, errdefs.NewUnavailable(m.cfg.HelpersErr)
	}
	bin := m.cfg.InitBinary // the exec roles are the init helper's
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return 0, err
		}
	}
	cmd := exec.CommandContext(ctx, bin, "__exec", specPath, c.Bundle)
	cmd.Env = []string{}
	var closeAfter []*os.File
	var consoleR *os.File
	if e.Config.Tty {
		// The terminal is made inside the container (its devpts, so
		// ttyname works there) and its master comes back on this socket.
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		consoleR = os.NewFile(uintptr(fds[0]), "console-recv")
		defer consoleR.Close()
		child := os.NewFile(uintptr(fds[1]), "console-send")
		cmd.ExtraFiles = []*os.File{child} // __exec's fd 3
		closeAfter = append(closeAfter, child)
		cmd.Stderr = sio.Stdout // why a start failed, before the terminal exists
	} else {
		if sio.Stdin != nil {
			cmd.Stdin = sio.Stdin
		}
		cmd.Stdout, cmd.Stderr = sio.Stdout, sio.Stderr
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	for _, f := range closeAfter {
		f.Close()
	}
	e.mu.Lock()
	e.pid = cmd.Process.Pid
	e.mu.Unlock()
	if consoleR != nil {
		if master, err := tty.Receive(consoleR); err == nil {
			defer master.Close()
			e.mu.Lock()
			e.tty = master
			e.mu.Unlock()
			if sio.Stdin != nil {
				go io.Copy(master, sio.Stdin)
			}
			done := make(chan struct{})
			go func() { io.Copy(sio.Stdout, master); close(done) }()
			defer func() { <-done }()
		} // else the exec failed before making it: its reason is on stderr
	}
	werr := cmd.Wait()
	code := 0
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if werr != nil {
		return 0, werr
	}
	e.mu.Lock()
	e.exitCode = &code
	e.mu.Unlock()
	return code, nil
}

// ResizeExec sets an exec's terminal size.
func (m *Manager) ResizeExec(id string, h, w uint16) error {
	e, err := m.GetExec(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tty == nil {
		return nil
	}
	return tty.Resize(e.tty, h, w)
}
