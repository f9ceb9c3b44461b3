package jobs

import (
	"testing"
)

func TestEventTypeString(t *testing.T) {
	if EventDeviceAttached.String() != "DeviceAttached" || EventSettingsInvalid.String() != "SettingsInvalid" {
		t.Fatal(EventDeviceAttached.String(), EventSettingsInvalid.String())
	}
	if s := (EventRunFinished | EventRunFailed).String(); s != "RunFinished|RunFailed" {
		t.Fatal(s)
	}
	for i := range len(eventNames) {
		if EventType(1<<i)&AllEvents == 0 {
			t.Fatalf("AllEvents misses %v", EventType(1<<i))
		}
	}
}

func TestSlowSubscriberLosesEventsInsteadOfBlocking(t *testing.T) {
	b := NewBus(4)
	b.setSnapshot(func() Status { return Status{Paused: true, Running: 1} })
	slow := b.Subscribe(AllEvents)
	fast := b.Subscribe(EventRunFinished)
	if !slow.Initial.Paused || slow.Initial.Running != 1 {
		t.Fatalf("no initial snapshot: %+v", slow.Initial)
	}
	for range 10 {
		b.Publish(Event{Type: EventProgress}) // would block forever if Publish blocked
	}
	b.Publish(Event{Type: EventRunFinished})
	if slow.Dropped() != 7 {
		t.Fatalf("dropped %d, want 7", slow.Dropped())
	}
	if len(fast.C) != 1 || fast.Dropped() != 0 {
		t.Fatalf("filtered subscriber got %d events", len(fast.C))
	}
	var last uint64
	for range 4 {
		e := <-slow.C
		if e.Seq <= last {
			t.Fatal("sequence not increasing")
		}
		last = e.Seq
	}
	slow.Close()
	slow.Close()
	if _, ok := <-slow.C; ok {
		t.Fatal("channel not closed")
	}
	b.Publish(Event{Type: EventProgress}) // no panic on a closed subscriber
}
