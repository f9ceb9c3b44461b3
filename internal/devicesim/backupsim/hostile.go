package backupsim

import (
	"context"
	"io"
	"strings"

	"snapback/internal/devicelink"
)

// hostilePaths are the path forms a malicious device may use to escape the backup folder:
// parent references (also after a valid prefix), absolute paths, backslash separators, an
// embedded NUL, and a path through the Snapshot folder that leaves it again.
func hostilePaths(udid string) []string {
	return []string{
		"../../snapback-hostile-dotdot",
		udid + "/../../snapback-hostile-dotdot-after-udid",
		"/tmp/snapback-hostile-absolute",
		udid + `\..\..\snapback-hostile-backslash`,
		udid + "/nul\x00snapback-hostile",
		udid + "/Snapshot/../../../snapback-hostile-through-snapshot",
	}
}

// hostileProbe sends every message kind with hostile paths and reads the host's answers.
// The device does not care how the host answers; a careful host refuses each one (non-zero
// status or an error block), which HostileRefused counts. A host that drops the link
// instead ends the session, which is also a correct answer.
func (s *session) hostileProbe(ctx context.Context, udid string) error {
	paths := hostilePaths(udid)
	refused := 0
	count := func(code int64) {
		if code != 0 {
			refused++
		}
	}
	defer func() {
		s.d.mu.Lock()
		s.d.counters.HostileAttempts += int64(7 * len(paths))
		s.d.counters.HostileRefused += int64(refused)
		s.d.mu.Unlock()
	}()

	// DownloadFiles: the host must not read files outside the folder.
	found, code, err := s.download(ctx, paths, func(int) io.Writer { return io.Discard })
	if err != nil {
		return err
	}
	if code != 0 {
		for _, f := range found {
			if !f {
				refused++
			}
		}
	}
	for _, p := range paths {
		// CreateDirectory, ContentsOfDirectory, CopyItem, MoveItems, RemoveItems.
		for _, msg := range [][]any{
			{devicelink.CreateDirectory, p},
			{devicelink.ContentsOfDirectory, p},
			{devicelink.CopyItem, udid + "/Info.plist", p},
			{devicelink.MoveItems, map[string]any{udid + "/Info.plist": p}, map[string]any{}, 0.0},
			{devicelink.RemoveItems, []any{p}, map[string]any{}, 0.0},
		} {
			code, err := s.simple(ctx, msg[0].(string), msg[1:]...)
			if err != nil {
				return err
			}
			count(code)
		}
	}
	// UploadFiles: one stream naming every hostile path.
	var prog progress
	code, err = s.uploadBatch(ctx, &prog, func(emit func(string, string, io.Reader) error) error {
		for _, p := range paths {
			if err := emit("HomeDomain/hostile", p, strings.NewReader(hostileBody)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if code != 0 {
		refused += len(paths)
	}
	return nil
}
