package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// Passwords and secret URLs reach the CLI one way: from the terminal without echo, or as one
// line of stdin when stdin is not a terminal (scripts: `secret-tool lookup … | snapback
// password set`). Never from arguments, the environment or files, which other processes and
// shell histories can see.

// maxPasswordLen bounds a secret line read from a pipe.
const maxPasswordLen = 4096

// readSecret shows prompt and reads one secret (what names it in errors): without echo from
// a terminal, else one line of in without its line end. Cancelling ctx (Ctrl-C) stops the
// wait and restores the terminal. The caller owns the returned bytes.
func readSecret(ctx context.Context, in io.Reader, prompt io.Writer, text, what string) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	if fd, ok := terminalFd(in); ok {
		state, err := term.GetState(fd)
		if err != nil {
			return nil, fmt.Errorf("terminal: %w", err)
		}
		fmt.Fprint(prompt, text)
		go func() {
			b, err := term.ReadPassword(fd)
			done <- result{b, err}
		}()
		select {
		case r := <-done:
			fmt.Fprintln(prompt)
			if r.err != nil {
				return nil, fmt.Errorf("read %s: %w", what, r.err)
			}
			return r.b, nil
		case <-ctx.Done():
			term.Restore(fd, state)
			fmt.Fprintln(prompt)
			return nil, ctx.Err()
		}
	}
	go func() {
		// A reader shared by several reads (bufio.Reader of this size) is used as it is, so
		// that no read buffers ahead and swallows the next line.
		line, err := bufio.NewReaderSize(in, maxPasswordLen).ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			err = fmt.Errorf("%s: line too long", what)
		case errors.Is(err, io.EOF) && len(line) > 0:
			err = nil // a last line without newline
		case errors.Is(err, io.EOF):
			err = fmt.Errorf("%s: stdin is empty; type it on a terminal or pipe it in", what)
		case err != nil:
			err = fmt.Errorf("read %s from stdin: %w", what, err)
		}
		if err != nil {
			done <- result{nil, err}
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		b := bytes.Clone(line)
		clear(line)
		done <- result{b, nil}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// terminalPassword returns the password source of an encrypted backup: asked once, and only
// when called (the keychain may answer first).
func terminalPassword(ctx context.Context, in io.Reader, prompt io.Writer, dir string) func() ([]byte, error) {
	return func() ([]byte, error) {
		return readSecret(ctx, in, prompt, fmt.Sprintf("Backup password for %s: ", dir), "password")
	}
}

// readPassword reads a new password to be stored or set: on a terminal asked twice, which
// must agree; never empty.
func readPassword(ctx context.Context, in io.Reader, prompt io.Writer, label string) (string, error) {
	pw, err := readSecret(ctx, in, prompt, fmt.Sprintf("Backup password for %s: ", label), "password")
	if err != nil {
		return "", err
	}
	if _, ok := terminalFd(in); ok {
		again, err := readSecret(ctx, in, prompt, "Again: ", "password")
		if err != nil {
			return "", err
		}
		if !bytes.Equal(pw, again) {
			return "", errors.New("the two passwords differ; nothing stored")
		}
	}
	if len(pw) == 0 {
		return "", errors.New("empty password; nothing stored")
	}
	return string(pw), nil
}

// terminalFd returns in's file descriptor when in is a terminal.
func terminalFd(in io.Reader) (int, bool) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}
