// Package command runs the storage tools the sta drives (tgtadm, qemu-img,
// the LVM commands) behind one small interface, so that the drivers can be
// unit-tested against a fake runner and the real one stays a thin exec.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Runner runs a program and returns its standard output. A non-zero exit
// is an *Error carrying the program's standard error.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Error is a command that ran and failed (or could not be started).
type Error struct {
	Name     string
	Args     []string
	ExitCode int // -1 when the program did not run to an exit
	Stderr   string
	Err      error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s %s: exit %d: %s", e.Name, strings.Join(e.Args, " "), e.ExitCode, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// StderrContains reports whether err is a command *Error whose standard
// error contains s: how the drivers tell "already exists" from a failure.
func StderrContains(err error, s string) bool {
	var ce *Error
	return errors.As(err, &ce) && strings.Contains(ce.Stderr, s)
}

// Exec is the real Runner: os/exec with an optional extra environment.
type Exec struct {
	// Env is added to the inherited environment (KEY=value).
	Env []string
}

// Run implements Runner.
func (x Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if len(x.Env) > 0 {
		cmd.Env = append(cmd.Environ(), x.Env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return stdout.Bytes(), &Error{Name: name, Args: args, ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}
