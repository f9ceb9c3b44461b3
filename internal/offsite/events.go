package offsite

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// EventKind says what a backup Event reports.
type EventKind int

// Kinds of backup events, one per restic `--json` message type Snapback uses.
const (
	EventStatus  EventKind = iota + 1 // progress ("status")
	EventError                        // a file restic could not read ("error"); the backup goes on
	EventSummary                      // the backup finished ("summary")
)

// Event is one message of `restic backup --json`, typed.
type Event struct {
	Kind    EventKind
	Status  Status  // EventStatus
	Error   string  // EventError: restic's message and the item it concerns
	Summary Summary // EventSummary
}

// Status is restic's progress: how far the backup is, in files and bytes.
type Status struct {
	PercentDone      float64  `json:"percent_done"`
	SecondsElapsed   int64    `json:"seconds_elapsed"`
	SecondsRemaining int64    `json:"seconds_remaining"`
	TotalFiles       int64    `json:"total_files"`
	FilesDone        int64    `json:"files_done"`
	TotalBytes       int64    `json:"total_bytes"`
	BytesDone        int64    `json:"bytes_done"`
	ErrorCount       int64    `json:"error_count"`
	CurrentFiles     []string `json:"current_files"`
}

// Summary is restic's account of a finished backup. DataAdded is what the upload added to the
// repository after deduplication (and compression): the figure that shows an incremental push
// costs only the changed bytes.
type Summary struct {
	FilesNew            int64   `json:"files_new"`
	FilesChanged        int64   `json:"files_changed"`
	FilesUnmodified     int64   `json:"files_unmodified"`
	DirsNew             int64   `json:"dirs_new"`
	DirsChanged         int64   `json:"dirs_changed"`
	DirsUnmodified      int64   `json:"dirs_unmodified"`
	DataBlobs           int64   `json:"data_blobs"`
	TreeBlobs           int64   `json:"tree_blobs"`
	DataAdded           int64   `json:"data_added"`
	TotalFilesProcessed int64   `json:"total_files_processed"`
	TotalBytesProcessed int64   `json:"total_bytes_processed"`
	TotalDuration       float64 `json:"total_duration"`
	SnapshotID          string  `json:"snapshot_id"`
}

// parseEvents reads restic's `--json` stdout line by line and calls emit for each message it
// knows. Lines that are not JSON (restic prints some plain text even in JSON mode) and
// message types it does not know (newer restic adds some) are skipped, so a newer restic
// cannot break a push. It returns the summary, if one came.
func parseEvents(r io.Reader, emit func(Event)) (*Summary, error) {
	sc := bufio.NewScanner(r)
	// current_files can name long paths; allow long lines rather than fail the push.
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var summary *Summary
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		ev, ok := decodeEvent(line)
		if !ok {
			continue
		}
		if ev.Kind == EventSummary {
			s := ev.Summary
			summary = &s
		}
		if emit != nil {
			emit(ev)
		}
	}
	return summary, sc.Err()
}

func decodeEvent(line []byte) (Event, bool) {
	var head struct {
		MessageType string `json:"message_type"`
	}
	if json.Unmarshal(line, &head) != nil {
		return Event{}, false
	}
	switch head.MessageType {
	case "status":
		var s Status
		if json.Unmarshal(line, &s) != nil {
			return Event{}, false
		}
		return Event{Kind: EventStatus, Status: s}, true
	case "summary":
		var s Summary
		if json.Unmarshal(line, &s) != nil {
			return Event{}, false
		}
		return Event{Kind: EventSummary, Summary: s}, true
	case "error":
		// restic 0.14 marshals the Go error value (often "{}"), later versions
		// {"message": "..."}; keep whatever text there is, plus the item.
		var e struct {
			Error  json.RawMessage `json:"error"`
			During string          `json:"during"`
			Item   string          `json:"item"`
		}
		if json.Unmarshal(line, &e) != nil {
			return Event{}, false
		}
		msg := errorText(e.Error)
		parts := []string{}
		if e.During != "" {
			parts = append(parts, e.During)
		}
		if e.Item != "" {
			parts = append(parts, e.Item)
		}
		if msg != "" {
			parts = append(parts, msg)
		}
		return Event{Kind: EventError, Error: strings.Join(parts, ": ")}, true
	}
	return Event{}, false
}

func errorText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Message != "" {
		return o.Message
	}
	if t := string(raw); t != "{}" && t != "null" {
		return t
	}
	return ""
}
